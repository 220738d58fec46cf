"""End-to-end exact match of joint decoding (--top_k_paragraphs K) and of an ensemble against each of its members,
with the time per question of each setting, on labelled questions (valid.json).

    python benchmarks/joint_and_ensembles.py --data_dir ../shared/data/drcd-dev-adl \
        --runs outputs/seed1 outputs/seed2 [--top_k 1 2 4] [--max_seq_length 256 --doc_stride 64]

Each RUN is a folder with paragraph-selection/ and span-selection/ checkpoints (benchmarks/train_from_scratch.sh makes
one); every run alone and all of them together (an ensemble in both stages) are scored at each K. Time per question:
the wall time of inference.predict without the loading of the checkpoints (Prediction.load_seconds), divided by the
number of questions.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import inference  # noqa: E402


def evaluate(args, mc, qa, top_k, output_dir):
    arguments = inference.parse_arguments(
        [
            "--context_file",
            str(args.data_dir / "context.json"),
            "--test_file",
            str(args.data_dir / "valid.json"),
            "--output_file",
            str(output_dir / "pred.csv"),
            "--mc_model",
            *map(str, mc),
            "--qa_model",
            *map(str, qa),
            "--top_k_paragraphs",
            str(top_k),
            "--max_seq_length",
            str(args.max_seq_length),
            "--doc_stride",
            str(args.doc_stride),
            "--batch_size",
            str(args.batch_size),
        ]
    )
    start = time.perf_counter()
    prediction = inference.predict(arguments)
    seconds = time.perf_counter() - start - prediction.load_seconds
    return prediction.metrics, 1000 * seconds / prediction.metrics["questions"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and valid.json.")
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        required=True,
        help="Folders of paragraph-selection/ and span-selection/ checkpoints.",
    )
    parser.add_argument("--top_k", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max_seq_length", type=int, default=256, help="As in training (train_from_scratch.sh).")
    parser.add_argument("--doc_stride", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()

    settings = [(run.name, [run]) for run in args.runs]
    if len(args.runs) > 1:
        settings.append((f"ensemble of {len(args.runs)}", args.runs))
    print(
        "| models | K | exact match | F1 | paragraph selection accuracy | paragraph of the answer | ms per question |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for name, runs in settings:
            for top_k in args.top_k:
                metrics, milliseconds = evaluate(
                    args,
                    [r / "paragraph-selection" for r in runs],
                    [r / "span-selection" for r in runs],
                    top_k,
                    Path(work),
                )
                print(
                    f"| {name} | {top_k} | {metrics['exact_match']:.2f} | {metrics['f1']:.2f} | "
                    f"{metrics['paragraph_selection_accuracy']:.3f} | {metrics['answer_paragraph_accuracy']:.3f} | "
                    f"{milliseconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
