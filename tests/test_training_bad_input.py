"""run_swag.py and run_qa.py on bad input: one line naming file, record and field; exit status 1; no output written.

Most cases call the scripts' main() in this process (the checks run before any model is loaded, so this is quick);
one case per script runs the real command line."""

import json
import sys

import pytest

import run_qa
import run_swag
from cli import run_main
from conftest import SAMPLES, call_failing, read_json, run_script, write_json

SCRIPTS = {"run_swag.py": run_swag.main, "run_qa.py": run_qa.main}


def good_train(count=4):
    return read_json(SAMPLES / "train.json")[:count]


def call(script, monkeypatch, capsys, *args):
    """Runs `script`'s entry point with these command-line arguments; returns (exit code, last stderr line)."""
    return call_failing(SCRIPTS[script], [script, *args], monkeypatch, capsys)


def train_args(tiny_base, train_file, output_dir, context=SAMPLES / "context.json"):
    return ["--model_name_or_path", tiny_base, "--from_scratch", "--context_file", context, "--train_file", train_file,
            "--do_train", "--max_steps", "1", "--output_dir", output_dir, "--report_to", "none"]


def edited(record_changes=None, drop=None, index=1):
    records = good_train()
    records[index] = {**records[index], **(record_changes or {})}
    for field in drop or []:
        del records[index][field]
    return records


BAD_TRAIN_FILES = [
    ("truncated JSON", lambda: json.dumps(good_train(), ensure_ascii=False)[:-30], "not valid JSON"),
    ("wrong top-level type", lambda: json.dumps({"data": good_train()}), "expected a JSON list of questions"),
    ("empty list", lambda: "[]", "contains no questions"),
    ("missing relevant", lambda: edited(drop=["relevant"]), "record 1 (id '{id}'): field 'relevant': missing"),
    ("relevant not a candidate", lambda: edited({"relevant": 299}), "field 'relevant': paragraph 299 is not among"),
    ("index out of range", lambda: edited({"paragraphs": [0, 1, 2, 3000]}), "field 'paragraphs'[3]: paragraph index 3000 is out of range"),
    ("negative index", lambda: edited({"paragraphs": [-2, 1, 2, 3]}), "field 'paragraphs'[0]: paragraph index -2 is out of range"),
    ("duplicate id", lambda: edited({"id": good_train()[0]["id"]}), "field 'id': duplicate of record 0"),
    ("empty question", lambda: edited({"question": ""}), "field 'question': is empty"),
    ("mistyped question", lambda: edited({"question": ["問"]}), "field 'question': expected a string, found a list"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("case,content,message", BAD_TRAIN_FILES, ids=[case[0] for case in BAD_TRAIN_FILES])
def test_bad_training_file(script, case, content, message, tiny_base, tmp_path, monkeypatch, capsys):
    value = content()
    train_file = tmp_path / "train.json"
    train_file.write_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), encoding="utf-8")
    output_dir = tmp_path / "out"
    code, last_line = call(script, monkeypatch, capsys, *train_args(tiny_base, train_file, output_dir))
    assert code == 1
    assert last_line.startswith(f"error: {train_file}") and message.format(id=good_train()[1]["id"]) in last_line
    assert not output_dir.exists()


