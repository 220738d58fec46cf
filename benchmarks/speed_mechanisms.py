"""Does each speed mechanism of inference.py earn its place? Each one switched off in turn, in one run, alternating.

    OMP_NUM_THREADS=1 python benchmarks/speed_mechanisms.py --data_dir ../shared/data/drcd-dev-adl [--rounds 3] \
        [--sleep_ms 30] [--device auto|cpu|cuda] [--config small|base] [--batch_size 32]

The mechanisms and their arms (random-weight checkpoints of a fixed BERT config, as in inference_speed.py):

1. tokenizing: tokens.tokenize_texts looks each CJK ideograph up once and tokenizes only the runs of other characters
   (`per-ideograph`), against the tokenizer's own batch call on every text (`tokenizer call`: the ideograph path
   turned off). Measured as the CPU work per question: the pipeline with forward passes that return zeros at once,
   so that everything left is reading, tokenizing, assembling, padding, post-processing and writing.
2. overlapping the CPU work with the device: no threads (`none`, --overlap off), the background threads of
   batching.run_model (`threads`: a preparing thread up to a whole chunk ahead, chunks that start at two batches and
   double, post-processing in a second thread; --overlap on), and a plain prefetch (`prefetch`: one thread preparing
   the next two batches, fixed chunks, post-processing inline), with a stand-in device that sleeps --sleep_ms per
   batch (releasing the interpreter lock as a GPU does), or with --sleep_ms 0 the real model on --device (on a GPU:
   benchmarks/gpu.sh). The wall time of each.

Every arm runs once per round, the arms of a mechanism one after the other, and the rounds repeat the whole set, so
that a machine that drifts over minutes (a shared VM) moves every arm alike; each figure is the median over rounds.
Every arm must give the same answers as the first (asserted).
"""

import argparse
import atexit
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import CONFIGS, StandIn, make_checkpoints  # noqa: E402

import batching  # noqa: E402
import inference  # noqa: E402
import members  # noqa: E402
import tokens  # noqa: E402
from checkpoints import PARAGRAPH_SELECTION  # noqa: E402


class InlineExecutor:
    """A ThreadPoolExecutor stand-in that runs each task at once, in the calling thread."""

    def __init__(self, max_workers=None):
        pass

    def submit(self, function, *args):
        future = Future()
        future.set_result(function(*args))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def arm_settings(arm):
    """The (flags, patches) of an arm: inference.py flags, and (object, attribute, value) to set for its run."""
    fixed_chunks = lambda batch_size, overlap: itertools.repeat(batching.SEQUENCES_PER_CHUNK)  # noqa: E731
    in_background = batching._in_background
    return {
        "per-ideograph": ([], []),
        "tokenizer call": ([], [(tokens, "splits_at_every_ideograph", lambda backend: False)]),
        "none": (["--overlap", "off"], []),
        "threads": (["--overlap", "on"], []),
        "prefetch": (
            ["--overlap", "on"],
            [
                (batching, "chunk_sizes", fixed_chunks),
                (batching, "ThreadPoolExecutor", InlineExecutor),
                (batching, "_in_background", lambda iterator, depth: in_background(iterator, 2)),
            ],
        ),
    }[arm]


def run_arm(args, arm, stand_in_seconds=None):
    """One run of inference.predict for an arm: (wall seconds without loading, process CPU seconds, answers)."""
    flags, patches = arm_settings(arm)
    argv = [
        "--context_file", str(args.context_file), "--test_file", str(args.test_file),
        "--output_file", str(args.work / f"pred-{arm.replace(' ', '-')}.csv"),
        "--mc_model", str(args.mc_model), "--qa_model", str(args.qa_model),
        "--device", args.device, "--batch_size", str(args.batch_size), *flags,
    ]  # fmt: skip
    arguments = inference.parse_arguments(argv)
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    load_members = inference.load_members
    tokens._backends.clear()  # each arm builds its tokenizer backend anew (with or without the ideograph table)

    def load_and_replace(paths, stage, arguments, device, dtype):
        members = load_members(paths, stage, arguments, device, dtype)
        if stand_in_seconds is not None:
            for member in members:
                member.forward = StandIn(stage is PARAGRAPH_SELECTION, stand_in_seconds)
        return members

    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        inference.load_members = load_and_replace
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        prediction = inference.predict(arguments)
        if torch.cuda.is_available() and args.device != "cpu":
            torch.cuda.synchronize()
        wall = time.perf_counter() - wall_start - prediction.load_seconds
        cpu = time.process_time() - cpu_start
    finally:
        inference.load_members = load_members
        for owner, name, value in saved:
            setattr(owner, name, value)
    return wall, cpu, prediction.answers


MECHANISMS = {
    "tokenizing (CPU work: forward passes return zeros)": (["per-ideograph", "tokenizer call"], 0.0),
    "overlap (stand-in device, or the real one with --sleep_ms 0)": (["none", "threads", "prefetch"], "sleep"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and test.json.")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of every arm; figures are medians.")
    parser.add_argument(
        "--sleep_ms",
        type=float,
        default=30.0,
        help="Stand-in device time per batch for the overlap arms, in ms; 0: the real model on --device.",
    )
    parser.add_argument("--output_json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    args.work = Path(tempfile.mkdtemp(prefix="speed-mechanisms-"))
    atexit.register(shutil.rmtree, args.work, ignore_errors=True)
    args.context_file, args.test_file = args.data_dir / "context.json", args.data_dir / "test.json"
    context = json.loads(args.context_file.read_text(encoding="utf-8"))
    questions = len(json.loads(args.test_file.read_text(encoding="utf-8")))
    args.mc_model, args.qa_model = make_checkpoints(args.work, args.config, context)
    device = members.choose_device(args.device)[0]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"config {args.config}, {questions} questions, device {name}, torch {torch.__version__}", flush=True)

    def stand_in_seconds(stand_in):
        return (args.sleep_ms / 1000 if args.sleep_ms else None) if stand_in == "sleep" else stand_in

    for mechanism, (arms, stand_in) in MECHANISMS.items():  # warm-up: exports, caches, first-call costs
        for arm in arms:
            run_arm(args, arm, stand_in_seconds(stand_in))
    figures = {arm: {"wall": [], "cpu": []} for arms, _ in MECHANISMS.values() for arm in arms}
    for round_number in range(args.rounds):
        for mechanism, (arms, stand_in) in MECHANISMS.items():
            answers = None
            for arm in arms:
                wall, cpu, arm_answers = run_arm(args, arm, stand_in_seconds(stand_in))
                assert answers is None or arm_answers == answers, f"{arm} changed the answers"
                answers = arm_answers
                figures[arm]["wall"].append(wall)
                figures[arm]["cpu"].append(cpu)
        print(f"round {round_number + 1} of {args.rounds} done", flush=True)

    results = {}
    for mechanism, (arms, _) in MECHANISMS.items():
        print(f"\n{mechanism}:")
        for arm in arms:
            wall, cpu = statistics.median(figures[arm]["wall"]), statistics.median(figures[arm]["cpu"])
            results[arm] = {"wall_s": wall, "cpu_ms_per_question": 1000 * cpu / questions, **figures[arm]}
            runs = ", ".join(f"{w:.2f}" for w in figures[arm]["wall"])
            print(
                f"  {arm:>16}: wall {wall:6.2f} s (runs {runs}), CPU {1000 * cpu / questions:6.2f} ms per question "
                f"(all threads), {1000 * wall / questions:6.2f} ms per question wall"
            )
    if args.output_json:
        args.output_json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
