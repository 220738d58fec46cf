"""Checkpoints (checkpoints.py): the settings a model was trained with travel in its config.json and inference uses
them; a checkpoint that cannot feed its model (no padding token, token types it has no embedding for), of another
stage, or broken (truncated weights or optimizer state, a malformed trainer state) is refused in one line naming it,
for inference, training and resuming; a broken last checkpoint of a run is passed over with a warning."""

import logging
import os
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

import inference
import run_qa
from checkpoints import SPAN_SELECTION, checkpoint_to_resume
from cli import InputError, run_main
from conftest import SAMPLES, read_json, run_script, save_random_models, write_json

SMALL_TEST = [q for q in read_json(SAMPLES / "test.json")[:8]]
LONG_PARAGRAPH = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜" * 12  # 480 characters


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    """Random-weight checkpoints of both stages (fixed weights: seed 5)."""
    root = tmp_path_factory.mktemp("checkpoint-models")
    torch.manual_seed(5)
    save_random_models(tiny_base, [(root / "mc", AutoModelForMultipleChoice), (root / "qa", AutoModelForQuestionAnswering)])
    return {"mc": root / "mc", "qa": root / "qa"}


def with_config(source, destination, **changes):
    """A copy of a checkpoint whose config.json has `changes`."""
    shutil.copytree(source, destination)
    config = read_json(destination / "config.json")
    write_json(destination / "config.json", {**config, **changes})
    return destination


def infer(mc, qa, output, *extra, test=None, context=SAMPLES / "context.json"):
    return inference.main(["--context_file", str(context), "--test_file", str(test), "--output_file", str(output),
                           "--mc_model", str(mc), "--qa_model", str(qa), *map(str, extra)])  # fmt: skip


def refused(argv_main, capsys):
    """Runs an entry point that must fail; returns its last line of stderr (and checks there is no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(argv_main)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Settings travel with the checkpoint


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    """Questions on paragraphs long enough for 256-token and 512-token windows to cut them differently."""
    root = tmp_path_factory.mktemp("long-data")
    context = [LONG_PARAGRAPH[i:] + LONG_PARAGRAPH[:i] for i in range(0, 60, 10)]
    questions = [{"id": f"q{i}", "question": "誰在位？" * (i + 1), "paragraphs": [i, (i + 1) % 6]} for i in range(6)]
    return write_json(root / "context.json", context), write_json(root / "test.json", questions)


def test_a_span_model_runs_with_the_window_it_was_trained_with(models, long_data, tmp_path, caplog):
    """Both stages trained at 256 tokens, the span model with a stride of 64 (their configs say so): no window flags
    give what --max_seq_length 256 --doc_stride 64 gives, and not what 512 / 128 gives; a flag that differs from the
    checkpoint's is said in the log."""
    trained = {"stage": "span-selection", "max_seq_length": 256, "doc_stride": 64, "max_question_length": 96,
               "context_mode": "relevant"}
    qa = with_config(models["qa"], tmp_path / "qa-256", trained_with=trained)
    mc = with_config(models["mc"], tmp_path / "mc-256",
                     trained_with={"stage": "paragraph-selection", "max_seq_length": 256, "max_question_length": 96})
    context, test = long_data
    own = infer(mc, qa, tmp_path / "own.csv", test=test, context=context)
    flags = infer(mc, qa, tmp_path / "flags.csv", "--max_seq_length", 256, "--doc_stride", 64, test=test,
                  context=context)
    with caplog.at_level(logging.INFO):
        default = infer(mc, qa, tmp_path / "512.csv", "--max_seq_length", 512, "--doc_stride", 128,
                        test=test, context=context)
    assert own == flags
    assert (tmp_path / "own.csv").read_bytes() == (tmp_path / "flags.csv").read_bytes()
    assert own != default
    assert f"{qa}: --max_seq_length 512, not the 256 it was trained with" in caplog.text
    # A checkpoint saved before settings travelled runs with the defaults, as before.
    older = infer(models["mc"], models["qa"], tmp_path / "older.csv", test=test, context=context)
    assert older == infer(models["mc"], models["qa"], tmp_path / "older-512.csv", "--max_seq_length", 512,
                          "--doc_stride", 128, "--max_question_length", 96, test=test, context=context)


