"""Training at scale: a killed run resumes to exactly the result of an uninterrupted one, and the scripts run as several
processes (torchrun on CPU, gloo) with the same evaluation results as one process and their outputs written once.

Every run is tiny (a 2-layer, hidden-64 BERT, windows of 128 tokens, a few steps) but goes through the real entry
points, as a user would run them."""

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from cli import InputError
from checkpoints import SPAN_SELECTION, load_model, load_tokenizer_and_config
from training import check_launch, ModelArguments
from conftest import ROOT, SAMPLES, read_json

SCRIPT_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
COMMON = ["--context_file", SAMPLES / "context.json", "--max_seq_length", "128", "--max_question_length", "32",
          "--report_to", "none", "--seed", "7", "--data_seed", "11"]
QA_COMMON = [*COMMON, "--doc_stride", "32"]

distributed = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")


def script_command(*args):
    return [sys.executable, *map(str, args)]


def torchrun_command(*args, processes=2):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_port", str(port), *map(str, args)]


def run(command, env=None, timeout=600):
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **SCRIPT_ENV, **(env or {})},
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
                             f"stderr:\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Resuming


def step_losses(output_dir):
    return [(entry["step"], entry["loss"]) for entry in read_json(output_dir / "trainer_state.json")["log_history"]
            if "loss" in entry]


def assert_same_training(reference, resumed, resumed_from_step, metrics):
    """The resumed run ends where the uninterrupted one did: same loss at every step, same metrics and weights."""
    reference_state, state = read_json(reference / "trainer_state.json"), read_json(resumed / "trainer_state.json")
    assert state["global_step"] == reference_state["global_step"]
    # The steps before the checkpoint come from its log history, the others were trained again: all must match.
    assert len(step_losses(resumed)) == reference_state["global_step"]
    for (step, loss), (reference_step, reference_loss) in zip(step_losses(resumed), step_losses(reference)):
        assert step == reference_step and loss == pytest.approx(reference_loss, rel=1e-6, abs=1e-7)
    # The Trainer's final train_loss averages the steps of this train() call only: after a resume, the steps after
    # the checkpoint (the per-step losses above are the complete curve).
    after = [loss for step, loss in step_losses(resumed) if step > resumed_from_step]
    assert state["log_history"][-1]["train_loss"] == pytest.approx(sum(after) / len(after), rel=1e-6)

    reference_results, results = read_json(reference / "eval_results.json"), read_json(resumed / "eval_results.json")
    for key in metrics:
        assert results[key] == pytest.approx(reference_results[key], rel=1e-6, abs=1e-7), key
    reference_weights, weights = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert weights.keys() == reference_weights.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, reference_weights[name], rtol=1e-6, atol=1e-7, msg=name)


def start_and_kill(command, output_dir, checkpoint_step, max_steps, timeout=600):
    """Starts a training run and kills it (SIGKILL) as soon as its checkpoint-`checkpoint_step` is complete.

    Should the run get further before the kill lands (a starved poll), what it wrote after its last checkpoint before
    `max_steps` is removed: the state of a run killed at that point.
    """
    state_file = output_dir / f"checkpoint-{checkpoint_step}" / "trainer_state.json"
    log_path = output_dir.parent / f"{output_dir.name}-before-the-kill.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **SCRIPT_ENV}, stdout=log,
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None and not readable_json(state_file):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{command}: no {state_file} after {timeout} s")
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    assert readable_json(state_file), f"{command} ended without writing {state_file} (log: {log_path})"
    for path in output_dir.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match is None or int(match.group(1)) >= max_steps:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def readable_json(path):
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


# Span selection: 2 training questions make 12 windows, 6 batches of 2 per epoch, 3 optimizer steps with gradient
# accumulation 2, so 7 steps run 2 epochs and a bit, with checkpoints at steps 2 (in epoch 0: resuming skips 4
# batches), 4 (in epoch 1: skips 2), 6 (end of epoch 1) and 7. Dropout is on (BERT's 0.1), so the resumed run must
# restore the random state too, and the shuffled order must go on at the same batch.
QA_MAX_STEPS = 7
QA_SAVE_STEPS = 2


