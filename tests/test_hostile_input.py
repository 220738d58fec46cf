"""Hostile input, as a careless user or grading script would give it: a CSV every reader parses back, output paths
that destroy nothing, checkpoints that cannot silently break, one line (and the usual exit status) where the
contract promises one, numeric flags checked at parse time, and memory that does not grow with the input."""

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import tracemalloc
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import batching
import inference
from batching import StageStats
from features import PairTemplate, WindowSettings
from members import Member
import run_qa
import run_swag
from cli import run_main
from outputs import csv_field, write_predictions_csv
from conftest import ROOT, SAMPLES, read_json, run_script, write_json
from planted import save_choice_model, save_span_model
from tokens import ParagraphTokens, TokenizedText

ADVERSARIAL = ["\r", "\n", "\r\n", "a\rb", "a\nb", 'say "hi"', '"', "a,b", ",", " lead", "trail ", " ", "\t",
               "NA", "null", "NaN", "None", "", "a\u2028b", "x\x85", "007", "=1+1", "臺北, 信義區", "\ufeffbom"]


# ---------------------------------------------------------------------------------------------------------------------
# A CSV that every reader parses back


def test_csv_round_trips_adversarial_strings_through_csv_and_pandas(tmp_path):
    ids = [f"id{i}{text}" if text.strip() else f"id{i}" for i, text in enumerate(ADVERSARIAL)] + ADVERSARIAL[:4]
    ids = list(dict.fromkeys(ids))
    answers = {question_id: ADVERSARIAL[i % len(ADVERSARIAL)] for i, question_id in enumerate(ids)}
    path = write_predictions_csv(tmp_path / "pred.csv", ids, answers)

    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "answer"] and rows[1:] == [[i, answers[i]] for i in ids]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["id", "answer"]
    assert frame.to_dict("records") == [{"id": i, "answer": answers[i]} for i in ids]
    # Plain fields stay bare, so that a simple reader sees them as they are.
    assert path.read_text(encoding="utf-8").splitlines()[0] == "id,answer"
    assert csv_field("景宗") == "景宗" and csv_field("a\rb") == '"a\rb"' and csv_field(" x") == '" x"'


def test_answers_with_line_breaks_and_quotes_come_back_from_a_real_run(tiny_base, tmp_path):
    """Through inference.py: ids and answers (spans of the paragraph) holding CR, LF, commas and quotes."""
    models = {"mc": save_choice_model(tiny_base, tmp_path / "mc", marker="標"),
              "qa": save_span_model(tiny_base, tmp_path / "qa", {"甲": 8.0}, {"乙": 8.0})}
    paragraphs = ["天地甲玄\r黃乙宇宙", "天甲地,玄\"黃\n乙宇", "標甲 天地\r\n乙"]
    questions = [{"id": f"q{i}\r,\"{i}", "question": "問題", "paragraphs": [i]} for i in range(3)]
    output = tmp_path / "pred.csv"
    inference.main(["--context_file", str(write_json(tmp_path / "context.json", paragraphs)),
                    "--test_file", str(write_json(tmp_path / "test.json", questions)), "--output_file", str(output),
                    "--mc_model", str(models["mc"]), "--qa_model", str(models["qa"])])
    expected = [{"id": q["id"], "answer": p[p.index("甲") : p.index("乙") + 1]} for q, p in zip(questions, paragraphs)]
    assert pd.read_csv(output, dtype=str, keep_default_na=False).to_dict("records") == expected


# ---------------------------------------------------------------------------------------------------------------------
# Output paths that destroy nothing


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-models")
    return {"mc": save_choice_model(tiny_base, root / "mc", marker="標"),
            "qa": save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0})}


@pytest.fixture(scope="module")
def small_test(tmp_path_factory):
    return write_json(tmp_path_factory.mktemp("small") / "test.json", read_json(SAMPLES / "test.json")[:6])


def infer_args(models, output, test_file, *extra):
    return ["--context_file", str(SAMPLES / "context.json"), "--test_file", str(test_file),
            "--output_file", str(output), "--mc_model", str(models["mc"]), "--qa_model", str(models["qa"]),
            *map(str, extra)]


