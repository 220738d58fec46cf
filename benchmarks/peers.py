"""Our span selection beside what a user would otherwise pick, on the same checkpoint and the same windows.

    python benchmarks/peers.py --data_dir ../shared/data/drcd-dev-adl [--checkpoint DIR] \
        [--peer_python /tmp/peers-venv/bin/python] [--questions 500] [--max_seq_length 384] [--doc_stride 128]

1. Post-processing on the same logits: ours (`utils_qa.postprocess_qa_predictions`: every valid span of every window
   scored, exactly) against the transformers examples' algorithm (the 20 best start and the 20 best end tokens of each
   window paired, invalid pairs dropped): the share of identical answers and the time.
2. Stage 2 end to end: ours (inference.py's span selection on each question's gold paragraph) against the transformers
   `pipeline("question-answering")`: questions per second and the share of identical answers. Transformers 5 removed
   that pipeline, so it runs under --peer_python, an interpreter with transformers 4.x (benchmarks/peers.sh makes
   one); without it, part 2 is skipped.

The checkpoint is --checkpoint (a span-selection model directory), or by default a 2-layer BERT with random weights
(normal, scale 0.2, so that logits differ clearly) over a character vocabulary of the data.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import inference  # noqa: E402
import members  # noqa: E402
from adl_data import load_context, load_questions, to_squad_examples  # noqa: E402
from batching import StageStats  # noqa: E402
from checkpoints import SPAN_SELECTION  # noqa: E402
from decoding import decode  # noqa: E402
from make_tiny_model import make_tiny_model  # noqa: E402
from tokens import ParagraphTokens  # noqa: E402
from utils_qa import postprocess_qa_predictions, prepare_validation_features  # noqa: E402

# Runs under --peer_python (transformers 4.x): the question-answering pipeline over the same questions.
PEER_SCRIPT = r"""
import json, sys, time
import torch
from transformers import pipeline
arguments = json.loads(sys.argv[1])
inputs = json.load(open(arguments["inputs"], encoding="utf-8"))
torch.set_num_threads(arguments["threads"])
qa = pipeline("question-answering", model=arguments["checkpoint"], tokenizer=arguments["checkpoint"], device=-1)
options = dict(max_seq_len=arguments["max_seq_length"], doc_stride=arguments["doc_stride"],
               max_question_len=arguments["max_question_length"], max_answer_len=arguments["max_answer_length"],
               top_k=1, batch_size=arguments["batch_size"])
qa(inputs[:2], **options)  # warm-up
start = time.perf_counter()
results = qa(inputs, **options)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "answers": [r["answer"] for r in results], "starts": [r["start"] for r in results]},
                 ensure_ascii=False))
