"""Two commits of the project on the same data and the same checkpoints: are the answers byte for byte the same in
every mode, and is the new one as fast? Each mode runs once per round for each commit, the commits alternating, so
that a machine that drifts over minutes (a shared VM) slows both alike.

    python benchmarks/compare_commits.py OLD NEW --data_dir ../shared/data/drcd-dev-adl [--rounds 3] \
        [--modes plain torchscript torch_export top2 ensemble end_to_end window256 threads]

OLD and NEW are anything `git worktree add` takes (a commit, a branch, HEAD); each is checked out in a temporary
worktree and run with this interpreter. The checkpoints are random-weight models of a tiny BERT config (speed and
byte-identity do not depend on the weights), built once: two families, one on the data's own characters, one on the
real bert-base-chinese WordPiece vocabulary when --vocab is given, so that ensembles mix tokenizers. Every mode reads
labelled questions (valid.json), so the CSV, the metrics JSON, errors.jsonl and summary.md are all compared. It prints
each mode's wall times per commit (the whole `python inference.py` process, loading included) and whether every
output file is identical, and exits 1 when one is not.
"""

import argparse
import atexit
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from make_tiny_model import make_tiny_model  # noqa: E402

MODES = {
    "plain": ["--mc_model", "{mc_a}", "--qa_model", "{qa_a}"],
    "torchscript": ["--mc_model", "{mc_a}", "--qa_model", "{qa_a}", "--export", "torchscript"],
    "torch_export": ["--mc_model", "{mc_a}", "--qa_model", "{qa_a}", "--export", "torch_export"],
    "top2": ["--mc_model", "{mc_a}", "--qa_model", "{qa_b}", "--top_k_paragraphs", "2"],
    "ensemble": ["--mc_model", "{mc_a}", "{mc_b}", "--qa_model", "{qa_a}", "{qa_b}", "--top_k_paragraphs", "2"],
    "end_to_end": ["--end_to_end", "--qa_model", "{qa_a}", "{qa_b}"],
    "window256": ["--mc_model", "{mc_b}", "--qa_model", "{qa_b}", "--max_seq_length", "256", "--doc_stride", "64"],
    "threads": ["--mc_model", "{mc_a}", "--qa_model", "{qa_a}", "--overlap", "on"],
}


def make_models(root, context, vocab):
    """Random-weight checkpoints of both stages for two tokenizer families (a: the real vocabulary when given)."""
    bases = {"b": Path(make_tiny_model(root / "base-b", texts=[context], all_cjk=True))}
    if vocab:
        base_a = root / "base-a"
        base_a.mkdir()
        shutil.copy(vocab, base_a / "vocab.txt")
        settings = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}
        (base_a / "tokenizer_config.json").write_text(json.dumps(settings))
        tokenizer = AutoTokenizer.from_pretrained(base_a)
        tokenizer.save_pretrained(base_a)
        config = AutoConfig.from_pretrained(bases["b"])
        config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
        config.save_pretrained(base_a)
        bases["a"] = base_a
    else:
        bases["a"] = bases["b"]
    paths = {}
    for family, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        config, tokenizer = AutoConfig.from_pretrained(bases[family]), AutoTokenizer.from_pretrained(bases[family])
        for stage, model_class in (("mc", AutoModelForMultipleChoice), ("qa", AutoModelForQuestionAnswering)):
            model = model_class.from_config(config)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.normal_(0.0, 0.2)  # scores that differ clearly between candidates and spans
            folder = root / f"{stage}-{family}"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            paths[f"{stage}_{family}"] = str(folder)
    return paths


def run(worktree, mode, models, data_dir, output):
    """One `python inference.py` of a mode in a commit's worktree; returns its wall seconds."""
    flags = [flag.format(**models) for flag in MODES[mode]]
    command = [sys.executable, "inference.py", "--context_file", str(data_dir / "context.json"),
               "--test_file", str(data_dir / "valid.json"), "--output_file", str(output / "pred.csv"),
               "--analysis_dir", str(output / "analysis"), *flags]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=worktree, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def same_outputs(first, second):
    files = ["pred.csv", "pred.csv.metrics.json", "analysis/errors.jsonl", "analysis/summary.md"]
    return {name: filecmp.cmp(first / name, second / name, shallow=False) for name in files}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and valid.json.")
    parser.add_argument("--vocab", type=Path, help="bert-base-chinese's vocab.txt, for the first tokenizer family.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()  # the commits run in their own worktrees

    work = Path(tempfile.mkdtemp(prefix="compare-commits-"))
    worktrees = {}
    for name in ("old", "new"):
        worktrees[name] = work / name
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktrees[name]),
                        getattr(args, name)], check=True, capture_output=True)  # fmt: skip

    def clean_up():
        for worktree in worktrees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    atexit.register(clean_up)
    context = json.loads((args.data_dir / "context.json").read_text(encoding="utf-8"))
    models = make_models(work / "models", context, args.vocab)
    print(f"{args.old} against {args.new}; {args.rounds} rounds; {torch.get_num_threads()} torch threads", flush=True)
    for name in ("old", "new"):  # warm-up: export caches, first-call costs
        for mode in args.modes:
            run(worktrees[name], mode, models, args.data_dir, work / "warm" / name / mode)
    times = {(name, mode): [] for name in ("old", "new") for mode in args.modes}
    identical = True
    for round_number in range(args.rounds):
        for mode in args.modes:
            outputs = {}
            for name in (("old", "new") if round_number % 2 == 0 else ("new", "old")):
                outputs[name] = work / "out" / name / mode
                shutil.rmtree(outputs[name], ignore_errors=True)
                times[(name, mode)].append(run(worktrees[name], mode, models, args.data_dir, outputs[name]))
            same = same_outputs(outputs["old"], outputs["new"])
            if not all(same.values()):
                identical = False
                print(f"  {mode}: DIFFERENT {[name for name, equal in same.items() if not equal]}", flush=True)
        print(f"round {round_number + 1} of {args.rounds} done", flush=True)
    print(f"\n{'mode':>13}  {'old s (runs)':>28}  {'new s (runs)':>28}  new / old  outputs")
    for mode in args.modes:
        old, new = times[("old", mode)], times[("new", mode)]
        ratio = statistics.median(new) / statistics.median(old)
        print(
            f"{mode:>13}  {statistics.median(old):6.2f} ({', '.join(f'{t:.1f}' for t in old)})"
            f"  {statistics.median(new):6.2f} ({', '.join(f'{t:.1f}' for t in new)})  {ratio:9.3f}"
        )
    print("every output identical" if identical else "SOME OUTPUTS DIFFER")
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
