"""Answers that must come out exactly: planted-score models (tests/planted.py) through inference.py, run_swag.py and
run_qa.py, with every export mode, batch size and candidate count, and the flags that change an answer set away from
their defaults. The metrics the training scripts report are recomputed here from their prediction files, with code of
this file's own.

The data is made here: paragraphs of ordinary characters in which a few planted characters are placed. The paragraph
model prefers the paragraph with the densest 標; the span model scores 甲 (start) and 乙 (end) 8 each and 丙 / 丁 6 each,
so the answer is 甲...乙 when that span is allowed and wholly inside some window, else the short 丙...丁 placed early in
the paragraph.
"""

import collections
import csv
import random
import sys

import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

import inference
import run_qa
import run_swag
from cli import run_main
from conftest import read_json, write_json
from planted import save_choice_model, save_span_model
from features import DataCollatorForMultipleChoice
from utils_qa import prepare_multiple_choice_features

# The first lines of the Thousand Character Classic: none of the planted characters 甲乙丙丁標.
ORDINARY = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜金生麗水玉出崑岡劍號巨闕珠稱夜光果珍李柰菜重芥薑海鹹河淡鱗潛羽翔龍師火帝鳥官人皇"
QUESTION = "問題"  # 2 tokens: with --max_seq_length 64 a window holds 64 - 2 - 3 = 59 paragraph tokens
WINDOW_FLAGS = ["--max_seq_length", "64", "--doc_stride", "16", "--max_question_length", "8"]
ROOM = 59
ANSWER_TOKENS = 9  # 甲, 7 ordinary characters, 乙


def ordinary(length, seed):
    generator = random.Random(seed)
    return "".join(generator.choice(ORDINARY) for _ in range(length))


def planted_paragraph(length, answer_at, markers, seed):
    """A paragraph of `length` characters with 甲..乙 (ANSWER_TOKENS long) from `answer_at`, a short 丙.丁 and
    `markers` 標, the last two within the first 20 characters (where a pair of 64 tokens still reads them).
    Returns (paragraph, the 甲..乙 answer, the 丙.丁 answer)."""
    short_at = 5 if answer_at >= 12 else answer_at + ANSWER_TOKENS + 2
    markers_at = 0 if answer_at >= 12 else short_at + 3
    characters = list(ordinary(length, seed))
    characters[markers_at : markers_at + markers] = "標" * markers
    characters[short_at], characters[short_at + 2] = "丙", "丁"
    characters[answer_at], characters[answer_at + ANSWER_TOKENS - 1] = "甲", "乙"
    paragraph = "".join(characters)
    assert len(paragraph) == length and paragraph.count("標") == markers
    return paragraph, paragraph[answer_at : answer_at + ANSWER_TOKENS], paragraph[short_at : short_at + 3]


# Where the answer of each question lies in its planted paragraph of 150 characters. The windows of WINDOW_FLAGS
# are [0, 59), [43, 102), [86, 145), [129, 150).
SPAN_PLACES = {
    "first-window": 20,
    "second-window-only": 70,  # beyond the first window: only the second one holds it
    "across-the-first-edge": 55,  # 甲 in the first window's last tokens, 乙 beyond it: whole only in the second
    "paragraph-end": 150 - ANSWER_TOKENS,  # the last characters of the last window
    "paragraph-start": 0,  # the paragraph's first character
}
CANDIDATE_COUNTS = {"first-window": 1, "second-window-only": 2, "across-the-first-edge": 4, "paragraph-end": 7,
                    "paragraph-start": 3}


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    """context.json, test.json, and what must come out: {id: (planted paragraph index, answer, short answer)}.

    The planted paragraph of each question has 4 標, its first other candidate 1 (a close second), the rest none;
    every candidate has a 甲..乙 answer of its own, so a wrong paragraph shows in the answer."""
    root = tmp_path_factory.mktemp("planted-data")
    context, questions, expected = [], [], {}
    for number, (name, answer_at) in enumerate(SPAN_PLACES.items()):
        planted_position = number % CANDIDATE_COUNTS[name]
        candidates = []
        for position in range(CANDIDATE_COUNTS[name]):
            if position == planted_position:
                paragraph, answer, short = planted_paragraph(150, answer_at, 4, seed=100 * number + position)
                expected[name] = (len(context), answer, short)
            else:
                paragraph, _, _ = planted_paragraph(150, 30, int(position == 0), seed=100 * number + position)
            candidates.append(len(context))
            context.append(paragraph)
        questions.append({"id": name, "question": QUESTION, "paragraphs": candidates})
    return {
        "context": write_json(root / "context.json", context),
        "test": write_json(root / "test.json", questions),
        "questions": questions,
        "paragraphs": context,
        "expected": expected,
    }


