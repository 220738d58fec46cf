"""Converts the development corpora with convert_squad.py and prints the conversion report (questions read, kept,
repaired, dropped) and how hard the negatives are: the accuracy of picking the candidate most similar to the question
by character-bigram TF-IDF (0.25 would mean TF-IDF cannot tell the 4 candidates apart).

    python benchmarks/convert_squad_report.py ../shared/data

DATA_DIR holds raw/DRCD_dev.json, raw/cmrc2018_dev.json and, for comparison, drcd-dev-adl/ (whose negatives were made
by character-bigram TF-IDF too).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import convert_squad  # noqa: E402
from adl_data import load_context, load_questions  # noqa: E402


def hardness(folder, split="train.json"):
    context = load_context(folder / "context.json")
    questions = load_questions(folder / split, context, need_answer=True)
    return convert_squad.tfidf_best_candidate_accuracy(context, questions), len(questions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="convert-squad-") as work:
        for name in ["DRCD_dev.json", "cmrc2018_dev.json"]:
            output_dir = Path(work) / name
            start = time.perf_counter()
            convert_squad.main(
                [str(args.data_dir / "raw" / name), "--output_dir", str(output_dir), "--seed", str(args.seed)]
            )
            seconds = time.perf_counter() - start
            accuracy, count = hardness(output_dir)
            rows.append((f"raw/{name}, converted", count, accuracy, f"{seconds:.1f} s"))
    for split in ["train.json", "valid.json"]:
        accuracy, count = hardness(args.data_dir / "drcd-dev-adl", split)
        rows.append((f"drcd-dev-adl/{split}", count, accuracy, ""))

    print("\n| questions of | count | TF-IDF-best candidate accuracy | conversion time |")
    print("|---|---|---|---|")
    for source, count, accuracy, seconds in rows:
        print(f"| {source} | {count} | {accuracy:.3f} | {seconds} |")


if __name__ == "__main__":
    main()