def expect_error(capsys, argv, code=1):
    """Runs inference.py's entry point; returns its one line of error (and checks there is no other output)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: inference.main(argv))
    assert exit_info.value.code == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in "\n".join(lines)
    return lines


def test_an_output_link_is_written_through_and_stays_a_link(models, small_test, tmp_path):
    target = tmp_path / "real" / "pred.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    inference.main(infer_args(models, link, small_test))
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text(encoding="utf-8").startswith("id,answer\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["pred.csv"]


def test_an_output_fifo_is_streamed_into_and_stays_a_fifo(models, small_test, tmp_path):
    fifo = tmp_path / "pred.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")), daemon=True)
    reader.start()
    inference.main(infer_args(models, fifo, small_test))
    reader.join(timeout=60)
    assert received and received[0].startswith("id,answer\n") and received[0].count("\n") == 7
    assert fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.fifo"]


def test_run_sh_can_write_to_standard_output(models, small_test, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for path in [*ROOT.glob("*.py"), *ROOT.glob("*.sh")]:
        shutil.copy(path, project / path.name)
    (project / "models").mkdir()
    shutil.copytree(models["mc"], project / "models" / "paragraph-selection")
    shutil.copytree(models["qa"], project / "models" / "span-selection")
    # /dev/stdout is a link to /proc/self/fd/1 on Linux; some sandboxes (this project's CI) have no /dev/stdout, so
    # the test names its target.
    result = run_script(project / "run.sh", SAMPLES / "context.json", small_test, "/proc/self/fd/1", cwd=project,
                        env={"PYTHON": sys.executable})
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["id", "answer"] and [r[0] for r in rows[1:]] == [q["id"] for q in read_json(small_test)]

    # A full disk (/dev/full) fails with one line and status 1, after the models ran (it is found when writing).
    full = run_script(project / "run.sh", SAMPLES / "context.json", small_test, "/dev/full", cwd=project,
                      env={"PYTHON": sys.executable}, check=False)
    assert full.returncode == 1 and "Traceback" not in full.stderr
    assert full.stderr.strip().splitlines()[-1] == "error: /dev/full: cannot write (No space left on device)"


@pytest.mark.parametrize("case", ["test file", "context file", "trailing slash", "under /proc", "directory"])
def test_outputs_that_would_destroy_an_input_or_cannot_be_written_are_refused_before_any_model_runs(
    models, small_test, tmp_path, capsys, case
):
    test_file = shutil.copy(small_test, tmp_path / "test.json")
    context_file = shutil.copy(SAMPLES / "context.json", tmp_path / "context.json")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    output, message = {
        "test file": (test_file, f"output path is the input file {test_file}"),
        "context file": (tmp_path / "link-to-context.json", f"output path is the input file {context_file}"),
        "trailing slash": (f"{tmp_path}/out/", "output path ends in '/', so it names a folder"),
        "under /proc": ("/proc/pred.csv", "cannot write to folder /proc"),
        "directory": (tmp_path, "output path is a directory"),
    }[case]
    if case == "context file":  # the same file through a link
        (tmp_path / "link-to-context.json").symlink_to(context_file)
    argv = infer_args(models, output, test_file)
    argv[1] = str(context_file)
    lines = expect_error(capsys, argv)
    assert message in lines[-1]
    assert not any("Loaded the" in line for line in lines)  # refused before any model was loaded
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if not path.is_symlink()}
    assert after == before


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints that cannot silently break


@pytest.mark.parametrize("case", ["no tokenizer.json", "truncated weights", "vocab_size mismatch", "QA as --mc_model",
                                  "MC as --qa_model", "max_seq_length too long"])
def test_broken_or_mismatched_checkpoints_are_refused_in_one_line(models, small_test, tmp_path, capsys, case):
    broken = {stage: shutil.copytree(models[stage], tmp_path / stage) for stage in ("mc", "qa")}
    extra = []
    if case == "no tokenizer.json":
        (broken["qa"] / "tokenizer.json").unlink()
        message = "the tokenizer has 5 tokens for a model of"
    elif case == "truncated weights":
        weights = broken["qa"] / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        message = "cannot load the span-selection weights"
    elif case == "vocab_size mismatch":
        config = read_json(broken["mc"] / "config.json")
        write_json(broken["mc"] / "config.json", {**config, "vocab_size": config["vocab_size"] + 10})
        message = "cannot load the paragraph-selection weights"
    elif case == "QA as --mc_model":
        broken["mc"] = broken["qa"]
        message = "a BertForQuestionAnswering checkpoint, not a paragraph-selection model"
    elif case == "MC as --qa_model":
        broken["qa"] = broken["mc"]
        message = "a BertForMultipleChoice checkpoint, not a span-selection model"
    else:
        extra = ["--max_seq_length", 1024]
        message = "paragraph-selection model: --max_seq_length 1024 is more than the model reads (512 tokens)"
    output = tmp_path / "out" / "pred.csv"
    lines = expect_error(capsys, infer_args(broken, output, small_test, *extra))
    assert message in lines[-1]
    culprit = broken["qa"] if case in ("no tokenizer.json", "truncated weights", "MC as --qa_model") else broken["mc"]
    assert lines[-1].startswith(f"error: {culprit}: ")
    assert not output.exists()


def test_a_checkpoint_without_its_task_head_is_refused(models, small_test, tmp_path, capsys):
    """A QA checkpoint whose config claims multiple choice: its classifier weights are missing."""
    relabelled = shutil.copytree(models["qa"], tmp_path / "relabelled")
    config = read_json(relabelled / "config.json")
    write_json(relabelled / "config.json", {**config, "architectures": ["BertForMultipleChoice"]})
    lines = expect_error(capsys, infer_args({"mc": relabelled, "qa": models["qa"]}, tmp_path / "p.csv", small_test))
    assert "not a fine-tuned paragraph-selection checkpoint: its weights lack" in lines[-1]


# ---------------------------------------------------------------------------------------------------------------------
# One line where the contract promises one


@pytest.mark.parametrize("case", ["deep nesting", "huge integer", "surrogate in id", "surrogate in question",
                                  "surrogate in paragraph", "NUL in question"])
def test_malformed_json_values_get_one_line(models, tmp_path, capsys, case):
    context, test = json.dumps(["天地玄黃", "宇宙洪荒"]), '[{"id": "a", "question": "問題", "paragraphs": [0, 1]}]'
    expected = {
        "deep nesting": ("test", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        "huge integer": ("test", '[{"id": "a", "question": "問題", "paragraphs": [' + "9" * 5000 + "]}]",
                         "Exceeds the limit"),
        "surrogate in id": ("test", '[{"id": "a\\ud800", "question": "問題", "paragraphs": [0]}]',
                            "field 'id': character 1 is '\\ud800'"),
        "surrogate in question": ("test", '[{"id": "a", "question": "問\\udfff", "paragraphs": [0]}]',
                                  "field 'question': character 1 is '\\udfff'"),
        "surrogate in paragraph": ("context", '["天地", "宇\\ud83d宙"]', "paragraph 1: character 1 is '\\ud83d'"),
        "NUL in question": ("test", '[{"id": "a", "question": "問\\u0000題", "paragraphs": [0]}]',
                            "field 'question': character 1 is '\\x00'"),
    }[case]
    which, content, message = expected
    files = {"context": context, "test": test, which: content}
    for name, text in files.items():
        (tmp_path / f"{name}.json").write_text(text, encoding="utf-8")
    argv = infer_args(models, tmp_path / "pred.csv", tmp_path / "test.json")
    argv[1] = str(tmp_path / "context.json")
    lines = expect_error(capsys, argv)
    assert message in lines[-1] and len(lines[-1]) < 400
    assert not (tmp_path / "pred.csv").exists()


def test_a_paragraph_index_of_hundreds_of_digits_is_shown_short(models, tmp_path, capsys):
    test = write_json(tmp_path / "test.json", [{"id": "a", "question": "問", "paragraphs": [int("7" * 300)]}])
    lines = expect_error(capsys, infer_args(models, tmp_path / "pred.csv", test))
    assert "paragraph index 77777777... (300 digits) is out of range" in lines[-1]


# inference.py as its command line runs it, with one step made to say so on stderr and then sleep: "forward", each
# forward pass of a BERT model (both stages); "rename", the renaming of the complete temporary file of pred.csv into
# place (os.replace onto pred.csv, from a temporary file named .tmp-*). The signal is sent once the step has begun,
# when the run cannot finish by itself, so the test does not depend on how fast the machine is.
SLOW_INFERENCE = """
import os, runpy, sys, time
import transformers.models.bert.modeling_bert as bert