@pytest.fixture(scope="module")
def span_selection_resume(tiny_base, tmp_path_factory):
    assert read_json(tiny_base / "config.json")["hidden_dropout_prob"] > 0
    root = tmp_path_factory.mktemp("span-selection-resume")

    def command(output_dir, *extra):
        return script_command(
            "run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", *QA_COMMON,
            "--train_file", SAMPLES / "train.json", "--validation_file", SAMPLES / "valid.json",
            "--do_train", "--do_eval", "--max_train_samples", "2", "--max_eval_samples", "5",
            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
            "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3", "--logging_steps", "1",
            "--max_steps", str(QA_MAX_STEPS),
            "--save_strategy", "steps", "--save_steps", str(QA_SAVE_STEPS),
            "--output_dir", output_dir, *extra,
        )

    uninterrupted = root / "uninterrupted"
    run(command(uninterrupted))

    # Killed after its first checkpoint, then the same command again: it finds its last checkpoint by itself. A
    # checkpoint cut short by the kill (no trainer_state.json, which the Trainer writes last) must be passed over.
    killed = root / "killed"
    killed.mkdir()
    start_and_kill(command(killed), killed, QA_SAVE_STEPS, QA_MAX_STEPS)
    last = max(int(path.name.split("-")[1]) for path in killed.glob("checkpoint-*")
               if readable_json(path / "trainer_state.json"))
    partial = killed / f"checkpoint-{last + QA_SAVE_STEPS}"
    if not partial.exists():
        partial.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(killed / f"checkpoint-{last}" / name, partial / name)
    rerun_log = run(command(killed))

    # An explicit --resume_from_checkpoint, into another output folder, from a checkpoint inside epoch 1.
    explicit = root / "explicit"
    run(command(explicit, "--resume_from_checkpoint", uninterrupted / "checkpoint-4"))
    return SimpleNamespace(uninterrupted=uninterrupted, killed=killed, last=last, partial=partial,
                           rerun_log=rerun_log, explicit=explicit)


QA_METRICS = ("eval_exact_match", "eval_f1", "eval_loss")


def same_file(first, second):
    return first.read_bytes() == second.read_bytes()


def test_killed_run_resumes_from_its_last_complete_checkpoint(span_selection_resume):
    runs = span_selection_resume
    assert 2 <= runs.last < QA_MAX_STEPS
    assert f"Skipping {runs.partial}: no readable trainer_state.json (stopped while saving?)" in runs.rerun_log
    resumed_from = runs.killed / f"checkpoint-{runs.last}"
    assert f"Resuming training from {resumed_from}, the last complete checkpoint" in runs.rerun_log
    assert_same_training(runs.uninterrupted, runs.killed, runs.last, QA_METRICS)
    assert same_file(runs.killed / "eval_predictions.json", runs.uninterrupted / "eval_predictions.json")


def test_explicit_resume_from_checkpoint(span_selection_resume):
    runs = span_selection_resume
    assert_same_training(runs.uninterrupted, runs.explicit, 4, QA_METRICS)
    assert same_file(runs.explicit / "eval_predictions.json", runs.uninterrupted / "eval_predictions.json")


def test_seed_fixes_the_random_initial_weights(tiny_base):
    """Runs started from scratch with the same --seed start from the same weights (else no two runs could match)."""

    def weights(seed):
        model_args = ModelArguments(str(tiny_base), from_scratch=True)
        _, config, _ = load_tokenizer_and_config(model_args, SPAN_SELECTION, max_seq_length=128)
        return load_model(model_args, SPAN_SELECTION, config, seed, new_head=False).state_dict()

    first, again, other = weights(7), weights(7), weights(8)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["qa_outputs.weight"], other["qa_outputs.weight"])


# ---------------------------------------------------------------------------------------------------------------------
# Several processes

