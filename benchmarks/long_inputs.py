"""Long inputs: paragraphs of up to a million characters and 500-character questions, through inference and through
training-feature preparation. Checks that no answer is lost and measures the peak memory (maximum resident set size,
as /usr/bin/time -v reports it) of inference for each case in a fresh process, to show that memory is bounded by a
chunk of windows, not by the paragraph or the number of questions.

    python benchmarks/long_inputs.py --data_dir ../shared/data/drcd-dev-adl \
        [--cases 2000x1 20000x1 100000x1 1000000x1 1000000x3 1000000x20]

A case LENGTHxN is N questions on one paragraph of LENGTH characters (its only candidate).

The models have random weights of a 1-layer BERT (memory and windowing do not depend on the model); the
answer check uses the oracle (post-processing logits peaking at the gold tokens), as in benchmarks/oracle_offsets.py.
"""

import argparse
import atexit
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import inference  # noqa: E402
from make_tiny_model import make_tiny_model  # noqa: E402
from utils_qa import (  # noqa: E402
    postprocess_qa_predictions,
    prepare_train_features,
    prepare_validation_features,
)

QUESTION = "請問在這一段非常長的文章裡面，最後提到的那一件事情是什麼？" * 17  # 510 characters


def build_inputs(data_dir, length, questions, work):
    """context.json with one paragraph of `length` characters (plus the data's own), a test file with `questions`
    questions on it, and the answer: 12 characters near its end."""
    context = json.loads((data_dir / "context.json").read_text(encoding="utf-8"))
    long_paragraph = ""
    while len(long_paragraph) < length:
        long_paragraph += context[len(long_paragraph) % len(context)]
    long_paragraph = long_paragraph[:length]
    context = [long_paragraph] + context
    answer_start = length - 40
    # The long paragraph is the only candidate, so that span selection has to read all of it.
    test = [{"id": f"long-{q}", "question": QUESTION[q : q + 500], "paragraphs": [0]} for q in range(questions)]
    (work / "context.json").write_text(json.dumps(context, ensure_ascii=False), encoding="utf-8")
    (work / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    return long_paragraph, answer_start, long_paragraph[answer_start : answer_start + 12]


def oracle_answer(tokenizer, paragraph, answer_start, answer):
    examples = {
        "id": ["long"],
        "question": [QUESTION[:500]],
        "context": [paragraph],
        "answers": [{"text": [answer], "answer_start": [answer_start]}],
    }
    features = prepare_validation_features(examples, tokenizer)
    labels = prepare_train_features(examples, tokenizer)
    start_logits, end_logits = [], []
    for i, (start, end) in enumerate(zip(labels["start_positions"], labels["end_positions"])):
        starts = np.full(len(features["input_ids"][i]), -10.0)
        ends = starts.copy()
        if start:
            starts[start], ends[end] = 10.0, 10.0
        start_logits.append(starts)
        end_logits.append(ends)
    predicted = postprocess_qa_predictions(examples, features, (start_logits, end_logits))["long"]
    return predicted, len(features["input_ids"]), sum(1 for s in labels["start_positions"] if s)


def child(args):
    """One measurement in this (fresh) process; prints a JSON line."""
    work = Path(tempfile.mkdtemp(prefix="long-inputs-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    length, questions = map(int, args.child.split("x"))
    paragraph, answer_start, answer = build_inputs(args.data_dir, length, questions, work)
    # The smallest BERT: memory and windowing do not depend on the model, and a million characters make 3,500
    # windows per question.
    base = make_tiny_model(
        work / "base", texts=[paragraph], all_cjk=True, num_layers=1, hidden_size=32, num_heads=1, intermediate_size=64
    )
    config, tokenizer = AutoConfig.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    for stage, model_class in [("mc", AutoModelForMultipleChoice), ("qa", AutoModelForQuestionAnswering)]:
        model_class.from_config(config).save_pretrained(work / stage)
        tokenizer.save_pretrained(work / stage)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    prediction = inference.predict(
        inference.parse_arguments(
            [
                "--context_file",
                str(work / "context.json"),
                "--test_file",
                str(work / "test.json"),
                "--output_file",
                str(work / "pred.csv"),
                "--mc_model",
                str(work / "mc"),
                "--qa_model",
                str(work / "qa"),
                "--device",
                "cpu",
                "--batch_size",
                "16",
            ]
        )
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    predicted, windows, labelled = oracle_answer(tokenizer, paragraph, answer_start, answer)
    print(
        json.dumps(
            {
                "length": length,
                "questions": questions,
                "windows": windows,
                "labelled_windows": labelled,
                "inference_windows": prediction.stages[1].sequences,
                "oracle_found": predicted == answer,
                "inference_s": round(seconds, 2),
                "peak_rss_mib": round(peak / 1024),
                "rss_before_inference_mib": round(before / 1024),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder whose paragraphs fill the long one.")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["2000x1", "20000x1", "100000x1", "1000000x1", "1000000x3", "1000000x20"],
        help="LENGTHxN: N questions on one paragraph of LENGTH characters.",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    for case in args.cases:
        result = subprocess.run(
            [sys.executable, __file__, "--data_dir", str(args.data_dir), "--child", case],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"paragraph {row['length']:>9,} characters, {row['questions']:>2} question(s) of 500: {row['windows']} "
            f"windows per question, answer labelled in {row['labelled_windows']}, oracle finds it: "
            f"{row['oracle_found']}; inference {row['inference_s']} s ({row['inference_windows']} windows in stage 2), "
            f"peak RSS {row['peak_rss_mib']} MiB ({row['rss_before_inference_mib']} MiB before inference)",
            flush=True,
        )


if __name__ == "__main__":
    main()
