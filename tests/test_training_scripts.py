"""End to end: train both stages of a tiny model for a few steps on the sample data, as a user would, and check every
output the README promises."""

import csv
import json

import pytest
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from conftest import SAMPLES, read_json, run_script

COMMON = ["--from_scratch", "--context_file", SAMPLES / "context.json", "--max_seq_length", "128",
          "--max_question_length", "32", "--report_to", "none", "--seed", "7", "--per_device_eval_batch_size", "16"]


@pytest.fixture(scope="module")
def paragraph_selection_run(tiny_base, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("paragraph-selection")
    result = run_script(
        "run_swag.py", "--model_name_or_path", tiny_base, *COMMON,
        "--train_file", SAMPLES / "train.json", "--validation_file", SAMPLES / "valid.json",
        "--test_file", SAMPLES / "test.json", "--do_train", "--do_eval", "--do_predict",
        "--max_train_samples", "64", "--per_device_train_batch_size", "4", "--max_steps", "10",
        "--learning_rate", "1e-3", "--eval_strategy", "steps", "--eval_steps", "2", "--logging_steps", "2",
        "--save_strategy", "steps", "--save_steps", "5", "--output_dir", output_dir,
    )
    return output_dir, result


@pytest.fixture(scope="module")
def span_selection_run(tiny_base, paragraph_selection_run, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("span-selection")
    test_with_relevant = paragraph_selection_run[0] / "test_with_relevant.json"
    result = run_script(
        "run_qa.py", "--model_name_or_path", tiny_base, *COMMON, "--doc_stride", "32",
        "--train_file", SAMPLES / "train.json", "--validation_file", SAMPLES / "valid.json",
        "--test_file", test_with_relevant, "--do_train", "--do_eval", "--do_predict",
        "--max_train_samples", "64", "--per_device_train_batch_size", "8", "--max_steps", "10",
        "--learning_rate", "1e-3", "--eval_strategy", "steps", "--eval_steps", "2", "--logging_steps", "2",
        "--save_strategy", "steps", "--save_steps", "2", "--load_best_model_at_end", "--save_total_limit", "2",
        "--output_dir", output_dir,
    )
    return output_dir, result


def logged(output_dir, key):
    history = read_json(output_dir / "trainer_state.json")["log_history"]
    return [entry[key] for entry in history if key in entry]


def test_paragraph_selection_trains_evaluates_and_predicts(paragraph_selection_run):
    output_dir, result = paragraph_selection_run
    assert "train: 64 questions, 256 question-paragraph pairs" in result.stdout + result.stderr
    results = read_json(output_dir / "all_results.json")
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["eval_samples"] == 48
    assert len(logged(output_dir, "loss")) == 5 and len(logged(output_dir, "eval_accuracy")) == 5
    assert read_json(output_dir / "trainer_state.json")["best_metric"] == max(logged(output_dir, "eval_accuracy"))

    model = AutoModelForMultipleChoice.from_pretrained(output_dir)
    assert model.config.num_hidden_layers == 2 and (output_dir / "model.safetensors").exists()
    AutoTokenizer.from_pretrained(output_dir)

    test = read_json(SAMPLES / "test.json")
    predicted = read_json(output_dir / "test_with_relevant.json")
    assert [q["id"] for q in predicted] == [q["id"] for q in test]
    assert all(q["relevant"] in q["paragraphs"] for q in predicted)


def test_span_selection_trains_evaluates_and_predicts(span_selection_run, paragraph_selection_run):
    output_dir, result = span_selection_run
    results = read_json(output_dir / "all_results.json")
    assert {"eval_exact_match", "eval_f1", "eval_loss", "train_loss"} <= set(results)
    assert 0.0 <= results["eval_exact_match"] <= results["eval_f1"] <= 100.0
    assert len(logged(output_dir, "eval_exact_match")) == 5 and len(logged(output_dir, "eval_loss")) == 5
    # --load_best_model_at_end picked the checkpoint with the best exact match.
    state = read_json(output_dir / "trainer_state.json")
    assert state["best_metric"] == max(logged(output_dir, "eval_exact_match"))
    assert results["eval_exact_match"] == pytest.approx(state["best_metric"])

    AutoModelForQuestionAnswering.from_pretrained(output_dir)
    context = read_json(SAMPLES / "context.json")
    questions = {q["id"]: q for q in read_json(paragraph_selection_run[0] / "test_with_relevant.json")}
    with open(output_dir / "pred.csv", encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "answer"] and [r[0] for r in rows[1:]] == list(questions)
    assert all(answer in context[questions[question_id]["relevant"]] for question_id, answer in rows[1:])
    predictions = json.loads((output_dir / "eval_predictions.json").read_text(encoding="utf-8"))
    assert len(predictions) == 48


def test_from_scratch_config_overrides_change_the_architecture(tiny_base, tmp_path):
    run_script(
        "run_swag.py", "--model_name_or_path", tiny_base, *COMMON, "--config_overrides", "num_hidden_layers=1",
        "--train_file", SAMPLES / "train.json", "--do_train", "--max_train_samples", "4", "--max_steps", "1",
        "--output_dir", tmp_path,
    )
    assert read_json(tmp_path / "config.json")["num_hidden_layers"] == 1


def test_paragraph_selection_with_any_number_of_candidates(tiny_base, tmp_path):
    questions = read_json(SAMPLES / "train.json")[:6]
    for question, count in zip(questions, [1, 2, 5, 4, 3, 1]):
        others = [p for p in range(300) if p != question["relevant"]][question["relevant"] % 7 :][: count - 1]
        question["paragraphs"] = others[: count // 2] + [question["relevant"]] + others[count // 2 :]
    data = tmp_path / "mixed.json"
    data.write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    run_script(
        "run_swag.py", "--model_name_or_path", tiny_base, *COMMON, "--train_file", data, "--validation_file", data,
        "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size", "3",
        "--per_device_eval_batch_size", "3", "--output_dir", tmp_path / "out",
    )
    results = read_json(tmp_path / "out" / "all_results.json")
    # Questions with one candidate are always right; the loss stays finite with filler candidates masked.
    assert 2 / 6 <= results["eval_accuracy"] <= 1.0
    assert 0.0 <= results["eval_loss"] < 10.0
