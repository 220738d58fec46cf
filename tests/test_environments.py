"""The machines the scripts meet: a process whose locale is not UTF-8 (a grading container with LC_ALL=C and no
PYTHONUTF8 / PYTHONIOENCODING, where open() without an encoding writes ASCII and fails on Chinese), and NumPy below
2.3, where np.take_along_axis has no default axis (2.3 made it -1, so a call without axis= works on this suite's
NumPy and fails on the NumPy 1.26-2.2 that requirements.txt allows)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import inference
import run_qa
from cli import run_main
from conftest import ROOT, SAMPLES, read_json, write_json
from planted import save_choice_model, save_span_model

OUTPUTS = ["pred.csv", "pred.csv.metrics.json", "analysis/errors.jsonl", "analysis/summary.md"]


def c_locale_environment():
    """The environment of a process in the C locale, without Python's UTF-8 mode or locale coercion."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("LC_", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONCOERCECLOCALE"))
                   and name not in ("LANG", "LANGUAGE")}
    return {**environment, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_the_c_locale_environment_really_writes_ascii_by_default():
    """What the tests below rely on: in that environment, open() without an encoding cannot write Chinese."""
    probe = ("import locale, sys; print(locale.getpreferredencoding(False), sys.flags.utf8_mode); "
             "open('/dev/null', 'w').write('\\u81fa')")  # 臺 (the command line itself is read as ASCII)
    result = subprocess.run([sys.executable, "-c", probe], env=c_locale_environment(), capture_output=True, text=True,
                            encoding="utf-8")
    assert result.stdout.split() == ["ANSI_X3.4-1968", "0"]
    assert "UnicodeEncodeError" in result.stderr


@pytest.fixture(scope="module")
def planted(tiny_base, tmp_path_factory):
    """Planted models (answers known: 甲...乙 where planted, else some Chinese span of the sample paragraphs) and 5
    labelled sample questions, one of them with 甲 and 乙 planted in a copy of its gold paragraph."""
    root = tmp_path_factory.mktemp("environments")
    context = read_json(SAMPLES / "context.json")
    questions = read_json(SAMPLES / "valid.json")[:5]
    gold = context[questions[0]["relevant"]]
    context.append("甲臺灣乙" + gold)
    questions[0] = {**questions[0], "paragraphs": [len(context) - 1, *questions[0]["paragraphs"][1:]],
                    "relevant": len(context) - 1,
                    "answer": {**questions[0]["answer"], "start": questions[0]["answer"]["start"] + 4}}
    return {
        "root": root,
        "context": write_json(root / "context.json", context),
        "valid": write_json(root / "valid.json", questions),
        "mc": save_choice_model(tiny_base, root / "mc", marker="標"),
        "qa": save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0}),
    }


def inference_args(planted, output_dir):
    return ["--context_file", str(planted["context"]), "--test_file", str(planted["valid"]),
            "--output_file", str(output_dir / "pred.csv"), "--mc_model", str(planted["mc"]),
            "--qa_model", str(planted["qa"]), "--analysis_dir", str(output_dir / "analysis")]


def test_inference_in_the_c_locale_writes_the_same_utf8_files_as_in_a_utf8_locale(planted, tmp_path):
    inference.main(inference_args(planted, tmp_path / "utf8"))  # this process: the suite's own locale
    result = subprocess.run([sys.executable, str(ROOT / "inference.py"), *inference_args(planted, tmp_path / "c")],
                            env=c_locale_environment(), capture_output=True, text=True, encoding="utf-8",
                            errors="replace")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for name in OUTPUTS:
        written = (tmp_path / "c" / name).read_bytes()
        assert written == (tmp_path / "utf8" / name).read_bytes(), name
        if name != "pred.csv.metrics.json":  # numbers only
            assert any(ord(character) > 0x2E80 for character in written.decode("utf-8")), name  # Chinese as such
    assert read_json(tmp_path / "c" / "pred.csv.metrics.json")["questions"] == 5
    assert "甲臺灣乙" in (tmp_path / "c" / "pred.csv").read_text(encoding="utf-8")


def run_qa_args(planted, output_dir):
    return ["--model_name_or_path", str(planted["qa"]), "--context_file", str(planted["context"]),
            "--validation_file", str(planted["valid"]), "--do_eval", "--output_dir", str(output_dir),
            "--report_to", "none", "--per_device_eval_batch_size", "4", "--max_seq_length", "128",
            "--doc_stride", "32", "--max_question_length", "32"]


def test_run_qa_eval_in_the_c_locale_writes_its_predictions_as_utf8(planted, tmp_path, monkeypatch):
    """eval_predictions.json and eval_nbest_predictions.json (utils_qa.postprocess_qa_predictions), and the results,
    the same as in this process's locale."""
    monkeypatch.setattr(sys, "argv", ["run_qa.py", *run_qa_args(planted, tmp_path / "utf8")])
    run_main(run_qa.main)
    result = subprocess.run([sys.executable, str(ROOT / "run_qa.py"), *run_qa_args(planted, tmp_path / "c")],
                            env=c_locale_environment(), capture_output=True, text=True, encoding="utf-8",
                            errors="replace")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("eval_predictions.json", "eval_nbest_predictions.json"):
        written = (tmp_path / "c" / name).read_bytes()
        assert written == (tmp_path / "utf8" / name).read_bytes(), name
        assert "甲臺灣乙".encode("utf-8") in written, name  # Chinese as characters, in UTF-8
    predictions = read_json(tmp_path / "c" / "eval_predictions.json")
    first = read_json(planted["valid"])[0]["id"]
    assert predictions[first] == "甲臺灣乙"
    c_results, utf8_results = (read_json(tmp_path / name / "eval_results.json") for name in ("c", "utf8"))
    assert c_results["eval_exact_match"] == utf8_results["eval_exact_match"]
    assert c_results["eval_f1"] == utf8_results["eval_f1"]


def test_take_along_axis_is_called_as_numpy_below_2_3_requires(planted, tmp_path, monkeypatch):
    """Every np.take_along_axis call names its axis: NumPy 1.26-2.2 (allowed by requirements.txt) has no default axis,
    so a call without it fails there (a TypeError) while it works on NumPy 2.3+, whose default -1 is the same axis
    for the 2-D arrays of post-processing. The old signature is put in place here, and inference and run_qa's
    post-processing run through it."""
    original = np.take_along_axis
    calls = []

    def take_along_axis(arr, indices, axis):  # NumPy < 2.3: axis has no default
        calls.append(axis)
        return original(arr, indices, axis=axis)

    monkeypatch.setattr(np, "take_along_axis", take_along_axis)
    answers = inference.main(inference_args(planted, tmp_path / "inference"))
    assert calls and answers[read_json(planted["valid"])[0]["id"]] == "甲臺灣乙"
    during_inference = len(calls)
    monkeypatch.setattr(sys, "argv", ["run_qa.py", *run_qa_args(planted, tmp_path / "run_qa")])
    run_main(run_qa.main)
    assert len(calls) > during_inference
    assert read_json(tmp_path / "run_qa" / "eval_predictions.json")[read_json(planted["valid"])[0]["id"]] == "甲臺灣乙"