"""


def make_checkpoint(root, context):
    base = make_tiny_model(
        root / "base", texts=[context], all_cjk=True, num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512
    )
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(base))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    model.save_pretrained(root / "span-selection")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "span-selection")
    return root / "span-selection"


def window_logits(checkpoint, features):
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    starts, ends = [], []
    with torch.inference_mode():
        for i in range(len(features["input_ids"])):
            inputs = {
                name: torch.tensor([features[name][i]]) for name in ("input_ids", "token_type_ids", "attention_mask")
            }
            output = model(**inputs)
            starts.append(output.start_logits[0].numpy())
            ends.append(output.end_logits[0].numpy())
    return starts, ends


def examples_postprocess(examples, features, start_logits, end_logits, n_best_size=20, max_answer_length=64):
    """The transformers examples' post-processing, as they describe it: in each window, every pair of one of the
    n_best_size highest start logits and one of the n_best_size highest end logits that is a valid span; the best
    score over all windows. Returns {id: (answer, score)}."""
    best = {example_id: ("", -np.inf) for example_id in examples["id"]}
    context_of = dict(zip(examples["id"], examples["context"]))
    for i, example_id in enumerate(features["example_id"]):
        offsets = features["offset_mapping"][i]
        for s in np.argsort(start_logits[i])[::-1][:n_best_size]:
            for e in np.argsort(end_logits[i])[::-1][:n_best_size]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[i][s] + end_logits[i][e])
                if score > best[example_id][1]:
                    best[example_id] = (context_of[example_id][offsets[s][0] : offsets[e][1]], score)
    return best


def compare_postprocessing(args, checkpoint, examples):
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    features = prepare_validation_features(examples, tokenizer, args.max_seq_length, args.doc_stride)
    start_logits, end_logits = window_logits(checkpoint, features)
    started = time.perf_counter()
    ours = postprocess_qa_predictions(examples, features, (start_logits, end_logits))
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs = examples_postprocess(examples, features, start_logits, end_logits)
    theirs_seconds = time.perf_counter() - started
    same = sum(ours[i] == theirs[i][0] for i in examples["id"])
    total = len(examples["id"])
    print(
        f"post-processing on the same logits ({len(features['input_ids'])} windows of {total} questions): "
        f"identical answers {same}/{total} = {100 * same / total:.1f}%; ours {ours_seconds:.2f} s, the examples' "
        f"algorithm {theirs_seconds:.2f} s ({theirs_seconds / ours_seconds:.1f}x ours)",
        flush=True,
    )
    return ours


def our_stage_two(args, checkpoint, questions, context):
    """inference.py's span selection on each question's gold paragraph; returns (answers, seconds)."""
    arguments = SimpleNamespace(
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_question_length=args.max_question_length,
        n_best_size=20,
        max_answer_length=args.max_answer_length,
        batch_size=args.batch_size,
        export="none",
    )
    device, dtype = torch.device("cpu"), torch.float32
    member = members.load_members([checkpoint], SPAN_SELECTION, arguments, device, dtype)[0]
    started = time.perf_counter()
    tokens = ParagraphTokens(context)
    requests = [(q, question["relevant"]) for q, question in enumerate(questions)]
    spans = inference.find_spans(
        questions, requests, tokens, member, arguments, device, StageStats("span selection"), overlap=False
    )
    answers = []
    for question, candidates in zip(questions, spans):
        best = decode([question["relevant"]], [0.0], [candidates], context, 1)
        answers.append(best[0].text if best else "")
    return answers, time.perf_counter() - started


def compare_pipeline(args, checkpoint, questions, context):
    answers, seconds = our_stage_two(args, checkpoint, questions, context)
    with tempfile.TemporaryDirectory() as work:
        inputs = Path(work) / "inputs.json"
        inputs.write_text(
            json.dumps(
                [{"question": q["question"], "context": context[q["relevant"]]} for q in questions], ensure_ascii=False
            ),
            encoding="utf-8",
        )
        options = {
            "inputs": str(inputs),
            "checkpoint": str(checkpoint),
            "max_seq_length": args.max_seq_length,
            "doc_stride": args.doc_stride,
            "max_question_length": args.max_question_length,
            "max_answer_length": args.max_answer_length,
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
        }
        result = subprocess.run(
            [str(args.peer_python), "-c", PEER_SCRIPT, json.dumps(options)],
            capture_output=True,
            text=True,
            check=True,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        )
    peer = json.loads(result.stdout.strip().splitlines()[-1])
    version = subprocess.run(
        [str(args.peer_python), "-c", "import transformers; print(transformers.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    same = sum(a == b for a, b in zip(answers, peer["answers"]))
    total = len(questions)
    print(
        f"stage 2 on {total} questions (gold paragraphs): ours {total / seconds:.1f} questions/s ({seconds:.2f} s), "
        f"transformers {version} pipeline('question-answering') {total / peer['seconds']:.1f} questions/s "
        f"({peer['seconds']:.2f} s): ours {peer['seconds'] / seconds:.2f}x as fast; identical answers {same}/{total} "
        f"= {100 * same / total:.1f}%",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and valid.json.")
    parser.add_argument("--checkpoint", type=Path, help="A span-selection checkpoint (default: random weights).")
    parser.add_argument("--peer_python", type=Path, help="An interpreter with transformers 4.x, for the pipeline.")
    parser.add_argument("--questions", type=int, default=500, help="The first N questions of valid.json.")
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("--doc_stride", type=int, default=128)
    parser.add_argument("--max_question_length", type=int, default=64)
    parser.add_argument("--max_answer_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()

    context = load_context(args.data_dir / "context.json")
    questions = load_questions(args.data_dir / "valid.json", context, need_answer=True)[: args.questions]
    with tempfile.TemporaryDirectory() as work:
        checkpoint = args.checkpoint or make_checkpoint(Path(work), context)
        print(
            f"checkpoint {args.checkpoint or 'random weights, 2 layers, hidden 128'}; windows of {args.max_seq_length} "
            f"tokens, stride {args.doc_stride}; CPU, {torch.get_num_threads()} threads",
            flush=True,
        )
        compare_postprocessing(args, checkpoint, to_squad_examples(questions, context))
        if args.peer_python:
            compare_pipeline(args, checkpoint, questions, context)


if __name__ == "__main__":
    main()