def test_answers_are_checked_by_span_selection_only(tiny_base, tmp_path, monkeypatch, capsys):
    records = good_train()
    paragraph = read_json(SAMPLES / "context.json")[records[1]["relevant"]]
    records[1]["answer"] = {"text": "這段文字不在段落裡", "start": 0}
    assert records[1]["answer"]["text"] not in paragraph
    train_file = write_json(tmp_path / "train.json", records)
    code, last_line = call("run_qa.py", monkeypatch, capsys, *train_args(tiny_base, train_file, tmp_path / "qa"))
    assert code == 1 and "field 'answer.text': '這段文字不在段落裡' does not occur in paragraph" in last_line
    # Paragraph selection does not need the answer, so it does not stop at it.
    monkeypatch.setattr(sys, "argv", ["run_swag.py", *map(str, train_args(tiny_base, train_file, tmp_path / "mc"))])
    run_main(run_swag.main)
    assert (tmp_path / "mc" / "model.safetensors").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_arguments(script, tiny_base, tmp_path, monkeypatch, capsys):
    train_file = SAMPLES / "train.json"
    output_dir = tmp_path / "out"
    base = train_args(tiny_base, train_file, output_dir)

    code, line = call(script, monkeypatch, capsys, *[a for a in base if a != "--do_train"])
    assert code == 1 and line == "error: nothing to do: pass --do_train, --do_eval and/or --do_predict"
    code, line = call(script, monkeypatch, capsys, *base, "--do_eval")
    assert code == 1 and line == "error: --do_eval needs --validation_file"
    code, line = call(script, monkeypatch, capsys, *base[:-4], "--output_dir", output_dir, "--model_name_or_path",
                      tmp_path / "no-such-model")
    assert code == 1 and "no-such-model: cannot load the model config" in line
    code, line = call(script, monkeypatch, capsys, *base, "--config_overrides", "num_hidden_layer=1")
    assert code == 1 and "--config_overrides 'num_hidden_layer=1': key num_hidden_layer isn't in the original config" in line
    code, line = call(script, monkeypatch, capsys, *base, "--load_best_model_at_end", "--eval_strategy", "no",
                      "--save_strategy", "steps")
    assert code == 1 and line.startswith("error: invalid arguments: --load_best_model_at_end requires")
    code, line = call(script, monkeypatch, capsys, *base, "--context_file", tmp_path / "missing.json")
    assert code == 1 and line == f"error: {tmp_path / 'missing.json'}: no such file"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, line = call(script, monkeypatch, capsys, *base, "--output_dir", blocker / "out")
    assert code == 1 and line == f"error: {blocker / 'out'}: --output_dir cannot be created or written ({blocker} is not a writable folder)"
    code, line = call(script, monkeypatch, capsys, *base, "--output_dir", blocker)
    assert code == 1 and line == f"error: {blocker}: --output_dir is a file, not a directory"
    assert not output_dir.exists()


def test_pretrained_weights_missing_from_a_model_directory(tiny_base, tmp_path, monkeypatch, capsys):
    args = [a for a in train_args(tiny_base, SAMPLES / "train.json", tmp_path / "out") if a != "--from_scratch"]
    code, line = call("run_qa.py", monkeypatch, capsys, *args)
    assert code == 1 and line.startswith(f"error: {tiny_base}: cannot load the model")


def test_span_selection_prediction_needs_the_chosen_paragraph(tiny_base, tmp_path, monkeypatch, capsys):
    args = ["--model_name_or_path", tiny_base, "--from_scratch", "--context_file", SAMPLES / "context.json",
            "--test_file", SAMPLES / "test.json", "--do_predict", "--output_dir", tmp_path / "out"]
    code, line = call("run_qa.py", monkeypatch, capsys, *args)
    assert code == 1 and "record 0" in line and "field 'relevant': missing" in line


@pytest.mark.parametrize("script", SCRIPTS)
def test_command_line_error_is_one_line_without_traceback(script, tiny_base, tmp_path):
    train_file = write_json(tmp_path / "train.json", edited({"paragraphs": [0, 1, 2, 3000]}))
    result = run_script(script, *train_args(tiny_base, train_file, tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {train_file}: record 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_unknown_flag_is_one_line_with_exit_status_2_as_docs_training_md_says(script, tiny_base, tmp_path,
                                                                                  monkeypatch, capsys):
    """Before, HfArgumentParser's 'arguments are not used' came as 'invalid arguments: ...' with status 1."""
    args = [*train_args(tiny_base, SAMPLES / "train.json", tmp_path / "out"), "--doc_strides", "32"]
    code, line = call(script, monkeypatch, capsys, *args)
    assert (code, line) == (2, "error: unrecognized arguments: --doc_strides 32 (see --help)")
    assert not (tmp_path / "out").exists()