AUDIT_WRITES = '''"""Runs the script argv[1] with the rest of argv, recording the files that this process opens for
writing, or renames into place, under $AUDIT_DIR; at exit, lists them in $AUDIT_LOG.<RANK>, one per line."""
import atexit
import os
import runpy
import sys

watched = os.path.abspath(os.environ["AUDIT_DIR"]) + os.sep
written = set()


def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if mode is not None:
            writing = any(c in mode for c in "wax+")
        else:  # os.open
            writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    elif event == "os.rename":  # os.rename and os.replace
        path, writing = args[1], True
    else:
        return
    if writing and isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(watched):
            written.add(path[len(watched):])


def save():
    with open(f"{os.environ['AUDIT_LOG']}.{os.environ.get('RANK', '0')}", "w", encoding="utf-8") as file:
        file.write("".join(f"{path}\\n" for path in sorted(written)))


script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
atexit.register(save)
sys.addaudithook(hook)
runpy.run_path(script, run_name="__main__")
'''


def run_two_processes(tmp_path, *script_args):
    """Runs `script_args` under torchrun with 2 CPU processes; returns the log and the files each rank wrote."""
    output_dir = tmp_path / "two-processes"
    output_dir.mkdir()
    wrapper = tmp_path / "audit_writes.py"
    wrapper.write_text(AUDIT_WRITES, encoding="utf-8")
    audit_log = tmp_path / "written"
    log = run(torchrun_command(wrapper, *script_args, "--use_cpu", "--output_dir", output_dir),
              env={"AUDIT_DIR": str(output_dir), "AUDIT_LOG": str(audit_log)})
    written = [set(Path(f"{audit_log}.{rank}").read_text(encoding="utf-8").split()) for rank in (0, 1)]
    return output_dir, log, written


