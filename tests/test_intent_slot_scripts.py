"""run_intent.py and run_slot.py end to end: `train.sh --task intent-slot` trains a tiny model from scratch for a few
steps on small English data, evaluates and predicts with both scripts and plots the curves, as a user would; then the
checkpoints are evaluated again, and fed bad input (one line naming file, record and field; exit 1; nothing written)."""

import csv
import sys

import pytest
from transformers import AutoConfig, AutoTokenizer

import run_intent
import run_slot
from conftest import call_failing, intent_records, read_json, run_script, slot_records, write_json

# Words cut into several pieces ("lauderdale", "nakamura"), words the vocabulary cannot spell ("☃") or that have no
# piece at all (""), and an utterance longer than --max_seq_length 32: its last words are cut off.
EDGE_SLOT_RECORDS = [
    {"tokens": ["i", "want", "", "☃", "lauderdale"], "tags": ["O", "O", "O", "O", "B-first_name"], "id": "edge-0"},
    {"tokens": ["book", "it", "for"] + ["nakamura"] * 4 + ["at", "noon"],
     "tags": ["O", "O", "O"] + ["B-last_name"] * 4 + ["O", "B-time"], "id": "edge-1"},
]  # fmt: skip
TRAIN_OVERRIDES = [
    "--config_overrides", "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128",
    "--max_steps", "15", "--eval_steps", "3", "--save_steps", "3", "--logging_steps", "3",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4", "--learning_rate", "2e-3",
    "--max_seq_length", "32", "--seed", "7", "--disable_tqdm", "true",
]  # fmt: skip


def without(records, field):
    return [{key: value for key, value in record.items() if key != field} for record in records]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The course's layout: intent/ and slot/ with train.json, eval.json and test.json (eval.json without labels)."""
    root = tmp_path_factory.mktemp("intent-slot-data")
    evaluation = {"intent": intent_records(12, "eval", start=60), "slot": slot_records(13, "eval", start=60)}
    evaluation["slot"] += EDGE_SLOT_RECORDS
    training = {"intent": intent_records(60, "train"), "slot": slot_records(60, "train")}
    for task, label in [("intent", "intent"), ("slot", "tags")]:
        (root / task).mkdir()
        write_json(root / task / "train.json", training[task])
        write_json(root / task / "eval.json", evaluation[task])
        write_json(root / task / "test.json", without(evaluation[task], label))
    return root


@pytest.fixture(scope="module")
def trained(tiny_english_base, data_dir, tmp_path_factory):
    """(output root, folder of the two runs, train.sh's output)."""
    output_root = tmp_path_factory.mktemp("intent-slot-runs")
    result = run_script(
        "train.sh", "--task", "intent-slot", "--data_dir", data_dir, "--models", tiny_english_base, "--from_scratch",
        "--output_root", output_root, "--", *TRAIN_OVERRIDES, env={"PYTHON": sys.executable},
    )  # fmt: skip
    return output_root, output_root / f"{tiny_english_base.name}-scratch", result.stdout + result.stderr


