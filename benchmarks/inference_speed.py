"""How fast inference.py is, and where its time goes: the pipeline against the bare forward passes, the CPU work per
question, and the overlap of that work with a device.

    python benchmarks/inference_speed.py --data_dir ../shared/data/drcd-dev-adl [--config small|base] \
        [--device auto|cpu|cuda] [--exports none torchscript torch_export] [--repeat_test N] [--repeats 2] \
        [--sleep_ms 30 4] [--synthetic QUESTIONS] [--run_sh]

Both checkpoints get random weights of a fixed BERT config (speed does not depend on the weights): `small` is 2 layers
of hidden size 128, `base` is bert-base-chinese's shape (12 layers, hidden 768). It prints:

1. for each export, the whole pipeline (`inference.predict`: read the JSON, tokenize, both stages, post-process,
   write the CSV; loading the checkpoints excluded) against the bare forward passes of exactly the batches the
   pipeline made (recorded during a run, already on the device), fastest of --repeats runs of each;
2. the CPU work per question: the pipeline with forward passes that return zeros at once, so that everything left
   is reading, tokenizing, assembling, padding, post-processing and writing;
3. the overlap: forward passes that sleep --sleep_ms per batch (releasing the GIL, as a GPU does), with the
   background threads off and on (fastest of --repeats runs each): on, the wall time must come close to max(device
   time, CPU work), not their sum.

--repeat_test N repeats the test questions N times (with new ids); --synthetic N makes ADL-sized data instead (N
questions with 4 candidates among paragraphs of 450-1,000 characters cut from the data's own), like the real test set
(2,213 questions).
"""

import argparse
import atexit
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import inference  # noqa: E402
import members  # noqa: E402
from checkpoints import PARAGRAPH_SELECTION  # noqa: E402
from make_tiny_model import make_tiny_model  # noqa: E402

CONFIGS = {
    "small": {"num_layers": 2, "hidden_size": 128, "num_heads": 2, "intermediate_size": 512},
    "base": {"num_layers": 12, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072},
}


def make_checkpoints(root, config_name, context):
    base = make_tiny_model(root / "base", texts=[context], all_cjk=True, **CONFIGS[config_name])
    config, tokenizer = AutoConfig.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    for stage, model_class in [
        ("paragraph-selection", AutoModelForMultipleChoice),
        ("span-selection", AutoModelForQuestionAnswering),
    ]:
        model_class.from_config(config).save_pretrained(root / stage)
        tokenizer.save_pretrained(root / stage)
    return root / "paragraph-selection", root / "span-selection"


