"""One end-to-end model (all candidates joined, run_qa.py --context_mode candidates) against the two-stage pipeline at
the same number of optimizer steps, both trained from random weights and scored end to end on labelled questions
(valid.json) by inference.py: exact match, F1, paragraph of the answer, sequences per question, training and
inference time.

    python benchmarks/end_to_end.py --data_dir ../shared/data/drcd-dev-adl --output_dir outputs/end-to-end-bench

The model: a small BERT (2 layers, hidden 128, 2 heads, intermediate 512; a character vocabulary of the paragraphs plus
every CJK ideograph, make_tiny_model.py), random weights. Two arms, the same hyperparameters (learning rate 5e-4, 10%
warmup, weight decay 0.01, seed 42, windows of --max_seq_length tokens with stride --doc_stride):
- two stages: paragraph selection (run_swag.py), --paragraph_steps steps of 4 questions x 4 pairs, then span
  selection (run_qa.py), --span_steps steps of 8 windows of the relevant paragraph;
- end to end: run_qa.py --context_mode candidates, --paragraph_steps + --span_steps steps of 8 windows of the joined
  candidates: the same number of optimizer steps as both stages together.

Training runs in child processes (a model folder that already holds all_results.json is not trained again); its time
is the Trainer's train_runtime (wall) and the children's CPU time (user + system, all threads); inference time is that
of inference.predict, models loaded. With OMP_NUM_THREADS=1 on 2 shared cores the defaults took 5.3 minutes of CPU
time, --paragraph_steps 1200 --span_steps 1600 20.3 minutes (docs/end-to-end.md).

    python benchmarks/end_to_end.py --data_dir ../shared/data/drcd-dev-adl --count_windows

only counts the sequences per question at several window sizes (no training).
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import inference


def cpu_seconds(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def train(script, output_dir, common, *flags):
    """Trains one model in a child process unless it is there; (optimizer steps, sequences, wall s, CPU s)."""
    cpu_file = output_dir / "cpu_seconds.json"
    if not (output_dir / "all_results.json").exists():
        before = cpu_seconds(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, str(ROOT / script), *common, *flags, "--output_dir", str(output_dir)], check=True
        )
        cpu_file.write_text(json.dumps(cpu_seconds(resource.RUSAGE_CHILDREN) - before))
    state = json.loads((output_dir / "trainer_state.json").read_text())
    results = json.loads((output_dir / "all_results.json").read_text())
    sequences_per_example = 4 if script == "run_swag.py" else 1  # a paragraph-selection example is 4 pairs
    sequences = state["global_step"] * state["train_batch_size"] * sequences_per_example
    return state["global_step"], sequences, results["train_runtime"], json.loads(cpu_file.read_text())


def score(args, extra, output_dir):
    """inference.py on valid.json: (metrics, sequences per question, wall s, CPU s), models loaded."""
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
    wall, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    prediction = inference.predict(arguments)
    wall, cpu = time.perf_counter() - wall, cpu_seconds(resource.RUSAGE_SELF) - cpu
    sequences = sum(stats.sequences for stats in prediction.stages)
    return prediction.metrics, sequences / prediction.metrics["questions"], wall - prediction.load_seconds, cpu


def standard_error(metrics):
    """Of the exact match (in [0, 100]) as a proportion over the questions, to judge the difference of the arms."""
    exact = metrics["exact_match"] / 100
    return 100 * math.sqrt(exact * (1 - exact) / metrics["questions"])


def count_windows(args, base):
    """Sequences per question on valid.json at each window size: span selection on the relevant paragraph, the
    joined candidates, and the two stages at inference (a pair per candidate, then the relevant paragraph's windows);
    and the tokens of a question with its candidates joined. With the character tokenizer of `base`."""
    from transformers import AutoTokenizer

    from adl_data import load_context, load_questions, to_squad_examples
    from utils_qa import prepare_validation_features

    tokenizer = AutoTokenizer.from_pretrained(base)
    context = load_context(args.data_dir / "context.json")
    questions = load_questions(args.data_dir / "valid.json", context, need_answer=True)
    relevant = to_squad_examples(questions, context)
    joined = to_squad_examples(questions, context, "candidates")
    whole = prepare_validation_features(joined, tokenizer, max_seq_length=100_000, doc_stride=128)
    tokens = sum(len(ids) for ids in whole["input_ids"]) / len(questions)
    candidates = sum(len(q["paragraphs"]) for q in questions) / len(questions)
    print(f"{len(questions)} questions, {candidates:.2f} candidates each, {tokens:,.0f} tokens with them all joined")
    print("| window (tokens / stride) | span selection, relevant paragraph | end to end, candidates joined "
          "| two stages at inference |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for length, stride in ((192, 64), (256, 64), (512, 128), (4096, 128)):
        options = {"max_seq_length": length, "doc_stride": stride}
        one = len(prepare_validation_features(relevant, tokenizer, **options)["input_ids"]) / len(questions)
        all_joined = len(prepare_validation_features(joined, tokenizer, **options)["input_ids"]) / len(questions)
        print(f"| {length} / {stride} | {one:.2f} | {all_joined:.2f} | {candidates + one:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="context.json, train.json and valid.json.")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/end-to-end-bench"))
    parser.add_argument("--paragraph_steps", type=int, default=300)
    parser.add_argument("--span_steps", type=int, default=400)
    parser.add_argument("--max_seq_length", type=int, default=192)
    parser.add_argument("--doc_stride", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32, help="Inference batch size.")
    parser.add_argument(
        "--count_windows", action="store_true", help="Only count sequences per question at several window sizes."
    )
    args = parser.parse_args()

    base = args.output_dir / "base"
    if not (base / "config.json").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "make_tiny_model.py"), "--output_dir", str(base), "--all_cjk", "--texts",
             str(args.data_dir / "context.json"), "--num_layers", "2", "--hidden_size", "128", "--num_heads", "2",
             "--intermediate_size", "512"],
            check=True,
        )  # fmt: skip
    if args.count_windows:
        count_windows(args, base)
        return
    common = ["--model_name_or_path", str(base), "--from_scratch", "--context_file", str(args.data_dir / "context.json"),
              "--train_file", str(args.data_dir / "train.json"), "--do_train", "--max_seq_length",
              str(args.max_seq_length), "--learning_rate", "5e-4", "--warmup_steps", "0.1", "--weight_decay", "0.01",
              "--seed", "42", "--logging_steps", "50", "--save_strategy", "no", "--report_to", "none",
              "--disable_tqdm", "true"]  # fmt: skip
    two_stage, end_to_end = args.output_dir / "two-stage", args.output_dir / "end-to-end"
    windows = ["--doc_stride", str(args.doc_stride), "--per_device_train_batch_size", "8"]
    mc = train("run_swag.py", two_stage / "paragraph-selection", common, "--max_steps", str(args.paragraph_steps),
               "--per_device_train_batch_size", "4")  # fmt: skip
    qa = train("run_qa.py", two_stage / "span-selection", common, "--max_steps", str(args.span_steps), *windows)
    e2e = train("run_qa.py", end_to_end, common, "--context_mode", "candidates",
                "--max_steps", str(args.paragraph_steps + args.span_steps), *windows)  # fmt: skip

    arms = [
        ("two stages", [a + b for a, b in zip(mc, qa)],
         ["--mc_model", str(two_stage / "paragraph-selection"), "--qa_model", str(two_stage / "span-selection")]),
        ("end to end", e2e, ["--end_to_end", "--qa_model", str(end_to_end)]),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, (steps, sequences, wall, cpu), extra in arms:
            metrics, per_question, inference_wall, inference_cpu = score(args, extra, Path(work))
            rows.append(
                f"| {name} | {steps:,} | {sequences:,} | {wall / 60:.1f} min / {cpu / 60:.1f} min | "
                f"{metrics['exact_match']:.2f} ± {standard_error(metrics):.2f} | {metrics['f1']:.2f} | {metrics['paragraph_selection_accuracy']:.3f} | "
                f"{metrics['answer_paragraph_accuracy']:.3f} | {per_question:.2f} | {inference_wall:.0f} s / "
                f"{inference_cpu:.0f} s |"
            )
    print(f"{mc[0]} + {qa[0]} optimizer steps in two stages, {e2e[0]} end to end; {metrics['questions']} questions")
    print(
        "| model | optimizer steps | sequences trained on | training time (wall / CPU) | exact match | F1 "
        "| paragraph selection accuracy | paragraph of the answer | sequences per question | inference (wall / CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
