"""Intent and slot data: validation of the files, the slot tags' alignment with word pieces (and back), the metrics
against hand-computed values, and the submission CSVs."""

import json

import pytest
from transformers import AutoTokenizer

from adl_data import check_known_labels, load_intent_utterances, load_slot_utterances
from cli import InputError
from outputs import write_predictions_csv
import numpy as np
import torch
from transformers import EvalPrediction

from run_intent import prepare_intent_features
from run_slot import (IGNORED_LABEL, compute_slot_metrics, predicted_label_ids, prepare_slot_features,
                      score_predictions, tags_per_word)

TAGS = ["B-first_name", "B-last_name", "B-time", "I-last_name", "I-time", "O"]
LABEL2ID = {tag: index for index, tag in enumerate(TAGS)}


@pytest.fixture(scope="module")
def english_tokenizer(tiny_english_base):
    # As run_slot.py loads it.
    return AutoTokenizer.from_pretrained(tiny_english_base, add_prefix_space=True)


def write(tmp_path, value, name="data.json"):
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


def pieces_and_tags(features, tokenizer, index=0):
    """(piece, tag name or None for IGNORED_LABEL) for every position of utterance `index`."""
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"][index])
    return [(t, None if label == IGNORED_LABEL else TAGS[label]) for t, label in zip(tokens, features["labels"][index])]


def misleading_predictions(labels):
    """The gold label on first pieces and a wrong one everywhere else, as a model's predicted label ids."""
    return [[label if label != IGNORED_LABEL else LABEL2ID["B-time"] for label in row] for row in labels]


# --- Slot tags on word pieces, and back -----------------------------------------------------------------------------

# "lauderdale" is not in the vocabulary: 10 pieces; "☃" has no token: [UNK]; "" has no piece at all: given as [UNK].
UTTERANCE = {
    "tokens": ["i", "want", "lauderdale", "☃", "", "at", "10:30am"],
    "tags": ["O", "O", "B-first_name", "B-last_name", "I-last_name", "O", "B-time"],
}


def test_each_tag_goes_on_the_first_piece_of_its_word(english_tokenizer):
    examples = {key: [value] for key, value in UTTERANCE.items()}
    features = prepare_slot_features(examples, english_tokenizer, max_seq_length=128, label2id=LABEL2ID)
    assert pieces_and_tags(features, english_tokenizer) == [
        ("[CLS]", None),
        ("i", "O"),
        ("want", "O"),
        ("l", "B-first_name"),
        *[(f"##{ch}", None) for ch in "auderdale"],
        ("[UNK]", "B-last_name"),
        ("[UNK]", "I-last_name"),
        ("at", "O"),
        ("10", "B-time"),
        (":", None),
        ("30am", None),
        ("[SEP]", None),
    ]
    assert features["first_pieces"] == [[1, 2, 3, 13, 14, 15, 16]]
    predicted = misleading_predictions(features["labels"])
    assert tags_per_word(predicted, features["first_pieces"], TAGS) == [UTTERANCE["tags"]]


def test_words_cut_off_by_truncation_get_O_and_no_label(english_tokenizer):
    examples = {key: [value, value[:2]] for key, value in UTTERANCE.items()}
    features = prepare_slot_features(examples, english_tokenizer, max_seq_length=8, label2id=LABEL2ID)
    # [CLS] i want l ##a ##u ##d [SEP]: "lauderdale" keeps its first piece and its tag; the words after it are cut.
    assert pieces_and_tags(features, english_tokenizer) == [
        ("[CLS]", None), ("i", "O"), ("want", "O"), ("l", "B-first_name"),
        ("##a", None), ("##u", None), ("##d", None), ("[SEP]", None),
    ]  # fmt: skip
    assert features["first_pieces"] == [[1, 2, 3, -1, -1, -1, -1], [1, 2]]
    predicted = misleading_predictions(features["labels"])
    assert tags_per_word(predicted, features["first_pieces"], TAGS) == [
        ["O", "O", "B-first_name", "O", "O", "O", "O"],
        ["O", "O"],
    ]