def test_short_windows_trained_in_both_stages_run_with_no_flag(models, tmp_path):
    """Paragraph selection trained at 128 tokens saves no stride (it has none): its window is not checked against
    the default stride of 128, which would leave no room (a first version refused it)."""
    mc = with_config(models["mc"], tmp_path / "mc", trained_with={"stage": "paragraph-selection", "max_seq_length": 128,
                                                                  "max_question_length": 32})
    qa = with_config(models["qa"], tmp_path / "qa", trained_with={"stage": "span-selection", "max_seq_length": 128,
                                                                  "doc_stride": 32, "max_question_length": 32})
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    answers = infer(mc, qa, tmp_path / "pred.csv", test=test)
    assert answers == infer(mc, qa, tmp_path / "flags.csv", "--max_seq_length", 128, "--doc_stride", 32,
                            "--max_question_length", 32, test=test)


def test_each_ensemble_member_keeps_its_own_window(models, long_data, tmp_path):
    """Two span models trained at different windows, in one ensemble: each reads with its own. The ensemble of a
    256-window copy and a 512-window copy of the same weights differs from both copies at 512."""
    context, test = long_data
    trained = {"stage": "span-selection", "max_seq_length": 256, "doc_stride": 64}
    short = with_config(models["qa"], tmp_path / "qa-256", trained_with=trained)
    mixed = inference.main(["--context_file", str(context), "--test_file", str(test), "--output_file",
                            str(tmp_path / "mixed.csv"), "--mc_model", str(models["mc"]), "--qa_model", str(short),
                            str(models["qa"]), "--n_best_size", "1000"])  # fmt: skip
    both_512 = inference.main(["--context_file", str(context), "--test_file", str(test), "--output_file",
                               str(tmp_path / "same.csv"), "--mc_model", str(models["mc"]), "--qa_model",
                               str(models["qa"]), str(models["qa"]), "--n_best_size", "1000"])  # fmt: skip
    alone_512 = infer(models["mc"], models["qa"], tmp_path / "alone.csv", "--n_best_size", 1000, test=test,
                      context=context)
    assert both_512 == alone_512  # two identical members average to one
    assert mixed != both_512


def test_run_qa_saves_its_settings_in_every_checkpoint_and_the_model(tiny_base, tmp_path):
    output_dir = tmp_path / "span"
    run_script("run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
               SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--do_train",
               "--max_train_samples", 8, "--max_steps", 2, "--save_steps", 1, "--max_seq_length", 256, "--doc_stride",
               64, "--max_question_length", 40, "--output_dir", output_dir, "--report_to", "none")  # fmt: skip
    expected = {"stage": "span-selection", "max_seq_length": 256, "doc_stride": 64, "max_question_length": 40,
                "context_mode": "relevant"}
    for folder in (output_dir, output_dir / "checkpoint-1", output_dir / "checkpoint-2"):
        assert read_json(folder / "config.json")["trained_with"] == expected


def test_a_settings_entry_that_is_not_a_number_is_refused(models, tmp_path, capsys):
    qa = with_config(models["qa"], tmp_path / "qa", trained_with={"stage": "span-selection", "max_seq_length": "big"})
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = refused(lambda: infer(models["mc"], qa, tmp_path / "pred.csv", test=test), capsys)
    assert line == f"error: {qa}: config.json's trained_with: max_seq_length 'big' is not an integer >= 1"


def test_the_stage_a_checkpoint_was_trained_for_is_checked(models, tmp_path, capsys):
    """A span model whose config says it was trained for paragraph selection (a copied config) is refused."""
    qa = with_config(models["qa"], tmp_path / "qa", trained_with={"stage": "paragraph-selection"})
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = refused(lambda: infer(models["mc"], qa, tmp_path / "pred.csv", test=test), capsys)
    assert "a paragraph-selection checkpoint (config.json's trained_with), not a span-selection one" in line
    assert not (tmp_path / "pred.csv").exists()


# ---------------------------------------------------------------------------------------------------------------------
# A tokenizer that cannot feed its model


def without_pad_token(source, destination):
    shutil.copytree(source, destination)
    tokenizer_json = read_json(destination / "tokenizer.json")
    tokenizer_json["padding"] = None
    write_json(destination / "tokenizer.json", tokenizer_json)
    config = read_json(destination / "tokenizer_config.json")
    config["pad_token"] = None  # not just missing: BertTokenizer's own default is [PAD]
    write_json(destination / "tokenizer_config.json", config)
    assert AutoTokenizer.from_pretrained(destination).pad_token_id is None
    return destination


