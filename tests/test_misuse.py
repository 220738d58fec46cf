"""More misuse, of kinds the earlier rounds did not try: inputs in other encodings or through pipes, broken model
folders of other shapes, a malformed models/inference.json, outputs that reach a model folder sideways, odd candidate
lists and ensembles that must still give the plain answers, and flags the machine cannot honour. Each ends in one line
and writes nothing, or works as documented."""

import os
import shutil
import sys
import threading

import pytest
import torch

import convert_squad
import inference
import run_qa
from cli import run_main
from conftest import SAMPLES, read_json, write_json
from planted import save_choice_model, save_span_model

SMALL_TEST = read_json(SAMPLES / "test.json")[:5]


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("misuse-models")
    return {"mc": save_choice_model(tiny_base, root / "mc", marker="標"),
            "qa": save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0})}  # fmt: skip


def argv(models, test, output, *extra, context=SAMPLES / "context.json"):
    return ["--context_file", str(context), "--test_file", str(test), "--output_file", str(output),
            "--mc_model", str(models["mc"]), "--qa_model", str(models["qa"]), *map(str, extra)]  # fmt: skip


def one_line_error(main, capsys, code=1):
    """Runs an entry point that must fail; returns its only error line (no traceback, nothing else after it)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    assert exit_info.value.code == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in "\n".join(lines)
    return lines[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Inputs in another encoding, through a pipe, from a device


def test_a_test_file_in_utf16_is_named_with_its_first_bad_byte(models, tmp_path, capsys):
    test = tmp_path / "test.json"
    test.write_bytes((SAMPLES / "test.json").read_text(encoding="utf-8").encode("utf-16"))
    line = one_line_error(lambda: inference.main(argv(models, test, tmp_path / "pred.csv")), capsys)
    assert line == f"error: {test}: not UTF-8 (invalid byte 0xff at byte 0)"
    assert not (tmp_path / "pred.csv").exists()


def test_the_context_can_come_through_a_named_pipe(models, tmp_path):
    """bash's `--context_file <(zcat context.json.gz)` gives a pipe, read once."""
    fifo = tmp_path / "context.fifo"
    os.mkfifo(fifo)
    text = (SAMPLES / "context.json").read_bytes()
    writer = threading.Thread(target=lambda: fifo.write_bytes(text), daemon=True)
    writer.start()
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    piped = inference.main(argv(models, test, tmp_path / "piped.csv", context=fifo))
    writer.join(timeout=30)
    assert piped == inference.main(argv(models, test, tmp_path / "file.csv"))


@pytest.mark.parametrize("device_file", ["/dev/zero", "/dev/null"])
def test_a_device_given_as_the_context_is_refused_at_once(models, tmp_path, capsys, device_file):
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = one_line_error(lambda: inference.main(argv(models, test, tmp_path / "pred.csv", context=device_file)),
                          capsys)  # fmt: skip
    assert line == f"error: {device_file}: not a regular file (a device or a socket), expected a JSON file"


# ---------------------------------------------------------------------------------------------------------------------
# Model folders broken in other ways