step, script, arguments = sys.argv[1], sys.argv[2], sys.argv[3:]


def announce_and_sleep():
    print(f"{step} began", file=sys.stderr, flush=True)
    time.sleep(300)


if step == "forward":
    forward = bert.BertModel.forward

    def slow_forward(self, *args, **kwargs):
        output = forward(self, *args, **kwargs)
        announce_and_sleep()
        return output

    bert.BertModel.forward = slow_forward
else:
    replace = os.replace

    def slow_replace(source, destination, *args, **kwargs):
        if os.path.basename(str(destination)) == "pred.csv":
            assert os.path.getsize(source) > 0
            announce_and_sleep()
        return replace(source, destination, *args, **kwargs)

    os.replace = slow_replace
sys.path.insert(0, os.path.dirname(script))
sys.argv = [script, *arguments]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("step", ["forward", "rename"])
@pytest.mark.parametrize("signal_number,code,message", [
    (signal.SIGINT, 130, "error: interrupted (Ctrl-C); no output was written"),
    (signal.SIGTERM, 143, "error: terminated (SIGTERM); no output was written"),
])
def test_ctrl_c_or_sigterm_midway_ends_with_one_line_and_leaves_nothing(models, small_test, tmp_path, signal_number,
                                                                          code, message, step):
    """While the models run, or while the complete CSV is being renamed into place (its temporary file written): one
    line, the shell's status, and no file or folder left, the temporary file included."""
    output = tmp_path / "out" / "pred.csv"  # a missing folder: created only by a run that succeeds
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_INFERENCE, step, str(ROOT / "inference.py"),
         *infer_args(models, output, small_test, "--overlap", "off")],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    try:
        for line in process.stderr:  # wait until the step has begun
            lines.append(line)
            if line.strip() == f"{step} began":
                if step == "rename":
                    assert [p.name for p in (tmp_path / "out").iterdir()][0].startswith(".tmp-")
                process.send_signal(signal_number)
                break
        lines += process.stderr.readlines()
        assert process.wait(timeout=60) == code, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"{step} began\n" in lines and "Traceback" not in "".join(lines)
    assert lines[-1].strip() == message
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []
    if step == "forward":
        assert list(tmp_path.iterdir()) == []
    # (interrupted while the outputs are renamed into place: the next test)