@pytest.mark.parametrize("stage", ["mc", "qa"])
def test_inference_refuses_a_tokenizer_without_padding_or_token_types_the_model_lacks(models, tmp_path, capsys, stage):
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    role = {"mc": "paragraph-selection", "qa": "span-selection"}[stage]
    broken = dict(models)
    broken[stage] = without_pad_token(models[stage], tmp_path / "no-pad")
    line = refused(lambda: infer(broken["mc"], broken["qa"], tmp_path / "pred.csv", test=test), capsys)
    assert line == (f"error: {broken[stage]}: {role} model: the tokenizer has no padding token (pad_token), so "
                    "batches cannot be padded: set one in its files")
    broken[stage] = with_config(models[stage], tmp_path / "one-type", type_vocab_size=1)
    line = refused(lambda: infer(broken["mc"], broken["qa"], tmp_path / "pred.csv", test=test), capsys)
    assert line == (f"error: {broken[stage]}: {role} model: the tokenizer gives a pair's tokens the types [0, 1] but "
                    "the model has 1 token type embedding (type_vocab_size)")
    assert not (tmp_path / "pred.csv").exists()


def test_training_refuses_a_base_model_that_its_tokenizer_cannot_feed(tiny_base, tmp_path, monkeypatch, capsys):
    no_pad = without_pad_token(tiny_base, tmp_path / "no-pad")
    one_type = with_config(tiny_base, tmp_path / "one-type", type_vocab_size=1)
    for base, message in ((no_pad, "the tokenizer has no padding token"), (one_type, "token type embedding")):
        monkeypatch.setattr(sys, "argv", [
            "run_qa.py", "--model_name_or_path", str(base), "--from_scratch", "--context_file",
            str(SAMPLES / "context.json"), "--train_file", str(SAMPLES / "train.json"), "--do_train",
            "--output_dir", str(tmp_path / "out"), "--report_to", "none"])  # fmt: skip
        line = refused(run_qa.main, capsys)
        assert line.startswith(f"error: {base}: ") and message in line
        assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Resuming