@pytest.fixture(scope="module")
def planted_models(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("planted-models")
    return {
        "paragraph-selection": save_choice_model(tiny_base, root / "paragraph-selection", marker="標"),
        "span-selection": save_span_model(
            tiny_base, root / "span-selection", start_scores={"甲": 8.0, "丙": 6.0}, end_scores={"乙": 8.0, "丁": 6.0}
        ),
    }


def infer(planted_models, data, output, *flags):
    return inference.main([
        "--context_file", str(data["context"]), "--test_file", str(data["test"]), "--output_file", str(output),
        "--mc_model", str(planted_models["paragraph-selection"]), "--qa_model", str(planted_models["span-selection"]),
        *WINDOW_FLAGS, *map(str, flags),
    ])


def read_csv_answers(path):
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "answer"]
    return dict(rows[1:])


# ---------------------------------------------------------------------------------------------------------------------
# The planted models themselves


def test_the_planted_models_score_as_designed(planted_models, planted_data, tokenizer):
    """The scores the other tests rely on, read straight from the models."""
    span_model = AutoModelForQuestionAnswering.from_pretrained(planted_models["span-selection"]).eval()
    encoded = tokenizer([QUESTION], ["天甲地乙丙人丁"], return_tensors="pt")
    with torch.no_grad():
        start, end = span_model(**encoded, return_dict=False)[:2]
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert dict(zip(tokens, start[0].tolist()))["甲"] == pytest.approx(8.0, abs=1e-4)
    assert dict(zip(tokens, start[0].tolist()))["丙"] == pytest.approx(6.0, abs=1e-4)
    assert dict(zip(tokens, end[0].tolist()))["乙"] == pytest.approx(8.0, abs=1e-4)
    assert sorted(round(x, 4) for x in start[0].tolist())[:-2] == [0.0] * (len(tokens) - 2)

    choice_model = AutoModelForMultipleChoice.from_pretrained(planted_models["paragraph-selection"]).eval()
    pairs = tokenizer([QUESTION] * 3, ["標標天地", "天地天地", "標天地天地天地"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = choice_model(**{name: tensor[None] for name, tensor in pairs.items()}).logits[0]
    assert logits[1] == 0.0 and logits[0] > logits[2] > 0.0


# ---------------------------------------------------------------------------------------------------------------------
# inference.py


@pytest.mark.parametrize("export", ["none", "torchscript", "torch_export"])
def test_inference_gives_exactly_the_planted_answers(planted_models, planted_data, tmp_path, export):
    """With every export and batch size, and with the background threads of a GPU run."""
    expected = {name: answer for name, (_, answer, _) in planted_data["expected"].items()}
    for batch_size, decoding in ((1, []), (5, []), (3, ["--overlap", "on"])):
        output = tmp_path / f"pred-{batch_size}.csv"
        answers = infer(planted_models, planted_data, output, "--export", export, "--batch_size", batch_size, *decoding)
        assert answers == expected
        assert read_csv_answers(output) == expected


def test_inference_max_answer_length_is_the_longest_span_allowed(planted_models, planted_data, tmp_path):
    expected = planted_data["expected"]
    allowed = infer(planted_models, planted_data, tmp_path / "9.csv", "--max_answer_length", ANSWER_TOKENS)
    assert allowed == {name: answer for name, (_, answer, _) in expected.items()}
    too_short = infer(planted_models, planted_data, tmp_path / "8.csv", "--max_answer_length", ANSWER_TOKENS - 1)
    assert too_short == {name: short for name, (_, _, short) in expected.items()}
    # A limit longer than any window changes nothing, and costs no memory (10**12 tokens would be terabytes).
    unlimited = infer(planted_models, planted_data, tmp_path / "huge.csv", "--max_answer_length", 10**12)
    assert unlimited == allowed


def test_inference_doc_stride_decides_whether_an_answer_across_a_window_edge_is_found(
    planted_models, planted_data, tmp_path
):
    """With a stride of 2 tokens, no window holds the 9 tokens of the answer across the first window's edge."""
    expected = planted_data["expected"]
    flags = ["--max_seq_length", "64", "--doc_stride"]
    answers = infer(planted_models, planted_data, tmp_path / "pred.csv", *flags, 2)
    for name, (_, answer, short) in expected.items():
        assert answers[name] == (short if name == "across-the-first-edge" else answer), name


def test_a_paragraph_of_one_character_has_its_one_span_as_the_answer(planted_models, tmp_path):
    """A one-character paragraph has exactly one valid span, itself: it is the answer (the span model's scores do not
    matter when there is nothing else)."""
    data = {
        "context": write_json(tmp_path / "context.json", ["天"]),
        "test": write_json(tmp_path / "test.json", [{"id": "q", "question": QUESTION, "paragraphs": [0]}]),
    }
    assert infer(planted_models, data, tmp_path / "pred.csv") == {"q": "天"}


def test_inference_max_seq_length_decides_what_paragraph_selection_reads(planted_models, tmp_path):
    """Candidate A has one 標 at its start; B has twenty beyond its first 59 tokens. At 64 tokens per pair only A's
    is read, so A wins; at 256, B's denser share wins."""
    a, answer_a, _ = planted_paragraph(150, 30, 1, seed=1)
    b, answer_b, _ = planted_paragraph(200, 30, 0, seed=2)
    b = b[:80] + "標" * 20 + b[100:]
    data = {
        "context": write_json(tmp_path / "context.json", [a, b]),
        "test": write_json(tmp_path / "test.json", [{"id": "q", "question": QUESTION, "paragraphs": [0, 1]}]),
    }
    assert infer(planted_models, data, tmp_path / "64.csv") == {"q": answer_a}
    assert infer(planted_models, data, tmp_path / "256.csv", "--max_seq_length", 256) == {"q": answer_b}


def test_inference_max_question_length_changes_what_a_pair_is_made_of(planted_models, tmp_path):
    """A has 1 標 in 10 paragraph tokens, B 5 in 100. A 200-character question without 標 dilutes both: cut to 4
    tokens, A's share is higher (1/17 > 5/107); cut to 96, B's is (5/199 > 1/109)."""
    a = "標甲" + ordinary(7, seed=3) + "乙"
    b, answer_b, _ = planted_paragraph(100, 30, 5, seed=4)
    data = {
        "context": write_json(tmp_path / "context.json", [a, b]),
        "test": write_json(tmp_path / "test.json", [{"id": "q", "question": ordinary(200, 5), "paragraphs": [0, 1]}]),
    }
    flags = ["--max_seq_length", "256", "--doc_stride", "16", "--max_question_length"]
    assert infer(planted_models, data, tmp_path / "4.csv", *flags, 4) == {"q": a[1:]}
    assert infer(planted_models, data, tmp_path / "96.csv", *flags, 96) == {"q": answer_b}


# ---------------------------------------------------------------------------------------------------------------------
# run_swag.py and run_qa.py


def call(main, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["script", *map(str, args)])
    run_main(main)


def training_script_flags(model, data, output_dir):
    """run_swag.py's flags; run_qa.py adds --doc_stride."""
    return ["--model_name_or_path", model, "--context_file", data["context"], "--output_dir", output_dir,
            "--report_to", "none", "--per_device_eval_batch_size", "3", "--max_seq_length", "64",
            "--max_question_length", "8"]


@pytest.fixture(scope="module")
def labelled(planted_data, tmp_path_factory):
    """The planted questions with labels: "relevant" is the planted paragraph except for one question (so paragraph
    selection is right on 4 of 5); the gold answer is the planted one for two questions, the short one for two
    (wrong), and a part of the planted answer for one (F1 between 0 and 1)."""
    records, gold_answers = [], {}
    for number, question in enumerate(planted_data["questions"]):
        planted_index, answer, short = planted_data["expected"][question["id"]]
        relevant = planted_index
        if question["id"] == "second-window-only":
            relevant = next(p for p in question["paragraphs"] if p != planted_index)
        paragraph = planted_data["paragraphs"][relevant]
        gold = [answer, short, answer[:4], answer, short][number]
        if relevant != planted_index:
            gold = paragraph[30 : 30 + ANSWER_TOKENS]
        start = paragraph.index(gold)
        records.append({**question, "relevant": relevant, "answer": {"text": gold, "start": start}})
        gold_answers[question["id"]] = gold
    path = write_json(tmp_path_factory.mktemp("labelled") / "valid.json", records)
    return path, records, gold_answers


def test_run_swag_predicts_the_planted_paragraphs(planted_models, planted_data, tmp_path, monkeypatch):
    call(run_swag.main, monkeypatch, "--do_predict", "--test_file", planted_data["test"],
         *training_script_flags(planted_models["paragraph-selection"], planted_data, tmp_path))
    chosen = {q["id"]: q["relevant"] for q in read_json(tmp_path / "test_with_relevant.json")}
    assert chosen == {name: index for name, (index, _, _) in planted_data["expected"].items()}


def test_run_swag_accuracy_is_recomputed_from_its_predictions(planted_models, planted_data, labelled, tmp_path,
                                                              monkeypatch):
    path, records, _ = labelled
    call(run_swag.main, monkeypatch, "--do_eval", "--validation_file", path,
         *training_script_flags(planted_models["paragraph-selection"], planted_data, tmp_path))
    predictions = read_json(tmp_path / "eval_predictions.json")
    assert predictions == {name: index for name, (index, _, _) in planted_data["expected"].items()}
    right = sum(predictions[record["id"]] == record["relevant"] for record in records)
    reported = read_json(tmp_path / "eval_results.json")["eval_accuracy"]
    assert reported == pytest.approx(right / len(records)) == pytest.approx(4 / 5)


def char_f1(prediction, gold):
    """Characters shared as a multiset, precision and recall over the two strings (answers here have no spaces or
    punctuation, so nothing needs normalising)."""
    shared = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(prediction), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def test_run_qa_exact_match_and_f1_are_recomputed_from_its_predictions(planted_models, planted_data, labelled,
                                                                       tmp_path, monkeypatch):
    path, records, gold_answers = labelled
    call(run_qa.main, monkeypatch, "--do_eval", "--validation_file", path, "--n_best_size", 3, "--doc_stride", 16,
         *training_script_flags(planted_models["span-selection"], planted_data, tmp_path))
    predictions = read_json(tmp_path / "eval_predictions.json")
    # Span selection reads the gold paragraph: the planted answer there, and the answer of the other paragraph.
    for record in records:
        paragraph = planted_data["paragraphs"][record["relevant"]]
        assert predictions[record["id"]] == paragraph[paragraph.index("甲") : paragraph.index("乙") + 1]
    exact = [predictions[i] == gold for i, gold in gold_answers.items()]
    f1 = [char_f1(predictions[i], gold) for i, gold in gold_answers.items()]
    results = read_json(tmp_path / "eval_results.json")
    assert sum(exact) == 3  # two planted answers, and the other paragraph's answer of the mislabelled question
    assert results["eval_exact_match"] == pytest.approx(100 * sum(exact) / len(exact))
    assert results["eval_f1"] == pytest.approx(100 * sum(f1) / len(f1))
    assert 0 < f1[2] < 1

    # The n-best list of each question: exactly --n_best_size spans, best first, with their planted scores.
    nbest = read_json(tmp_path / "eval_nbest_predictions.json")
    first = nbest["first-window"]
    assert [round(candidate["score"], 3) for candidate in first] == [16.0, 14.0, 12.0]
    paragraph = planted_data["paragraphs"][planted_data["expected"]["first-window"][0]]
    assert [candidate["text"] for candidate in first] == [
        paragraph[paragraph.index("甲") : paragraph.index("乙") + 1],
        paragraph[paragraph.index("丙") : paragraph.index("乙") + 1],
        paragraph[paragraph.index("丙") : paragraph.index("丁") + 1],
    ]


def test_run_qa_predict_writes_the_planted_answers(planted_models, planted_data, tmp_path, monkeypatch):
    with_relevant = [{**q, "relevant": planted_data["expected"][q["id"]][0]} for q in planted_data["questions"]]
    test_file = write_json(tmp_path / "test_with_relevant.json", with_relevant)
    call(run_qa.main, monkeypatch, "--do_predict", "--test_file", test_file, "--max_answer_length", ANSWER_TOKENS - 1,
         "--doc_stride", 16,
         *training_script_flags(planted_models["span-selection"], planted_data, tmp_path / "out"))
    # --max_answer_length is one token short of the planted answers: the short ones come out.
    assert read_csv_answers(tmp_path / "out" / "pred.csv") == {
        name: short for name, (_, _, short) in planted_data["expected"].items()
    }
    # With a stride of 2 tokens, no window holds the answer across the first window's edge.
    call(run_qa.main, monkeypatch, "--do_predict", "--test_file", test_file, "--doc_stride", 2,
         *training_script_flags(planted_models["span-selection"], planted_data, tmp_path / "stride"))
    assert read_csv_answers(tmp_path / "stride" / "pred.csv") == {
        name: short if name == "across-the-first-edge" else answer
        for name, (_, answer, short) in planted_data["expected"].items()
    }


def test_filler_candidates_count_neither_in_the_loss_nor_in_the_choice(planted_models, tokenizer, tmp_path):
    """A question with 3 candidates and one with 1, in one batch: the loss is the cross-entropy over each question's
    real candidates only, computed here pair by pair."""
    model = AutoModelForMultipleChoice.from_pretrained(planted_models["paragraph-selection"]).eval()
    examples = {"question": [QUESTION, QUESTION], "candidates": [["標標天地", "天地天地", "標天地天"], ["天標"]],
                "label": [2, 0]}
    features = prepare_multiple_choice_features(examples, tokenizer, max_seq_length=32)
    batch = DataCollatorForMultipleChoice(tokenizer)([{k: features[k][i] for k in features} for i in range(2)])

    def alone(question_index, candidate):
        pair = tokenizer([QUESTION], [examples["candidates"][question_index][candidate]], return_tensors="pt")
        with torch.no_grad():
            return model(**{name: tensor[None] for name, tensor in pair.items()}).logits[0, 0]

    first = torch.stack([alone(0, c) for c in range(3)])
    expected = (torch.logsumexp(first, 0) - first[2] + 0.0) / 2  # the second question's loss is log(1) = 0
    trainer = run_swag.MultipleChoiceTrainer(
        model=model, args=run_swag.ParagraphSelectionTrainingArguments(output_dir=str(tmp_path), report_to="none")
    )
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert outputs.logits.argmax(dim=1).tolist() == [0, 0]
    assert outputs.logits[1, 1:].max() < -1e30