@pytest.mark.parametrize("interrupted", ["pred.csv", "pred.csv.metrics.json", "errors.jsonl", "summary.md"])
def test_a_run_interrupted_while_writing_its_outputs_leaves_none_of_them(models, tmp_path, monkeypatch, capsys,
                                                                        interrupted):
    """Ctrl-C arriving as the temporary file of one output is renamed into place, the others renamed before it or
    not yet: every output renamed is put back (an old CSV as it was), and no file or folder the run made is left."""
    valid = write_json(tmp_path / "valid.json", read_json(SAMPLES / "valid.json")[:3])
    run = tmp_path / "run"
    (run / "out").mkdir(parents=True)
    (run / "out" / "pred.csv").write_text("id,answer\nold,kept\n", encoding="utf-8")
    replace = os.replace

    def interrupting_replace(source, destination, *args, **kwargs):
        if os.path.basename(str(destination)) == interrupted and ".tmp-" in os.path.basename(str(source)):
            raise KeyboardInterrupt
        return replace(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", interrupting_replace)
    lines = expect_error(capsys, infer_args(models, run / "out" / "pred.csv", valid, "--analysis_dir",
                                            run / "analysis"), code=130)
    assert lines[-1] == "error: interrupted (Ctrl-C); no output was written"
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == ["out", "out/pred.csv"]
    assert (run / "out" / "pred.csv").read_text(encoding="utf-8") == "id,answer\nold,kept\n"


def test_run_sh_with_an_interpreter_lacking_the_requirements(tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    for python, message in [(bare / "bin" / "python", "cannot import numpy, torch, transformers"),
                            (tmp_path / "no-such-python", "no-such-python: no such interpreter")]:
        result = run_script(ROOT / "run.sh", SAMPLES / "context.json", SAMPLES / "test.json", tmp_path / "pred.csv",
                            env={"PYTHON": str(python)}, check=False)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
        assert not (tmp_path / "pred.csv").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Numeric flags checked at parse time


@pytest.mark.parametrize("flag,value,message", [
    ("--doc_stride", -1, "argument --doc_stride: must be 0 or more, got -1"),
    ("--max_answer_length", 0, "argument --max_answer_length: must be at least 1, got 0"),
    ("--max_question_length", 0, "argument --max_question_length: must be at least 1, got 0"),
    ("--n_best_size", 0, "argument --n_best_size: must be at least 1, got 0"),
    ("--batch_size", 0, "argument --batch_size: must be at least 1, got 0"),
    ("--top_k_paragraphs", 0, "argument --top_k_paragraphs: must be at least 1, got 0"),
    ("--max_seq_length", -5, "argument --max_seq_length: must be at least 1, got -5"),
])
def test_inference_refuses_numeric_flags_out_of_range(models, small_test, tmp_path, capsys, flag, value, message):
    lines = expect_error(capsys, infer_args(models, tmp_path / "pred.csv", small_test, flag, value), code=2)
    assert lines == [f"error: {message} (see --help)"]
    assert not (tmp_path / "pred.csv").exists()


@pytest.mark.parametrize("script,flags,message", [
    ("run_qa.py", ["--learning_rate", "nan"], "--learning_rate nan: must be a number above 0"),
    ("run_swag.py", ["--learning_rate=-1e-5"], "--learning_rate -1e-05: must be a number above 0"),
    ("run_swag.py", ["--max_train_samples", "-1"], "--max_train_samples -1: must be a number of at least 1"),
    ("run_qa.py", ["--max_train_samples", "0"], "--max_train_samples 0: must be a number of at least 1"),
    ("run_swag.py", ["--num_train_epochs", "0"], "--num_train_epochs 0.0: must be above 0 (or give --max_steps)"),
    ("run_qa.py", ["--max_steps", "0"], "--max_steps 0: must be at least 1"),
    ("run_qa.py", ["--doc_stride", "-3"], "--doc_stride -3: must be a number of at least 0"),
    ("run_qa.py", ["--n_best_size", "0"], "--n_best_size 0: must be a number of at least 1"),
    ("run_qa.py", ["--max_answer_length", "0"], "--max_answer_length 0: must be a number of at least 1"),
    ("run_swag.py", ["--max_question_length", "0"], "--max_question_length 0: must be a number of at least 1"),
    ("run_swag.py", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be a number of at"),
    ("run_qa.py", ["--max_seq_length", "600"], "--max_seq_length 600 is more than the model reads (512 tokens)"),
])
def test_training_scripts_refuse_numeric_flags_out_of_range(tiny_base, tmp_path, monkeypatch, capsys, script, flags,
                                                            message):
    output_dir = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [
        script, "--model_name_or_path", str(tiny_base), "--from_scratch", "--context_file", str(SAMPLES / "context.json"),
        "--train_file", str(SAMPLES / "train.json"), "--do_train", "--output_dir", str(output_dir), "--report_to", "none",
        *flags,
    ])
    with pytest.raises(SystemExit) as exit_info:
        run_main({"run_qa.py": run_qa.main, "run_swag.py": run_swag.main}[script])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in "\n".join(lines)
    assert not output_dir.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Memory that does not grow with the input


def peak_traced_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_span_selection_memory_stays_flat_as_questions_and_windows_grow(models, tokenizer, monkeypatch):
    """Questions on one long paragraph: windows are built, run and post-processed a chunk at a time, so 20
    questions (20 times the windows) need about the memory of one. A forward pass that returns zeros keeps the model
    out of the measure."""
    paragraph = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏" * 800  # 19,200 characters, 124 windows of 192
    monkeypatch.setattr(batching, "SEQUENCES_PER_CHUNK", 16)
    member = Member(models["qa"], tokenizer, PairTemplate.of(tokenizer),
                              lambda input_ids, *_: (torch.zeros(input_ids.shape), torch.zeros(input_ids.shape)),
                              WindowSettings(max_seq_length=192, doc_stride=32, max_question_length=32))
    args = SimpleNamespace(n_best_size=20, max_answer_length=30, batch_size=8)
    tokens = ParagraphTokens([paragraph])
    tokens.of(tokenizer, [0])  # tokenized once, outside the measure

    windows = []

    def spans(count):
        questions = [{"question": "問題", "paragraphs": [0]}] * count
        stats = StageStats("span selection")
        inference.find_spans(questions, [(q, 0) for q in range(count)], tokens, member, args, torch.device("cpu"),
                             stats, overlap=False)
        windows.append(stats.sequences)

    one, twenty = peak_traced_bytes(lambda: spans(1)), peak_traced_bytes(lambda: spans(20))
    assert windows[0] > 100 and windows[1] == 20 * windows[0]
    assert twenty < 2 * one, (one, twenty)
    assert isinstance(tokens.tokens[next(iter(tokens.tokens))], TokenizedText)