def assert_two_processes_shared_the_work(log, output_dir, written, expected_files):
    for rank in (0, 1):
        assert f"Process rank: {rank}, device: cpu:0, world size: 2" in log
    # Only the main process writes outputs (the Trainer saves each process's random state into the checkpoints, with
    # torch.save, which the audit does not see). Every process checks that --output_dir can be written, with a probe
    # file made and removed at once (outputs.check_output_folder): not an output.
    assert expected_files <= written[0]
    not_outputs = r"checkpoint-\d+/rng_state_1\.pth|\.tmp-\w+\.probe"
    assert not {path for path in written[1] if not re.fullmatch(not_outputs, path)}
    assert not [path.name for path in output_dir.iterdir() if path.name.endswith((".tmp", ".probe", ".part"))]
    for checkpoint in ("checkpoint-2", "checkpoint-4"):
        files = {path.name for path in (output_dir / checkpoint).iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= files


def assert_effective_batch(output_dir, samples, per_device, processes=2):
    """An optimizer step takes per_device x processes samples: the epoch reached after 4 steps tells."""
    steps_per_epoch = math.ceil(math.ceil(samples / per_device) / processes)
    epoch = read_json(output_dir / "trainer_state.json")["log_history"][-1]["epoch"]
    assert epoch == pytest.approx(4 / steps_per_epoch)


def windows(log, split, questions):
    return int(re.search(rf"{split}: {questions} questions, (\d+) windows", log).group(1))


EVAL_QUESTIONS = 13
EVAL_BATCH = 4


@distributed
def test_span_selection_with_two_processes(tiny_base, tmp_path):
    """Trains, evaluates and predicts with 2 processes, then evaluates and predicts the model it saved with 1 process:
    every window of every question is post-processed exactly once either way, so answers and metrics are equal."""
    data = ["--validation_file", SAMPLES / "valid.json", "--test_file", SAMPLES / "valid.json",
            "--max_eval_samples", str(EVAL_QUESTIONS), "--max_predict_samples", str(EVAL_QUESTIONS),
            "--per_device_eval_batch_size", str(EVAL_BATCH), "--do_eval", "--do_predict"]
    output_dir, log, written = run_two_processes(
        tmp_path, "run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", *QA_COMMON, *data,
        "--train_file", SAMPLES / "train.json", "--do_train", "--max_train_samples", "8",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1", "--max_steps", "4",
        "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
    )
    assert_two_processes_shared_the_work(log, output_dir, written, {
        "eval_predictions.json", "eval_nbest_predictions.json", "predict_predictions.json", "pred.csv",
        "all_results.json", "eval_results.json", "train_results.json", "trainer_state.json", "config.json",
    })
    assert_effective_batch(output_dir, windows(log, "train", 8), per_device=4)
    # The windows do not fill the last round of batches: each process's last batch is filled up with windows from the
    # start, which the Trainer must drop from the gathered predictions.
    eval_windows = windows(log, "eval", EVAL_QUESTIONS)
    assert eval_windows % (2 * EVAL_BATCH) != 0 and eval_windows % 2 == 1

    one_process = tmp_path / "one-process"
    run(script_command("run_qa.py", "--model_name_or_path", output_dir, *QA_COMMON, *data, "--output_dir", one_process))
    results, reference = read_json(output_dir / "eval_results.json"), read_json(one_process / "eval_results.json")
    assert results["eval_samples"] == reference["eval_samples"] == EVAL_QUESTIONS
    assert results["eval_exact_match"] == reference["eval_exact_match"]
    assert results["eval_f1"] == reference["eval_f1"] > 0
    # The loss of a process's last batch is a mean that includes the filler windows: close, not always equal.
    assert results["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-3)
    for name in ("eval_predictions.json", "predict_predictions.json", "pred.csv"):
        assert same_file(output_dir / name, one_process / name), name
    nbest = read_json(output_dir / "eval_nbest_predictions.json")
    reference_nbest = read_json(one_process / "eval_nbest_predictions.json")
    assert list(nbest) == list(reference_nbest)
    for question_id, candidates in nbest.items():
        reference_candidates = reference_nbest[question_id]
        assert [c["text"] for c in candidates] == [c["text"] for c in reference_candidates]
        assert [c["score"] for c in candidates] == pytest.approx([c["score"] for c in reference_candidates], rel=1e-5)
    with open(output_dir / "pred.csv", encoding="utf-8") as file:
        assert len(file.read().splitlines()) == 1 + EVAL_QUESTIONS


@distributed
def test_paragraph_selection_with_two_processes(tiny_base, tmp_path):
    data = ["--validation_file", SAMPLES / "valid.json", "--test_file", SAMPLES / "test.json",
            "--max_eval_samples", str(EVAL_QUESTIONS), "--max_predict_samples", str(EVAL_QUESTIONS),
            "--per_device_eval_batch_size", str(EVAL_BATCH), "--do_eval", "--do_predict"]
    assert EVAL_QUESTIONS % (2 * EVAL_BATCH) != 0
    output_dir, log, written = run_two_processes(
        tmp_path, "run_swag.py", "--model_name_or_path", tiny_base, "--from_scratch", *COMMON, *data,
        "--train_file", SAMPLES / "train.json", "--do_train", "--max_train_samples", "8",
        "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1", "--max_steps", "4",
        "--save_strategy", "steps", "--save_steps", "2",
    )
    assert_two_processes_shared_the_work(log, output_dir, written, {
        "test_with_relevant.json", "all_results.json", "eval_results.json", "train_results.json", "trainer_state.json",
    })
    assert_effective_batch(output_dir, 8, per_device=2)
    test = read_json(SAMPLES / "test.json")[:EVAL_QUESTIONS]
    assert [q["id"] for q in read_json(output_dir / "test_with_relevant.json")] == [q["id"] for q in test]

    one_process = tmp_path / "one-process"
    run(script_command("run_swag.py", "--model_name_or_path", output_dir, *COMMON, *data, "--output_dir", one_process))
    results, reference = read_json(output_dir / "eval_results.json"), read_json(one_process / "eval_results.json")
    assert results["eval_samples"] == reference["eval_samples"] == EVAL_QUESTIONS
    assert results["eval_accuracy"] == reference["eval_accuracy"]
    assert results["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-3)
    assert same_file(output_dir / "test_with_relevant.json", one_process / "test_with_relevant.json")


def test_multi_process_launch_that_the_trainer_would_not_join_is_refused(monkeypatch):
    """torchrun on a machine without GPUs, without --use_cpu: each process would train alone on all the data."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match=r"launched as 2 processes .* add --use_cpu"):
        check_launch(SimpleNamespace(world_size=1))
    check_launch(SimpleNamespace(world_size=2))
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_launch(SimpleNamespace(world_size=1))