def trainer_checkpoint(source, folder, step, optimizer=True):
    """A checkpoint-N folder as the Trainer writes it: the model of `source`, an optimizer state and its state."""
    shutil.copytree(source, folder)
    if optimizer:
        torch.save({"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}, folder / "optimizer.pt")
    write_json(folder / "trainer_state.json", {"global_step": step, "log_history": [{"loss": 1.0, "step": step}]})
    return folder


def arguments(output_dir, **changes):
    return SimpleNamespace(**{"do_train": True, "resume_from_checkpoint": None, "output_dir": str(output_dir),
                              **changes})  # fmt: skip


@pytest.mark.parametrize("damage", ["no trainer state", "trainer state cut short", "trainer state not a state",
                                    "truncated weights", "truncated optimizer", "no weights"])
def test_a_broken_last_checkpoint_is_passed_over_with_a_warning_and_refused_when_named(models, tmp_path, caplog,
                                                                                         damage):
    run = tmp_path / "run"
    earlier = trainer_checkpoint(models["qa"], run / "checkpoint-2", 2)
    last = trainer_checkpoint(models["qa"], run / "checkpoint-4", 4)
    (run / "checkpoint-7").mkdir()  # a folder the Trainer never finished: not even its config
    (run / "checkpoint-99").write_text("a file, not a checkpoint", encoding="utf-8")
    problem = {
        "no trainer state": "no readable trainer_state.json (stopped while saving?)",
        "trainer state cut short": "trainer_state.json is not valid JSON (stopped while saving?)",
        "trainer state not a state": "trainer_state.json is not a Trainer state (no global_step and log_history)",
        "truncated weights": "model.safetensors is unreadable",
        "truncated optimizer": "optimizer.pt is unreadable (truncated?)",
        "no weights": "no *.safetensors weights",
    }[damage]
    if damage == "no trainer state":
        (last / "trainer_state.json").unlink()
    elif damage == "trainer state cut short":
        (last / "trainer_state.json").write_text('{"global_step": 4, "log_hi', encoding="utf-8")
    elif damage == "trainer state not a state":
        write_json(last / "trainer_state.json", [4])
    elif damage in ("truncated weights", "truncated optimizer"):
        path = last / ("model.safetensors" if damage == "truncated weights" else "optimizer.pt")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        (last / "model.safetensors").unlink()
    with caplog.at_level(logging.WARNING):
        assert checkpoint_to_resume(arguments(run), SPAN_SELECTION) == str(earlier)
    assert f"Skipping {last}: {problem}" in caplog.text
    assert f"Skipping {run / 'checkpoint-7'}: no readable trainer_state.json" in caplog.text
    with pytest.raises(InputError) as error:
        checkpoint_to_resume(arguments(run, resume_from_checkpoint=str(last)), SPAN_SELECTION)
    assert str(error.value).startswith(f"{last}: --resume_from_checkpoint cannot be resumed: {problem}")
    assert checkpoint_to_resume(arguments(run, resume_from_checkpoint=str(earlier)), SPAN_SELECTION) == str(earlier)
    assert checkpoint_to_resume(arguments(run, do_train=False), SPAN_SELECTION) is None


def test_a_checkpoint_of_another_task_is_not_resumed(models, tmp_path):
    """A run_swag.py checkpoint (multiple choice) in a run_qa.py --output_dir, or named by --resume_from_checkpoint."""
    run = tmp_path / "run"
    trainer_checkpoint(models["qa"], run / "checkpoint-2", 2)
    other = trainer_checkpoint(models["mc"], run / "checkpoint-4", 4)
    with pytest.raises(InputError) as error:
        checkpoint_to_resume(arguments(run), SPAN_SELECTION)
    assert str(error.value) == (
        f"{other}: a BertForMultipleChoice checkpoint, not a span-selection model (*ForQuestionAnswering): "
        f"--output_dir {run} holds another task's run; use another --output_dir"
    )
    with pytest.raises(InputError, match="cannot be resumed: a BertForMultipleChoice checkpoint, not a span-selection"):
        checkpoint_to_resume(arguments(tmp_path / "elsewhere", resume_from_checkpoint=str(other)), SPAN_SELECTION)


def test_resuming_from_a_truncated_last_checkpoint_trains_on_from_the_one_before(tiny_base, tmp_path):
    """Through run_qa.py: a run of 4 steps, its last checkpoint's weights cut in half; the rerun continues from
    checkpoint-2 (warning) and finishes."""
    output_dir = tmp_path / "span"
    flags = ["run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
             SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--do_train", "--max_train_samples", 8,
             "--per_device_train_batch_size", 4, "--max_seq_length", 128, "--doc_stride", 16, "--max_question_length", 32,
             "--max_steps", 4,
             "--save_steps", 2, "--output_dir", output_dir, "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    run_script(*flags)
    (output_dir / "train_results.json").unlink()  # as if killed after its last checkpoint
    weights = output_dir / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    again = run_script(*flags)
    assert f"Skipping {output_dir / 'checkpoint-4'}: model.safetensors is unreadable" in again.stdout + again.stderr
    assert f"Resuming training from {output_dir / 'checkpoint-2'}" in again.stdout + again.stderr
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 4


def test_a_finished_training_is_not_trained_over(tiny_base, tmp_path, monkeypatch, capsys):
    output_dir = tmp_path / "span"
    output_dir.mkdir()
    write_json(output_dir / "train_results.json", {"train_runtime": 12.0})
    monkeypatch.setattr(sys, "argv", [
        "run_qa.py", "--model_name_or_path", str(tiny_base), "--from_scratch", "--context_file",
        str(SAMPLES / "context.json"), "--train_file", str(SAMPLES / "train.json"), "--do_train",
        "--output_dir", str(output_dir), "--report_to", "none"])  # fmt: skip
    line = refused(run_qa.main, capsys)
    assert line.startswith(f"error: {output_dir}: --output_dir holds a finished training (train_results.json)")
    assert read_json(output_dir / "train_results.json") == {"train_runtime": 12.0}
    assert sorted(os.listdir(output_dir)) == ["train_results.json"]


def test_dry_run_checks_everything_and_writes_nothing(tiny_base, tmp_path):
    output_dir = tmp_path / "span"
    result = run_script("run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
                        SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--validation_file",
                        SAMPLES / "valid.json", "--do_train", "--do_eval", "--output_dir", output_dir,
                        "--report_to", "none", "--dry_run")  # fmt: skip
    assert "Dry run: the flags, the data files" in result.stdout + result.stderr
    assert not output_dir.exists()
    # And it finds what the real run would fail on, before any training.
    failing = run_script("run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
                         SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--do_train",
                         "--max_seq_length", 128, "--output_dir", output_dir, "--report_to", "none", "--dry_run",
                         check=False)  # fmt: skip
    assert failing.returncode == 1 and "leaves 29 tokens for the paragraph" in failing.stderr
    assert not output_dir.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Scores that are not numbers


def broken_copy(source, destination, model_class, damage):
    """A copy of a checkpoint whose weights `damage` changed in place."""
    model = model_class.from_pretrained(source)
    with torch.no_grad():
        damage(model)
    model.save_pretrained(destination)
    AutoTokenizer.from_pretrained(source).save_pretrained(destination)
    return destination


@pytest.mark.parametrize("case", ["NaN paragraph model", "infinite paragraph scores", "NaN span model",
                                  "infinite span logits"])
def test_scores_that_are_not_finite_are_refused_with_the_count_of_sequences(models, tmp_path, capsys, case):
    """NaN paragraph scores would pick every question's first candidate and exit 0 with plausible metrics."""
    stage, damage = {
        "NaN paragraph model": ("mc", lambda model: [p.fill_(float("nan")) for p in model.parameters()]),
        "infinite paragraph scores": ("mc", lambda model: model.classifier.bias.fill_(float("inf"))),
        "NaN span model": ("qa", lambda model: [p.fill_(float("nan")) for p in model.parameters()]),
        "infinite span logits": ("qa", lambda model: model.qa_outputs.bias.fill_(float("inf"))),
    }[case]
    model_class = AutoModelForMultipleChoice if stage == "mc" else AutoModelForQuestionAnswering
    broken = dict(models)
    broken[stage] = broken_copy(models[stage], tmp_path / "broken", model_class, damage)
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = refused(lambda: infer(broken["mc"], broken["qa"], tmp_path / "pred.csv", test=test), capsys)
    pairs = sum(len(q["paragraphs"]) for q in SMALL_TEST)
    role, count = ("paragraph-selection", pairs) if stage == "mc" else ("span-selection", len(SMALL_TEST))
    assert line == (f"error: {broken[stage]}: the {role} model gave scores that are not finite (NaN or infinite) for "
                    f"{count} of {count} sequences: its weights are broken, or half precision overflowed (try --device "
                    "cpu)")
    assert not (tmp_path / "pred.csv").exists()


@pytest.mark.parametrize("stage", ["mc", "qa"])
def test_one_question_with_scores_that_are_not_finite_is_enough_to_refuse(models, tmp_path, capsys, stage):
    """Half precision can overflow on one input only: a character that one question alone holds (掀, in the third)
    gets a NaN embedding, so only that question's sequences (its candidates, or its one window) are not finite; the
    run is still refused, with that count."""
    context = read_json(SAMPLES / "context.json")
    question = SMALL_TEST[2]
    elsewhere = [q["question"] for q in SMALL_TEST if q is not question]
    elsewhere += [context[p] for q in SMALL_TEST for p in q["paragraphs"]]
    assert "掀" in question["question"] and not any("掀" in text for text in elsewhere)
    token_id = AutoTokenizer.from_pretrained(models[stage]).convert_tokens_to_ids("掀")

    def damage(model):
        model.get_input_embeddings().weight[token_id] = float("nan")

    model_class = AutoModelForMultipleChoice if stage == "mc" else AutoModelForQuestionAnswering
    broken = dict(models)
    broken[stage] = broken_copy(models[stage], tmp_path / "broken", model_class, damage)
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    line = refused(lambda: infer(broken["mc"], broken["qa"], tmp_path / "pred.csv", test=test), capsys)
    if stage == "mc":
        role, bad, total = "paragraph-selection", len(question["paragraphs"]), sum(len(q["paragraphs"])
                                                                                 for q in SMALL_TEST)
    else:
        role, bad, total = "span-selection", 1, len(SMALL_TEST)
    assert line.startswith(f"error: {broken[stage]}: the {role} model gave scores that are not finite (NaN or "
                           f"infinite) for {bad} of {total} sequences:")
    assert not (tmp_path / "pred.csv").exists()
