"""One end-to-end model (all 4 candidates joined) against the two-stage pipeline, both scored end to end on labelled
questions (valid.json) by inference.py: exact match, F1, paragraph of the answer, sequences per question, training and
inference time.

    bash benchmarks/train_from_scratch.sh ../shared/data/drcd-dev-adl outputs/two-stage 1 1 2
    END_TO_END_STEPS=STEPS bash benchmarks/train_from_scratch.sh ../shared/data/drcd-dev-adl outputs/end-to-end 1
    python benchmarks/end_to_end.py --data_dir ../shared/data/drcd-dev-adl --two_stage outputs/two-stage \
        --end_to_end outputs/end-to-end/end-to-end

The same budget means the same number of optimizer steps: STEPS is the sum of the two stages' steps, which this
script prints (1 epoch of paragraph selection and 2 of span selection on the development data: 378 + 1,112 = 1,490). Training time is the Trainer's
train_runtime (its evaluations included); inference time the wall time of inference.predict without loading the
checkpoints.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import inference


def training(run_dir, sequences_per_example=1):
    """(optimizer steps, sequences trained on, seconds) of a Trainer run."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    results = json.loads((run_dir / "all_results.json").read_text())
    sequences = state["global_step"] * state["train_batch_size"] * sequences_per_example
    return state["global_step"], sequences, results["train_runtime"]


def score(args, extra, output_dir):
    arguments = inference.parse_arguments(
        [
            "--context_file", str(args.data_dir / "context.json"),
            "--test_file", str(args.data_dir / "valid.json"),
            "--output_file", str(output_dir / "pred.csv"),
            "--max_seq_length", str(args.max_seq_length),
            "--doc_stride", str(args.doc_stride),
            "--batch_size", str(args.batch_size),
            *extra,
        ]
    )  # fmt: skip
    start = time.perf_counter()
    prediction = inference.predict(arguments)
    seconds = time.perf_counter() - start - prediction.load_seconds
    sequences = sum(stats.sequences for stats in prediction.stages)
    return prediction.metrics, sequences / prediction.metrics["questions"], seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and valid.json.")
    parser.add_argument(
        "--two_stage", type=Path, required=True, help="Folder of paragraph-selection/, span-selection/."
    )
    parser.add_argument("--end_to_end", type=Path, required=True, help="A run_qa.py --context_mode candidates model.")
    parser.add_argument("--max_seq_length", type=int, default=256, help="As in training (train_from_scratch.sh).")
    parser.add_argument("--doc_stride", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()

    mc = training(args.two_stage / "paragraph-selection", sequences_per_example=4)
    qa = training(args.two_stage / "span-selection")
    e2e = training(args.end_to_end)
    print(f"optimizer steps: two stages {mc[0]} + {qa[0]} = {mc[0] + qa[0]}, end to end {e2e[0]}")
    two_stage_models = ["--mc_model", str(args.two_stage / "paragraph-selection"),
                        "--qa_model", str(args.two_stage / "span-selection")]  # fmt: skip
    arms = [
        ("two stages", (mc[0] + qa[0], mc[1] + qa[1], mc[2] + qa[2]), two_stage_models),
        ("end to end", e2e, ["--end_to_end", "--qa_model", str(args.end_to_end)]),
    ]
    print(
        "| model | optimizer steps | sequences trained on | training time | exact match | F1 | paragraph of the answer "
        "| sequences per question | inference time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for name, (steps, sequences, seconds), extra in arms:
            metrics, per_question, inference_seconds = score(args, extra, Path(work))
            print(
                f"| {name} | {steps:,} | {sequences:,} | {seconds / 60:.1f} min | {metrics['exact_match']:.2f} | "
                f"{metrics['f1']:.2f} | {metrics['answer_paragraph_accuracy']:.3f} | {per_question:.2f} | "
                f"{inference_seconds:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