def predictions(run_dir):
    with open(run_dir / "pred.csv", encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def test_intent_classification_trains_evaluates_and_predicts_intent_names(trained, data_dir):
    _, runs, _ = trained
    config = read_json(runs / "intent" / "config.json")
    intents = ["book_table", "cancel_reservation", "greeting", "weather"]
    assert config["id2label"] == {str(index): name for index, name in enumerate(intents)}
    assert config["label2id"] == {name: index for index, name in enumerate(intents)}

    rows = predictions(runs / "intent")
    gold = read_json(data_dir / "intent" / "eval.json")
    assert rows[0] == ["id", "intent"] and [row[0] for row in rows[1:]] == [record["id"] for record in gold]
    assert {row[1] for row in rows[1:]} <= set(intents)
    # The final evaluation and the prediction use the same (best) model.
    results = read_json(runs / "intent" / "all_results.json")
    right = sum(row[1] == record["intent"] for row, record in zip(rows[1:], gold))
    assert results["eval_accuracy"] == pytest.approx(right / len(gold)) and results["eval_samples"] == 12
    state = read_json(runs / "intent" / "trainer_state.json")
    assert state["best_metric"] == max(entry["eval_accuracy"] for entry in state["log_history"] if "eval_accuracy" in entry)


def test_slot_tagging_gives_one_tag_per_word_and_O_to_the_words_cut_off(trained, data_dir):
    _, runs, log = trained
    tags = sorted({tag for record in slot_records(60, "train") for tag in record["tags"]})
    assert read_json(runs / "slot" / "config.json")["id2label"] == {str(index): tag for index, tag in enumerate(tags)}

    rows = predictions(runs / "slot")
    gold = read_json(data_dir / "slot" / "eval.json")
    assert rows[0] == ["id", "tags"] and [row[0] for row in rows[1:]] == [record["id"] for record in gold]
    predicted = [row[1].split(" ") for row in rows[1:]]
    assert [len(words) for words in predicted] == [len(record["tokens"]) for record in gold]
    assert {tag for words in predicted for tag in words} <= set(tags)

    tokenizer = AutoTokenizer.from_pretrained(runs / "slot")
    features = run_slot.prepare_slot_features({"tokens": [EDGE_SLOT_RECORDS[1]["tokens"]]}, tokenizer, 32)
    cut = [index for index, position in enumerate(features["first_pieces"][0]) if position == -1]
    assert cut == [7, 8] and [predicted[-1][index] for index in cut] == ["O", "O"]
    assert "eval: 1 utterances longer than --max_seq_length 32 tokens; their 2 words past the cut" in log

    results = read_json(runs / "slot" / "all_results.json")
    recomputed = run_slot.compute_slot_metrics(predicted, [record["tags"] for record in gold])
    assert {key: results[f"eval_{key}"] for key in recomputed} == pytest.approx(recomputed)
    state = read_json(runs / "slot" / "trainer_state.json")
    assert results["eval_joint_accuracy"] == pytest.approx(state["best_metric"])
    assert len([entry for entry in state["log_history"] if "eval_entity_f1" in entry]) == 5


def test_train_sh_draws_the_curves_of_both_tasks(trained):
    output_root, _, _ = trained
    assert sorted(path.name for path in (output_root / "curves" / "intent").glob("*.png")) == ["accuracy.png", "loss.png"]
    slot_curves = output_root / "curves" / "slot"
    assert sorted(path.name for path in slot_curves.glob("*.png")) == ["entity_f1.png", "joint_accuracy.png", "loss.png"]
    with open(slot_curves / "results.csv", encoding="utf-8", newline="") as file:
        (row,) = csv.DictReader(file)
    assert row["steps"] == "15" and 0 <= float(row["best_joint_accuracy_pct"]) <= 100


def test_a_checkpoint_evaluates_with_its_own_labels(trained, data_dir, tmp_path, monkeypatch):
    _, runs, _ = trained
    monkeypatch.setattr("sys.argv", ["run_slot.py", "--model_name_or_path", str(runs / "slot"), "--do_eval",
                                     "--validation_file", str(data_dir / "slot" / "eval.json"), "--max_seq_length", "32",
                                     "--output_dir", str(tmp_path), "--report_to", "none"])  # fmt: skip
    run_slot.main()
    again, before = read_json(tmp_path / "eval_results.json"), read_json(runs / "slot" / "eval_results.json")
    assert again["eval_joint_accuracy"] == pytest.approx(before["eval_joint_accuracy"])
    assert again["eval_entity_f1"] == pytest.approx(before["eval_entity_f1"])


@pytest.mark.parametrize("task,script,column", [("intent", run_intent, "intent"), ("slot", run_slot, "tags")])
def test_a_saved_checkpoint_predicts_alone_with_the_training_files_label_names(trained, data_dir, tmp_path,
                                                                             monkeypatch, task, script, column):
    """--do_predict only, from the folder train.sh trained into (no --train_file): pred.csv has every test
    utterance in order, labels that are names of the training file (tags: one per word), and exactly the rows the
    training run predicted with the same model."""
    _, runs, _ = trained
    test = data_dir / task / "test.json"
    monkeypatch.setattr("sys.argv", [f"run_{task}.py", "--model_name_or_path", str(runs / task), "--do_predict",
                                     "--test_file", str(test), "--max_seq_length", "32", "--output_dir",
                                     str(tmp_path), "--report_to", "none"])  # fmt: skip
    script.main()
    rows = predictions(tmp_path)
    assert rows[0] == ["id", column] and [row[0] for row in rows[1:]] == [record["id"] for record in read_json(test)]
    training = read_json(data_dir / task / "train.json")
    if task == "intent":
        names = {record["intent"] for record in training}
        assert {row[1] for row in rows[1:]} <= names
    else:
        names = {tag for record in training for tag in record["tags"]}
        words = [row[1].split(" ") for row in rows[1:]]
        assert [len(tags) for tags in words] == [len(record["tokens"]) for record in read_json(test)]
        assert {tag for tags in words for tag in tags} <= names
    assert rows == predictions(runs / task)
    assert len({row[1] for row in rows[1:]}) > 1  # not one label for every utterance


# --- Bad input ------------------------------------------------------------------------------------------------------


def test_unknown_tags_at_evaluation_are_named_with_the_model(trained, tmp_path, monkeypatch, capsys):
    _, runs, _ = trained
    records = slot_records(3, "eval")
    records[2]["tags"][0] = "B-city"
    valid = write_json(tmp_path / "valid.json", records)
    output_dir = tmp_path / "out"
    args = ["run_slot.py", "--model_name_or_path", runs / "slot", "--do_eval", "--validation_file", valid,
            "--output_dir", output_dir]  # fmt: skip
    code, line = call_failing(run_slot.main, args, monkeypatch, capsys)
    assert code == 1 and line == (
        f"error: {valid}: record 2 (id 'eval-2'): field 'tags'[0]: 'B-city' is not among the 9 labels of the model "
        f"{runs / 'slot'}, so no model trained on it can predict it"
    )
    assert not output_dir.exists()


def training_args(tiny_english_base, train_file, output_dir, *more):
    return ["--model_name_or_path", tiny_english_base, "--from_scratch", "--train_file", train_file, "--do_train",
            "--max_steps", "1", "--output_dir", output_dir, "--report_to", "none", *more]  # fmt: skip


def test_a_validation_label_that_training_never_saw(tiny_english_base, tmp_path, monkeypatch, capsys):
    train = write_json(tmp_path / "train.json", intent_records(8, "train"))
    unseen = {"text": "sing me a song", "intent": "music", "id": "v-2"}
    valid = write_json(tmp_path / "valid.json", [*intent_records(2, "v"), unseen])
    output_dir = tmp_path / "out"
    args = training_args(tiny_english_base, train, output_dir, "--do_eval", "--validation_file", valid)
    code, line = call_failing(run_intent.main, ["run_intent.py", *args], monkeypatch, capsys)
    assert code == 1 and line == (
        f"error: {valid}: record 2 (id 'v-2'): field 'intent': 'music' is not among the 4 labels of the training file "
        f"{train}, so no model trained on it can predict it"
    )
    assert not output_dir.exists()


@pytest.mark.parametrize("script,records,message", [
    (run_slot, [*slot_records(2, "t"), {"tokens": ["a", "b"], "tags": ["O"], "id": "t-2"}],
     "record 2 (id 't-2'): field 'tags': 1 tags for 2 tokens (one tag per token)"),
    (run_slot, [*slot_records(2, "t"), {"tokens": [], "tags": [], "id": "t-2"}], "record 2 (id 't-2'): field 'tokens': is empty"),
    (run_intent, [*intent_records(2, "t"), {"text": " ", "intent": "greeting", "id": "t-2"}], "record 2 (id 't-2'): field 'text': is empty"),
    (run_intent, {"text": "hi"}, "expected a JSON list of utterances, found an object"),
    (run_intent, [r for r in intent_records(12, "train") if r["intent"] == "greeting"],
     "has one intent only ('greeting'): a classifier needs at least two"),
    (run_slot, [{**r, "tags": ["O"] * len(r["tokens"])} for r in slot_records(12, "train")],
     "has one tag only ('O'): a tagger needs at least two"),
], ids=["tokens and tags of different lengths", "empty slot utterance", "empty intent utterance", "not a list",
        "one intent", "one tag"])  # fmt: skip
def test_bad_training_files(script, records, message, tiny_english_base, tmp_path, monkeypatch, capsys):
    train = write_json(tmp_path / "train.json", records)
    output_dir = tmp_path / "out"
    args = ["run.py", *training_args(tiny_english_base, train, output_dir)]
    code, line = call_failing(script.main, args, monkeypatch, capsys)
    assert code == 1 and line == f"error: {train}: {message}"
    assert not output_dir.exists()


def test_a_model_never_trained_on_the_task_has_no_labels_to_predict(tiny_english_base, tmp_path, monkeypatch, capsys):
    test = write_json(tmp_path / "test.json", without(intent_records(2, "t"), "intent"))
    args = ["run_intent.py", "--model_name_or_path", tiny_english_base, "--from_scratch", "--test_file", test,
            "--do_predict", "--output_dir", tmp_path / "out"]  # fmt: skip
    code, line = call_failing(run_intent.main, args, monkeypatch, capsys)
    assert code == 1 and line == (
        f"error: {tiny_english_base}: the model has no label names of its own (its config's id2label is LABEL_0, "
        "LABEL_1): train it first with --do_train and a --train_file"
    )
    assert not (tmp_path / "out").exists()


def test_intents_named_like_the_config_default_train_and_their_checkpoint_predicts_them(
    tiny_english_base, tmp_path, monkeypatch
):
    # Two intents named as a config names labels it knows nothing of: LABEL_0, LABEL_1 (data exported without names).
    renamed = {"book_table": "LABEL_0", "greeting": "LABEL_1"}
    records = [{**r, "intent": renamed[r["intent"]]} for r in intent_records(16, "train") if r["intent"] in renamed]
    train, trained = write_json(tmp_path / "train.json", records), tmp_path / "trained"
    monkeypatch.setattr(sys, "argv", ["run_intent.py", *map(str, training_args(tiny_english_base, train, trained))])
    run_intent.main()
    config = AutoConfig.from_pretrained(trained)  # config.json leaves id2label out when it is the default
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"} and config.problem_type == "single_label_classification"

    test = write_json(tmp_path / "test.json", without(records, "intent"))
    monkeypatch.setattr("sys.argv", ["run_intent.py", "--model_name_or_path", str(trained), "--test_file", str(test),
                                     "--do_predict", "--output_dir", str(tmp_path / "predicted"), "--report_to", "none"])  # fmt: skip
    run_intent.main()
    rows = predictions(tmp_path / "predicted")
    assert rows[0] == ["id", "intent"] and [row[0] for row in rows[1:]] == [record["id"] for record in records]
    assert {row[1] for row in rows[1:]} <= {"LABEL_0", "LABEL_1"}


def test_the_command_line_error_is_one_line_without_traceback(tiny_english_base, tmp_path):
    train = write_json(tmp_path / "train.json", [{"tokens": ["hi"], "tags": ["X"], "id": "t-0"}])
    result = run_script("run_slot.py", *training_args(tiny_english_base, train, tmp_path / "out"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {train}: record 0 (id 't-0'): field 'tags'[0]: 'X' is not a BIO tag (O, B-TYPE or I-TYPE)"
    )
    assert not (tmp_path / "out").exists()