@pytest.mark.parametrize("damage", ["symlink loop", "config a list", "tokenizer cut short", "only pytorch_model.bin"])
def test_model_folders_broken_in_other_ways_are_named_in_one_line(models, tmp_path, capsys, damage):
    broken = tmp_path / "qa"
    if damage == "symlink loop":
        (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
        (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
        broken, message = tmp_path / "loop-a", "span-selection model directory not found"
    else:
        shutil.copytree(models["qa"], broken)
        if damage == "config a list":
            write_json(broken / "config.json", [1, 2])
            message = "cannot read the span-selection model's config.json"
        elif damage == "tokenizer cut short":
            text = (broken / "tokenizer.json").read_bytes()
            (broken / "tokenizer.json").write_bytes(text[: len(text) // 3])
            message = "cannot load the span-selection tokenizer"
        else:
            (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
            message = "span-selection model directory is incomplete: no *.safetensors weights"
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = one_line_error(lambda: inference.main(argv({"mc": models["mc"], "qa": broken}, test,
                                                      tmp_path / "pred.csv")), capsys)  # fmt: skip
    assert line.startswith(f"error: {broken}: ") and message in line
    assert not (tmp_path / "pred.csv").exists()


# ---------------------------------------------------------------------------------------------------------------------
# models/inference.json


@pytest.fixture
def models_folder(models, tmp_path, monkeypatch):
    """A models/ folder of a submission, made the one inference.py reads when no model is named."""
    folder = tmp_path / "models"
    shutil.copytree(models["mc"], folder / "paragraph-selection")
    shutil.copytree(models["qa"], folder / "span-selection")
    monkeypatch.setattr(inference, "MODELS", folder)
    monkeypatch.setattr(inference, "DEFAULT_MC_MODEL", folder / "paragraph-selection")
    monkeypatch.setattr(inference, "DEFAULT_QA_MODEL", folder / "span-selection")
    return folder


def run_installed(tmp_path, output="pred.csv"):
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    return inference.main(["--context_file", str(SAMPLES / "context.json"), "--test_file", str(test),
                           "--output_file", str(tmp_path / output)])  # fmt: skip


@pytest.mark.parametrize("settings,message", [
    ({"qa_model": ["span-selection"], "beam": 3}, "unknown key 'beam'"),
    ({"qa_model": ["../elsewhere"]}, "'qa_model': '../elsewhere' must be a folder name inside"),
    ({"qa_model": "span-selection"}, "'qa_model': expected a non-empty list of folder names"),
    ({"top_k_paragraphs": 0}, "'top_k_paragraphs': expected an integer of at least 1, found 0"),
    ({"end_to_end": True, "mc_model": ["paragraph-selection"]}, "'end_to_end' is true, so there is no paragraph"),
    ({"qa_model": ["span-selection-seed2"]}, "span-selection-seed2: span-selection model directory not found"),
])
def test_a_malformed_inference_json_is_refused_in_one_line(models_folder, tmp_path, capsys, settings, message):
    write_json(models_folder / "inference.json", settings)
    line = one_line_error(lambda: run_installed(tmp_path), capsys, code=1)
    assert message in line
    assert not (tmp_path / "pred.csv").exists()


def test_inference_json_runs_an_ensemble_and_top_k_without_flags(models_folder, tmp_path, caplog):
    """What inference.json names runs as the same flags would: run.sh needs no edit for an ensemble with top-k."""
    shutil.copytree(models_folder / "span-selection", models_folder / "span-selection-copy")
    write_json(models_folder / "inference.json", {"qa_model": ["span-selection", "span-selection-copy"],
                                                  "top_k_paragraphs": 2})  # fmt: skip
    with caplog.at_level("INFO"):
        installed = run_installed(tmp_path, "installed.csv")
    assert "Running what" in caplog.text and "1 + 2 models; top 2 paragraph(s) decoded" in caplog.text
    flags = inference.main(["--context_file", str(SAMPLES / "context.json"), "--test_file", str(tmp_path / "test.json"),
                            "--output_file", str(tmp_path / "flags.csv"), "--mc_model",
                            str(models_folder / "paragraph-selection"), "--qa_model",
                            str(models_folder / "span-selection"), str(models_folder / "span-selection-copy"),
                            "--top_k_paragraphs", "2"])  # fmt: skip
    assert installed == flags
    assert (tmp_path / "installed.csv").read_bytes() == (tmp_path / "flags.csv").read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# Outputs that reach a model folder sideways


def test_an_analysis_folder_inside_a_model_folder_is_refused(models, tmp_path, capsys):
    qa = shutil.copytree(models["qa"], tmp_path / "qa")
    valid = write_json(tmp_path / "valid.json", read_json(SAMPLES / "valid.json")[:4])
    line = one_line_error(lambda: inference.main(argv({"mc": models["mc"], "qa": qa}, valid, tmp_path / "pred.csv",
                                                      "--analysis_dir", qa / "analysis")), capsys)  # fmt: skip
    assert f"is inside the model folder {qa}" in line
    assert sorted(p.name for p in qa.iterdir()) == sorted(p.name for p in models["qa"].iterdir())


def test_an_output_through_a_linked_folder_into_a_model_folder_is_refused(models, tmp_path, capsys):
    qa = shutil.copytree(models["qa"], tmp_path / "qa")
    (tmp_path / "results").symlink_to(qa)
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = one_line_error(lambda: inference.main(argv({"mc": models["mc"], "qa": qa}, test,
                                                      tmp_path / "results" / "tokenizer.json")), capsys)  # fmt: skip
    assert f"is inside the model folder {qa}" in line
    assert (qa / "tokenizer.json").read_bytes() == (models["qa"] / "tokenizer.json").read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# Odd candidate lists and ensembles that must still give the plain answers


def test_a_candidate_listed_several_times_and_top_k_beyond_the_candidates(models, tmp_path):
    context = write_json(tmp_path / "context.json", ["天地甲玄黃乙宇宙", "標洪荒日月"])
    test = write_json(tmp_path / "test.json", [{"id": "a", "question": "問", "paragraphs": [0, 0, 0]},
                                               {"id": "b", "question": "問", "paragraphs": [1, 0, 1, 0]}])  # fmt: skip
    answers = inference.main(argv(models, test, tmp_path / "pred.csv", context=context))
    # b: the marked paragraph 1 is chosen; the span model scores its characters alike, so the first wins the tie.
    assert answers == {"a": "甲玄黃乙", "b": "標"}
    wide = inference.main(argv(models, test, tmp_path / "wide.csv", "--top_k_paragraphs", 50, context=context))
    every = inference.main(argv(models, test, tmp_path / "four.csv", "--top_k_paragraphs", 4, context=context))
    assert wide == every and wide["a"] == "甲玄黃乙"  # K beyond the candidates reads them all


def test_the_same_model_twice_in_an_ensemble_answers_as_the_model_alone(models, tmp_path):
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    alone = inference.main(argv(models, test, tmp_path / "alone.csv"))
    twice = inference.main(["--context_file", str(SAMPLES / "context.json"), "--test_file", str(test),
                            "--output_file", str(tmp_path / "twice.csv"), "--mc_model", str(models["mc"]),
                            str(models["mc"]), "--qa_model", str(models["qa"]), str(models["qa"])])  # fmt: skip
    assert twice == alone
    assert (tmp_path / "twice.csv").read_bytes() == (tmp_path / "alone.csv").read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# Flags the machine or the implementation cannot honour


@pytest.mark.parametrize("flags,message,code", [
    (["--device", "cuda"], "error: --device cuda: no CUDA GPU is available (use --device auto or cpu)", 1),
    (["--batch_size", "1025"], "error: argument --batch_size: must be at most 1,024, got 1025 (see --help)", 2),
    (["--n_best_size", "1001"], "error: argument --n_best_size: must be at most 1,000, got 1001 (see --help)", 2),
])
def test_flags_that_cannot_be_honoured_are_refused(models, tmp_path, capsys, flags, message, code):
    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = one_line_error(lambda: inference.main(argv(models, test, tmp_path / "pred.csv", *flags)), capsys, code)
    assert line == message


# ---------------------------------------------------------------------------------------------------------------------
# Training and converting


def training_argv(tiny_base, tmp_path, *extra):
    return ["run_qa.py", "--model_name_or_path", str(tiny_base), "--from_scratch", "--context_file",
            str(SAMPLES / "context.json"), "--train_file", str(SAMPLES / "train.json"), "--do_train",
            "--report_to", "none", *map(str, extra)]  # fmt: skip


@pytest.mark.parametrize("case", ["resume from a file", "output under /proc", "answer of spaces"])
def test_training_misuse_of_other_kinds_is_one_line(tiny_base, tmp_path, monkeypatch, capsys, case):
    if case == "resume from a file":
        (tmp_path / "checkpoint-5").write_text("not a folder", encoding="utf-8")
        extra = ["--output_dir", tmp_path / "out", "--resume_from_checkpoint", tmp_path / "checkpoint-5"]
        message = f"{tmp_path / 'checkpoint-5'}: --resume_from_checkpoint is not a directory"
    elif case == "output under /proc":
        extra = ["--output_dir", "/proc/span-selection"]
        message = "--output_dir cannot be created or written (/proc is not a writable folder)"
    else:
        train = read_json(SAMPLES / "train.json")[:3]
        train[1]["answer"]["text"] = "  "
        extra = ["--output_dir", tmp_path / "out", "--train_file", write_json(tmp_path / "train.json", train)]
        message = "record 1 (id"
    monkeypatch.setattr(sys, "argv", training_argv(tiny_base, tmp_path, *extra))
    line = one_line_error(run_qa.main, capsys)
    assert message in line
    if case == "answer of spaces":
        assert line.endswith("field 'answer.text': is empty")
    assert not (tmp_path / "out").exists()


def test_convert_squad_refuses_a_folder_given_as_its_input(tmp_path, capsys):
    (tmp_path / "DRCD_training.json").mkdir()
    line = one_line_error(lambda: convert_squad.main([str(tmp_path / "DRCD_training.json"), "--output_dir",
                                                      str(tmp_path / "out")]), capsys)  # fmt: skip
    assert line == f"error: {tmp_path / 'DRCD_training.json'}: is a directory, expected a JSON file"
    assert not (tmp_path / "out").exists()