def test_test_utterances_get_first_pieces_but_no_labels(english_tokenizer):
    features = prepare_slot_features({"tokens": [["at", "10:30am", ""]]}, english_tokenizer, 128, label2id=LABEL2ID)
    assert "labels" not in features and features["first_pieces"] == [[1, 2, 5]]
    assert tags_per_word([[0, 5, 2, 0, 0, 3, 0]], features["first_pieces"], TAGS) == [["O", "B-time", "I-last_name"]]


def test_byte_level_bpe_words_start_with_a_space_marker(tmp_path):
    """roberta-base style: with add_prefix_space (run_slot.py sets it) every word's first piece carries the word-start
    marker "Ġ", as in pretraining; the empty word becomes <unk>."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["i want a table at noon"] * 5, vocab_size=280, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(tmp_path))
    RobertaTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, add_prefix_space=True)
    examples = {"tokens": [["i", "want", "", "tables"]], "tags": [["O", "O", "B-time", "I-time"]]}
    features = prepare_slot_features(examples, tokenizer, 128, label2id=LABEL2ID)
    assert pieces_and_tags(features, tokenizer) == [
        ("<s>", None), ("Ġ", "O"), ("i", None), ("Ġwant", "O"), ("<unk>", "B-time"), ("Ġtable", "I-time"), ("s", None),
        ("</s>", None),
    ]  # fmt: skip


# --- Metrics --------------------------------------------------------------------------------------------------------


def test_slot_metrics_against_hand_computed_values():
    gold = [["O", "B-date", "I-date", "O"], ["B-people", "O"], ["O", "B-time"], ["B-date", "I-date"]]
    predicted = [["O", "B-date", "I-date", "O"], ["B-people", "B-people"], ["O", "I-time"], ["B-date", "O"]]
    metrics = compute_slot_metrics(predicted, gold)
    # Joint: only the first utterance is all right. Words: 4 + 1 + 1 + 1 right of 10.
    assert metrics["joint_accuracy"] == pytest.approx(1 / 4)
    assert metrics["token_accuracy"] == pytest.approx(7 / 10)
    # Gold entities: date 1-2, people 0, time 1, date 0-1 (4). Predicted, strict IOB2: date 1-2 (right), people 0
    # (right), people 1 (wrong), date 0 (wrong span); "I-time" without "B-time" starts no entity. 2 right of 4 and 4.
    assert metrics["entity_precision"] == pytest.approx(2 / 4)
    assert metrics["entity_recall"] == pytest.approx(2 / 4)
    assert metrics["entity_f1"] == pytest.approx(2 / 4)


def test_slot_metrics_when_nothing_is_predicted():
    metrics = compute_slot_metrics([["O", "O"], ["O"]], [["B-time", "O"], ["O"]])
    assert metrics == {"joint_accuracy": 0.5, "token_accuracy": 2 / 3, "entity_precision": 0.0, "entity_recall": 0.0,
                       "entity_f1": 0.0}  # fmt: skip


def test_evaluation_reads_the_predicted_label_of_each_words_first_piece():
    """What the Trainer hands run_slot.py's compute_metrics: the label ids predicted_label_ids keeps (the most likely
    label per position), read back one tag per word (first pieces at 1 and 3 of utterance 0, 1 of utterance 1) and
    scored against the gold tags."""
    # 9 at the most likely label of each position, 0 elsewhere: 6 labels, 2 utterances of 4 positions.
    logits = 9.0 * torch.nn.functional.one_hot(torch.tensor([[5, 2, 0, 4], [0, 5, 1, 1]]), 6).float()
    predicted = predicted_label_ids(logits, None)
    assert predicted.tolist() == [[5, 2, 0, 4], [0, 5, 1, 1]]
    metrics = score_predictions(EvalPrediction(predictions=predicted.numpy(), label_ids=None), [[1, 3], [1, -1]],
                                [["B-time", "I-time"], ["O", "B-last_name"]], TAGS)
    # Tags B-time I-time and O O (the second word cut off): 3 of 4 words, 1 of 2 utterances, 1 entity of 1 and 2.
    assert metrics == {"joint_accuracy": 0.5, "token_accuracy": 0.75, "entity_precision": 1.0, "entity_recall": 0.5,
                       "entity_f1": pytest.approx(2 / 3)}  # fmt: skip


def test_intent_features_are_the_tokenizers_own_with_the_intent_ids(english_tokenizer):
    examples = {"text": ["book a table", "what time is it now please"], "intent": ["book", "time"]}
    features = prepare_intent_features(examples, english_tokenizer, 6, label2id={"time": 0, "book": 1})
    assert features["input_ids"] == english_tokenizer(examples["text"], truncation=True, max_length=6)["input_ids"]
    assert [len(ids) for ids in features["input_ids"]] == [5, 6]  # [CLS] book a table [SEP], and one cut to 6
    assert features["labels"] == [1, 0]
    padded = prepare_intent_features({"text": ["hi"]}, english_tokenizer, 8, pad_to_max_length=True,
                                     label2id={"time": 0})
    unpadded = english_tokenizer("hi")["input_ids"]  # [CLS] h ##i [SEP] in this vocabulary
    assert len(unpadded) < 8
    assert padded["input_ids"][0] == unpadded + [english_tokenizer.pad_token_id] * (8 - len(unpadded))
    assert "labels" not in padded
    # Padding on, truncation stays on (the tokenizer truncates by itself only when nothing is padded).
    cut = prepare_intent_features({"text": [examples["text"][1]]}, english_tokenizer, 6, pad_to_max_length=True)
    assert cut["input_ids"] == [features["input_ids"][1]]
    assert "labels" not in prepare_intent_features(examples, english_tokenizer, 6)


def test_slot_features_padded_on_request_only(english_tokenizer):
    """Unpadded, each utterance has its own length; padded, every one has max_seq_length tokens, and the labels too
    (IGNORED_LABEL on the padding), the first pieces unchanged."""
    examples = {"tokens": [["i", "want"], ["at", "noon", "please"]], "tags": [["O", "O"], ["O", "B-time", "O"]]}
    unpadded = prepare_slot_features(examples, english_tokenizer, 16, label2id=LABEL2ID)
    lengths = [len(ids) for ids in unpadded["input_ids"]]
    assert lengths == [len(ids) for ids in english_tokenizer(examples["tokens"], is_split_into_words=True)["input_ids"]]
    assert lengths[0] != lengths[1] and max(lengths) < 16
    padded = prepare_slot_features(examples, english_tokenizer, 16, pad_to_max_length=True, label2id=LABEL2ID)
    assert [len(ids) for ids in padded["input_ids"]] == [16, 16] and [len(row) for row in padded["labels"]] == [16, 16]
    assert padded["first_pieces"] == unpadded["first_pieces"]
    for row, length in zip(padded["labels"], lengths):
        assert row[length:] == [IGNORED_LABEL] * (16 - length)
    # Padding on, truncation stays on: 4 tokens, the words past them cut off (first piece -1).
    cut = prepare_slot_features(examples, english_tokenizer, 4, pad_to_max_length=True, label2id=LABEL2ID)
    assert [len(ids) for ids in cut["input_ids"]] == [4, 4] and cut["first_pieces"][1][2] == -1


# --- Submission CSVs ------------------------------------------------------------------------------------------------


def test_submission_csvs_have_the_header_and_every_id_once_in_order(tmp_path):
    ids = ["test-2", "test-0", "test-1"]
    write_predictions_csv(tmp_path / "slot.csv", ids, {"test-0": "O", "test-1": "O B-time I-time", "test-2": "B-date"},
                          column="tags")  # fmt: skip
    written = (tmp_path / "slot.csv").read_text(encoding="utf-8")
    assert written == "id,tags\ntest-2,B-date\ntest-0,O\ntest-1,O B-time I-time\n"
    write_predictions_csv(tmp_path / "intent.csv", ids[:2], {"test-0": "greeting", "test-2": "a,b"}, column="intent")
    assert (tmp_path / "intent.csv").read_text(encoding="utf-8") == 'id,intent\ntest-2,"a,b"\ntest-0,greeting\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["intent.csv", "slot.csv"]  # no temporary file left


# --- Validation of the files ----------------------------------------------------------------------------------------


def slot_record(**changes):
    return {"tokens": ["book", "it", "for", "noon"], "tags": ["O", "O", "O", "B-time"], "id": "s1", **changes}


def intent_record(**changes):
    return {"text": "hello there", "intent": "greeting", "id": "i1", **changes}


BAD_SLOT_RECORDS = [
    ("tokens and tags of different lengths", slot_record(tags=["O", "O", "B-time"]), "field 'tags': 3 tags for 4 tokens (one tag per token)"),
    ("no words", slot_record(tokens=[], tags=[]), "field 'tokens': is empty"),
    ("only blank words", slot_record(tokens=["", " "], tags=["O", "O"]), "field 'tokens': is empty (2 blank words)"),
    ("a word not a string", slot_record(tokens=["book", 7, "for", "noon"]), "field 'tokens'[1]: expected a string, found a number (7)"),
    ("tokens a string", slot_record(tokens="book it"), "field 'tokens': expected a list, found a string ('book it')"),
    ("not a BIO tag", slot_record(tags=["O", "O", "O", "X-time"]), "field 'tags'[3]: 'X-time' is not a BIO tag (O, B-TYPE or I-TYPE)"),
    ("a tag without type", slot_record(tags=["O", "O", "O", "B-"]), "field 'tags'[3]: 'B-' is not a BIO tag (O, B-TYPE or I-TYPE)"),
    ("missing tags", {"tokens": ["hi"], "id": "s1"}, "field 'tags': missing"),
]  # fmt: skip


@pytest.mark.parametrize("case,record,message", BAD_SLOT_RECORDS, ids=[case[0] for case in BAD_SLOT_RECORDS])
def test_bad_slot_records(case, record, message, tmp_path):
    path = write(tmp_path, [slot_record(id="s0"), record])
    with pytest.raises(InputError) as error:
        load_slot_utterances(path, need_tags=True)
    assert str(error.value) == f"{path}: record 1 (id 's1'): {message}"


BAD_INTENT_RECORDS = [
    ("empty text", intent_record(text="  "), "field 'text': is empty"),
    ("empty intent", intent_record(intent=""), "field 'intent': is empty"),
    ("intent a number", intent_record(intent=3), "field 'intent': expected a string, found a number (3)"),
    ("duplicate id", intent_record(id="i0"), "field 'id': duplicate of record 0"),
]


@pytest.mark.parametrize("case,record,message", BAD_INTENT_RECORDS, ids=[case[0] for case in BAD_INTENT_RECORDS])
def test_bad_intent_records(case, record, message, tmp_path):
    path = write(tmp_path, [intent_record(id="i0"), record])
    with pytest.raises(InputError) as error:
        load_intent_utterances(path, need_intent=True)
    assert str(error.value) == f"{path}: record 1 (id '{record['id']}'): {message}"


def test_fields_a_use_does_not_need_are_not_read(tmp_path):
    path = write(tmp_path, [slot_record(tags="not read"), {"tokens": ["", "hi"], "id": "s2"}])
    assert load_slot_utterances(path) == [{"id": "s1", "tokens": ["book", "it", "for", "noon"]},
                                          {"id": "s2", "tokens": ["", "hi"]}]  # fmt: skip
    path = write(tmp_path, [{"text": "hi", "id": "t0"}])
    assert load_intent_utterances(path) == [{"id": "t0", "text": "hi"}]
    with pytest.raises(InputError, match="contains no utterances"):
        load_intent_utterances(write(tmp_path, "[]"))


def test_labels_outside_the_label_set_are_named_by_record_and_position(tmp_path):
    records = [slot_record(id="s0"), slot_record(tags=["O", "O", "B-date", "I-date"])]
    with pytest.raises(InputError) as error:
        check_known_labels("valid.json", records, "tags", TAGS, "the training file train.json")
    assert str(error.value) == (
        "valid.json: record 1 (id 's1'): field 'tags'[2]: 'B-date' is not among the 6 labels of the training file "
        "train.json, so no model trained on it can predict it"
    )
    check_known_labels("valid.json", [intent_record()], "intent", ["greeting"], "the model m")
    with pytest.raises(InputError, match=r"record 0 \(id 'i1'\): field 'intent': 'greeting' is not among the 1 labels"):
        check_known_labels("valid.json", [intent_record()], "intent", ["weather"], "the model m")