def synthetic_data(context, questions, work, seed=0):
    """ADL-sized data: paragraphs of 450-1,000 characters cut from the data's own, and `questions` questions of 4
    candidates (questions are cut from paragraphs too)."""
    generator = random.Random(seed)
    text = "".join(context)
    paragraphs = []
    for _ in range(max(4 * questions, 1000)):
        length = generator.randint(450, 1000)
        start = generator.randrange(0, len(text) - length)
        paragraphs.append(text[start : start + length])
    test = []
    for q in range(questions):
        candidates = generator.sample(range(len(paragraphs)), 4)
        start = generator.randrange(0, 400)
        test.append(
            {"id": f"q{q}", "question": paragraphs[candidates[0]][start : start + 30] + "？", "paragraphs": candidates}
        )
    (work / "context.json").write_text(json.dumps(paragraphs, ensure_ascii=False), encoding="utf-8")
    (work / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Recording(torch.nn.Module):
    """Runs the real forward and keeps each batch's inputs, to time the bare forward passes over them later."""

    def __init__(self, forward):
        super().__init__()
        self.inner, self.batches = forward, []

    def forward(self, *inputs):
        self.batches.append([tensor.clone() for tensor in inputs])
        return self.inner(*inputs)


class StandIn(torch.nn.Module):
    """A forward pass that computes nothing: zeros of the right shape, after sleeping `seconds` (0: at once)."""

    def __init__(self, pairs, seconds):
        super().__init__()
        self.pairs, self.seconds, self.calls = pairs, seconds, 0

    def forward(self, input_ids, attention_mask, token_type_ids):
        self.calls += 1
        if self.seconds:
            time.sleep(self.seconds)
        if self.pairs:
            return (torch.zeros(input_ids.shape[0]),)
        return torch.zeros(input_ids.shape), torch.zeros(input_ids.shape)


def run_pipeline(args, export, forwards=None, overlap="auto"):
    """One run of inference.predict; `forwards(stage, member)` may replace each member's forward pass. `export` is an
    --export value."""
    flags = {
        "--context_file": args.context_file,
        "--test_file": args.test_file,
        "--output_file": args.output_dir / f"pred-{export}.csv",
        "--mc_model": args.mc_model,
        "--qa_model": args.qa_model,
        "--export": export,
        "--device": args.device,
        "--batch_size": args.batch_size,
        "--overlap": overlap,
    }
    argv = [str(item) for flag_and_value in flags.items() for item in flag_and_value]
    arguments = inference.parse_arguments(argv)
    load_members = inference.load_members
    replaced = []

    def load_and_replace(paths, stage, arguments, device, dtype):
        members = load_members(paths, stage, arguments, device, dtype)
        if forwards:
            for member in members:
                member.forward = forwards(stage, member)
                replaced.append(member.forward)
        return members

    inference.load_members = load_and_replace
    try:
        start = time.perf_counter()
        prediction = inference.predict(arguments)
        synchronize(members.choose_device(args.device)[0])
        seconds = time.perf_counter() - start - prediction.load_seconds
    finally:
        inference.load_members = load_members
    return prediction, seconds, replaced


def bare_forward_seconds(recording, device):
    """The forward passes alone over the recorded batches, already on the device."""
    batches = [[tensor.to(device) for tensor in inputs] for inputs in recording.batches]
    with torch.inference_mode():
        recording.inner(*batches[-1])  # warm-up (kernel selection, export guards) on the smallest batch
        synchronize(device)
        start = time.perf_counter()
        for inputs in batches:
            recording.inner(*inputs)
        synchronize(device)
    return time.perf_counter() - start


def measure_export(args, export):
    run_pipeline(args, export)  # creates and caches the export, warms up
    runs = [run_pipeline(args, export) for _ in range(args.repeats)]
    prediction, pipeline, _ = min(runs, key=lambda run: run[1])
    _, _, recordings = run_pipeline(args, export, forwards=lambda stage, member: Recording(member.forward))
    device = members.choose_device(args.device)[0]
    bare = [min(bare_forward_seconds(recording, device) for _ in range(args.repeats)) for recording in recordings]
    stage1, stage2 = prediction.stages
    return {
        "export": export,
        "questions": len(prediction.answers),
        "pipeline_s": pipeline,
        "bare_s": sum(bare),
        "ratio": pipeline / sum(bare),
        "pairs": stage1.sequences,
        "windows": stage2.sequences,
        "padding": (stage1.padded_tokens + stage2.padded_tokens)
        / (stage1.tokens + stage2.tokens + stage1.padded_tokens + stage2.padded_tokens),
        "stage1": {k: round(v, 3) for k, v in stage1.seconds.items()},
        "stage2": {k: round(v, 3) for k, v in stage2.seconds.items()},
    }


def measure_cpu_work(args):
    runs = [
        run_pipeline(
            args,
            "none",
            forwards=lambda stage, member: StandIn(stage is PARAGRAPH_SELECTION, 0),
            overlap="off",
        )
        for _ in range(args.repeats + 1)
    ]
    prediction, seconds, _ = min(runs, key=lambda run: run[1])
    return seconds, prediction


def measure_overlap(args, sleep_ms):
    """Wall time with forward passes that sleep `sleep_ms` per batch, threads off and on (fastest of --repeats runs
    each), and the device time: the number of forward passes times the sleep."""
    seconds = sleep_ms / 1000
    results = {}
    for overlap in ("off", "on"):
        runs = []
        for _ in range(args.repeats):
            prediction, wall, stand_ins = run_pipeline(
                args,
                "none",
                forwards=lambda stage, member: StandIn(stage is PARAGRAPH_SELECTION, seconds),
                overlap=overlap,
            )
            runs.append((wall, sum(stand_in.calls for stand_in in stand_ins) * seconds, prediction.answers))
        results[overlap] = min(runs, key=lambda run: run[0])
    assert results["off"][2] == results["on"][2], "the answers changed with the background threads"
    return results


def time_run_sh(args):
    """Wall time of `bash run.sh` in a copy of the project whose models/ are the benchmark's checkpoints."""
    root = Path(__file__).resolve().parent.parent
    project = args.output_dir / "project"
    project.mkdir()
    for path in [*root.glob("*.py"), root / "run.sh"]:
        shutil.copy(path, project / path.name)
    (project / "models").mkdir()
    (project / "models" / "paragraph-selection").symlink_to(args.mc_model)
    (project / "models" / "span-selection").symlink_to(args.qa_model)
    start = time.perf_counter()
    subprocess.run(
        [
            "bash",
            str(project / "run.sh"),
            str(args.context_file),
            str(args.test_file),
            str(args.output_dir / "run-sh.csv"),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="ADL folder with context.json and test.json.")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--exports",
        nargs="*",
        default=["none", "torchscript", "torch_export"],
        help="--export values to time against the bare forward passes; none given: only the CPU work and the overlap.",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeat_test", type=int, default=1, help="Repeat the test questions this many times.")
    parser.add_argument("--synthetic", type=int, help="Make this many ADL-sized questions instead of the test file.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs of each kind; the fastest is reported.")
    parser.add_argument(
        "--sleep_ms",
        type=float,
        nargs="+",
        default=[30.0, 4.0],
        help="Stand-in device time per batch, in ms: one overlap measurement for each (30: the device is the slow "
        "part; 4: about as slow as the CPU work, where hiding it matters most).",
    )
    parser.add_argument("--run_sh", action="store_true", help="Also time `bash run.sh` on the same data and models.")
    parser.add_argument("--output_json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="inference-speed-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    args.output_dir = work
    context = json.loads((args.data_dir / "context.json").read_text(encoding="utf-8"))
    if args.synthetic:
        synthetic_data(context, args.synthetic, work)
        args.context_file = work / "context.json"
    else:
        args.context_file = args.data_dir / "context.json"
        test = json.loads((args.data_dir / "test.json").read_text(encoding="utf-8"))
        test = [{**q, "id": f"{q['id']}#{r}" if r else q["id"]} for r in range(args.repeat_test) for q in test]
        (work / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    args.test_file = work / "test.json"
    args.mc_model, args.qa_model = make_checkpoints(work, args.config, context)

    device = members.choose_device(args.device)[0]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    questions = len(json.loads(args.test_file.read_text(encoding="utf-8")))
    print(
        f"config {args.config} {CONFIGS[args.config]}, {questions} questions, device {name}, torch {torch.__version__}"
    )
    results = {"exports": []}
    for export in args.exports:
        result = measure_export(args, export)
        results["exports"].append(result)
        print(
            f"{export:>12}: pipeline {result['pipeline_s']:.2f} s ({1000 * result['pipeline_s'] / questions:.1f} "
            f"ms/question), bare forward {result['bare_s']:.2f} s, pipeline / bare {result['ratio']:.3f}; "
            f"{result['pairs']} pairs, {result['windows']} windows, padding {100 * result['padding']:.1f}% of tokens",
            flush=True,
        )
        print(f"{'':>14}paragraph selection {result['stage1']}; span selection {result['stage2']}", flush=True)

    cpu_seconds, prediction = measure_cpu_work(args)
    split = {
        stats.name: {k: round(v, 3) for k, v in stats.seconds.items() if k != "model"} for stats in prediction.stages
    }
    results["cpu_ms_per_question"] = 1000 * cpu_seconds / questions
    print(
        f"CPU work (forward passes that return zeros): {cpu_seconds:.2f} s, "
        f"{1000 * cpu_seconds / questions:.2f} ms per question; {split}",
        flush=True,
    )

    results["overlap"] = []
    for sleep_ms in args.sleep_ms:
        overlap = measure_overlap(args, sleep_ms)
        (off, device_seconds, _), (on, _, _) = overlap["off"], overlap["on"]
        results["overlap"].append(
            {"sleep_ms": sleep_ms, "device_s": device_seconds, "cpu_s": cpu_seconds, "off_s": off, "on_s": on}
        )
        print(
            f"overlap, stand-in device of {sleep_ms:g} ms per batch ({device_seconds:.2f} s in all), CPU work "
            f"{cpu_seconds:.2f} s: threads off {off:.2f} s (sum {device_seconds + cpu_seconds:.2f} s), threads on "
            f"{on:.2f} s (max {max(device_seconds, cpu_seconds):.2f} s); same answers",
            flush=True,
        )
    if args.run_sh:
        results["run_sh_s"] = time_run_sh(args)
        print(
            f"bash run.sh (a fresh process: start, load, both stages, write): {results['run_sh_s']:.2f} s", flush=True
        )
    print(f"peak memory (max RSS) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    if args.output_json:
        args.output_json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
