"""Is B better than A on the same questions, beyond the noise? A paired comparison of two runs of inference.py with
--analysis_dir on the same labelled questions (their errors.jsonl): the mean per-question difference in exact match
and F1, B minus A, with a 95% paired bootstrap interval (resampling the questions), and how many questions changed.

    python benchmarks/paired_bootstrap.py RUN_A/errors.jsonl RUN_B/errors.jsonl [--resamples 10000] [--seed 0]

An interval that contains 0 means the two settings cannot be told apart on these questions.
"""

import argparse
import json

import numpy as np


def read_errors(path):
    with open(path, encoding="utf-8") as file:
        return {record["id"]: record for record in map(json.loads, file)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", help="errors.jsonl of the first setting.")
    parser.add_argument("run_b", help="errors.jsonl of the second setting.")
    parser.add_argument("--resamples", type=int, default=10000, help="Bootstrap resamples.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the resampling.")
    args = parser.parse_args()

    a, b = read_errors(args.run_a), read_errors(args.run_b)
    if sorted(a) != sorted(b):
        raise SystemExit("paired_bootstrap.py: the two files do not hold the same question ids")
    ids = sorted(a)
    rng = np.random.default_rng(args.seed)
    samples = rng.integers(0, len(ids), (args.resamples, len(ids)))
    for metric in ("exact_match", "f1"):
        difference = np.array([b[i][metric] - a[i][metric] for i in ids])
        low, high = np.percentile(difference[samples].mean(axis=1), [2.5, 97.5])
        print(
            f"{metric}: B - A = {difference.mean():+.2f} (95% paired bootstrap {low:+.2f} to {high:+.2f}) on "
            f"{len(ids)} questions; {int((difference > 0).sum())} better, {int((difference < 0).sum())} worse"
        )
    moved = sum(a[i]["answer_paragraph"] != b[i]["answer_paragraph"] for i in ids)
    print(f"answer taken from another paragraph for {moved} of {len(ids)} questions")


if __name__ == "__main__":
    main()
