"""Checks the character offsets end to end on real data, with the project's own feature preparation and
post-processing:

1. labels: every window that prepare_train_features labels with an answer decodes back to the gold answer text;
2. oracle: post-processing logits that peak at the tokens holding the gold answer's first and last character
   recovers the gold answer text;
3. assembly: every window (and, for ADL folders, every question-paragraph pair of paragraph selection), assembled from
   the paragraph and the question tokenized once, equals the tokenizer's own encoding of the pair: input ids, token
   types, attention mask and offsets.

    python benchmarks/oracle_offsets.py ../shared/data/drcd-dev-adl ../shared/data/raw/cmrc2018_dev.json

    python benchmarks/oracle_offsets.py ../shared/data/drcd-dev-adl ../shared/data/raw/cmrc2018_dev.json \
        --vocab ../shared/data/vocab/bert-base-chinese-vocab.txt

Each argument is an ADL folder (context.json + train.json / valid.json) or a SQuAD-format JSON file. The tokenizer is
--tokenizer (a Hub id or a local directory, e.g. bert-base-chinese where the Hub is reachable), or --vocab (a
WordPiece vocab.txt, such as bert-base-chinese's, read offline as that tokenizer reads it), or by default a
character vocabulary built from the data (make_tiny_model.py). An answer is missed only where the tokenizer cannot
represent its boundary: a word piece that starts before the answer or ends after it, or a character it drops.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adl_data import (  # noqa: E402
    load_context,
    load_questions,
    to_multiple_choice_examples,
    to_squad_examples,
)
from make_tiny_model import make_tiny_model  # noqa: E402
from tokens import truncate_questions  # noqa: E402
from utils_qa import (  # noqa: E402
    postprocess_qa_predictions,
    prepare_multiple_choice_features,
    prepare_train_features,
    prepare_validation_features,
)


def read_examples(source):
    """SQuAD-style columns (first gold answer of each question) from an ADL folder or a SQuAD JSON file, and the
    paragraph-selection columns of an ADL folder (None for SQuAD)."""
    source = Path(source)
    if source.is_dir():
        context = load_context(source / "context.json")
        questions = []
        for split in ("train.json", "valid.json"):
            if (source / split).exists():
                questions += load_questions(source / split, context, need_answer=True)
        return to_squad_examples(questions, context), to_multiple_choice_examples(questions, context)
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    examples = {"id": [], "question": [], "context": [], "answers": []}
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                examples["id"].append(str(qa["id"]))
                examples["question"].append(qa["question"])
                examples["context"].append(paragraph["context"])
                examples["answers"].append({"text": [answer["text"]], "answer_start": [answer["answer_start"]]})
    return examples, None


def gold_logits(features, examples):
    index_of = {example_id: i for i, example_id in enumerate(examples["id"])}
    start_logits, end_logits = [], []
    for i, example_id in enumerate(features["example_id"]):
        answer = examples["answers"][index_of[example_id]]
        answer_start = answer["answer_start"][0]
        answer_end = answer_start + len(answer["text"][0])
        starts = np.full(len(features["input_ids"][i]), -10.0)
        ends = starts.copy()
        for token, offset in enumerate(features["offset_mapping"][i]):
            if offset is not None and offset[0] <= answer_start < offset[1]:
                starts[token] = 10.0
            if offset is not None and offset[0] < answer_end <= offset[1]:
                ends[token] = 10.0
        start_logits.append(starts)
        end_logits.append(ends)
    return start_logits, end_logits


def check(name, examples, tokenizer, max_seq_length, doc_stride):
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride)
    labels = prepare_train_features(examples, tokenizer, max_seq_length, doc_stride)
    labelled, decoded_right = 0, 0
    index_of = {example_id: i for i, example_id in enumerate(examples["id"])}
    for i, example_id in enumerate(features["example_id"]):
        start, end = labels["start_positions"][i], labels["end_positions"][i]
        if start == 0:
            continue
        index = index_of[example_id]
        offsets = features["offset_mapping"][i]
        labelled += 1
        decoded_right += (
            examples["context"][index][offsets[start][0] : offsets[end][1]] == examples["answers"][index]["text"][0]
        )

    started = time.perf_counter()
    # Any answer that fits in a window may be predicted: only the offsets are under test here.
    answers = postprocess_qa_predictions(
        examples, features, gold_logits(features, examples), max_answer_length=max_seq_length
    )
    seconds = time.perf_counter() - started
    missed = [
        (answers[example_id], answer["text"][0])
        for example_id, answer in zip(examples["id"], examples["answers"])
        if answers[example_id] != answer["text"][0]
    ]
    total = len(examples["id"])
    print(
        f"{name}: {total} questions, {len(features['input_ids'])} windows (max_seq_length {max_seq_length}, "
        f"doc_stride {doc_stride}); labels decode to the gold text in {decoded_right}/{labelled} labelled windows; "
        f"oracle recovers {total - len(missed)}/{total} = {100 * (total - len(missed)) / total:.2f}% "
        f"(post-processing {seconds:.2f} s)"
    )
    for predicted, gold in missed[:5]:
        print(f"    missed: predicted {predicted!r}, gold {gold!r}")


def check_assembly(name, examples, choices, tokenizer, max_seq_length, doc_stride, max_question_length=96):
    """Counts the windows (and pairs) assembled from pieces that equal the tokenizer's own pair encoding."""
    started = time.perf_counter()
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride)
    assembly_seconds = time.perf_counter() - started
    questions = truncate_questions(examples["question"], tokenizer, max_question_length)
    started = time.perf_counter()
    reference = tokenizer(
        questions,
        list(examples["context"]),
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    tokenizer_seconds = time.perf_counter() - started
    equal = len(features["input_ids"]) == len(reference["input_ids"])
    same_windows = 0
    for i in range(min(len(features["input_ids"]), len(reference["input_ids"]))):
        offsets = [
            tuple(o) if s == 1 else None for o, s in zip(reference["offset_mapping"][i], reference.sequence_ids(i))
        ]
        same_windows += (
            all(features[n][i] == reference[n][i] for n in ("input_ids", "token_type_ids", "attention_mask"))
            and [tuple(o) if o is not None else None for o in features["offset_mapping"][i]] == offsets
        )
    line = (
        f"{name}: assembled windows equal the tokenizer's own in {same_windows}/{len(reference['input_ids'])} "
        f"(count equal: {equal}; assembling {assembly_seconds:.2f} s with offsets, the tokenizer's pairs "
        f"{tokenizer_seconds:.2f} s)"
    )
    if choices is not None:
        features = prepare_multiple_choice_features(choices, tokenizer, max_seq_length)
        truncated = truncate_questions(choices["question"], tokenizer, max_question_length)
        pairs = same_pairs = 0
        for i, candidates in enumerate(choices["candidates"]):
            own = tokenizer(
                [truncated[i]] * len(candidates), candidates, truncation="only_second", max_length=max_seq_length
            )
            pairs += len(candidates)
            same_pairs += sum(
                all(features[n][i][c] == own[n][c] for n in ("input_ids", "token_type_ids", "attention_mask"))
                for c in range(len(candidates))
            )
        line += f"; paragraph-selection pairs equal in {same_pairs}/{pairs}"
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="ADL folders or SQuAD-format JSON files.")
    tokenizer_source = parser.add_mutually_exclusive_group()
    tokenizer_source.add_argument(
        "--tokenizer", help="Hub id or directory of a tokenizer (default: a character vocabulary)."
    )
    tokenizer_source.add_argument(
        "--vocab", type=Path, help="A WordPiece vocab.txt (bert-base-chinese's), read offline."
    )
    parser.add_argument("--max_seq_length", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--doc_stride", type=int, default=128)
    args = parser.parse_args()

    datasets = {source: read_examples(source) for source in args.sources}
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    elif args.vocab:
        with tempfile.TemporaryDirectory() as work:
            # bert-base-chinese's own tokenizer settings (lower case, Chinese characters split), as the Hub gives them.
            shutil.copy(args.vocab, Path(work) / "vocab.txt")
            settings = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}
            (Path(work) / "tokenizer_config.json").write_text(json.dumps(settings))
            tokenizer = AutoTokenizer.from_pretrained(work)
    else:
        texts = [examples["context"] + examples["question"] for examples, _ in datasets.values()]
        with tempfile.TemporaryDirectory() as work:
            tokenizer = AutoTokenizer.from_pretrained(make_tiny_model(work, texts=texts, all_cjk=True))
    for source, (examples, choices) in datasets.items():
        for max_seq_length in args.max_seq_length:
            stride = min(args.doc_stride, max_seq_length // 4)
            check(Path(source).name, examples, tokenizer, max_seq_length, stride)
            check_assembly(Path(source).name, examples, choices, tokenizer, max_seq_length, stride)


if __name__ == "__main__":
    main()
