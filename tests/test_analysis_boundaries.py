"""The error analysis (analysis.py) on answers at the boundary of each category: equal to the gold answer only after
normalisation (full-width / half-width, case, punctuation, spaces), the right text in another candidate paragraph,
spans that touch the gold answer without overlapping it, spans that overlap it by one character, and spans that share
its characters elsewhere. Checked on analysis.category directly, then through inference.py with planted models,
where summary.md's table, the metrics JSON's categories and EM / F1 are recomputed from errors.jsonl by this file's
own code.

The rule (analysis.category): exact match after normalisation comes first ("right", whatever the paragraph), then
another paragraph than the gold one ("wrong paragraph"), then character offsets overlapping the gold answer's
("partial overlap"), else "wrong span".
"""

import collections
import json
import re
import unicodedata

import pytest

import analysis
import inference
from conftest import read_json, write_json
from planted import save_marker_choice_model, save_span_model

CATEGORIES = ["right", "wrong paragraph", "partial overlap", "wrong span"]


# ---------------------------------------------------------------------------------------------------------------------
# analysis.category on its boundaries


def gold(text, start, relevant=3):
    return {"relevant": relevant, "answer": {"text": text, "start": start}}


@pytest.mark.parametrize("gold_text,predicted", [
    ("臺北101", "臺北１０１"),  # full-width digits
    ("ABC公司", "abc公司"),  # case
    ("臺北市", "「臺北市」。"),  # punctuation around it
    ("臺北 市", "臺北市"),  # spaces
    ("Ｎｏ. 5", "no5"),  # full-width letters, case, punctuation and a space at once
])
def test_an_answer_equal_to_the_gold_after_normalisation_is_right_wherever_it_lies(gold_text, predicted):
    question = gold(gold_text, 10)
    for paragraph, start in ((3, 10), (3, 40), (7, 10), (7, 40), (None, -1)):
        assert analysis.category(question, paragraph, start, start + len(predicted), predicted) == "right"


def test_the_right_text_from_another_candidate_paragraph_is_right_not_a_wrong_paragraph():
    question = gold("乙丙", 5)
    assert analysis.category(question, 4, 5, 7, "乙丙") == "right"
    assert analysis.category(question, 4, 0, 2, "乙丙") == "right"


def test_another_paragraph_comes_before_any_overlap_of_offsets():
    """The same offsets as the gold answer, in another paragraph, with other text: a wrong paragraph."""
    question = gold("乙丙", 5)
    assert analysis.category(question, 4, 5, 7, "甲丁") == "wrong paragraph"
    assert analysis.category(question, 4, 4, 8, "甲乙丙丁") == "wrong paragraph"
    assert analysis.category(question, None, -1, -1, "") == "wrong paragraph"  # no answer at all


@pytest.mark.parametrize("start,end,expected", [
    (3, 5, "wrong span"),  # ends where the gold answer starts
    (7, 9, "wrong span"),  # starts where it ends
    (2, 6, "partial overlap"),  # its last character is the gold answer's first
    (6, 9, "partial overlap"),  # its first character is the gold answer's last
    (5, 6, "partial overlap"),  # one character inside
    (0, 12, "partial overlap"),  # holds the gold answer and more
    (0, 3, "wrong span"),  # disjoint
])
def test_offsets_decide_between_partial_overlap_and_wrong_span(start, end, expected):
    question = gold("乙丙", 5)  # characters [5, 7)
    text = "天地玄黃宇宙洪荒日月盈昃"[start:end]
    assert analysis.category(question, 3, start, end, text) == expected


def test_shared_characters_at_other_offsets_are_no_overlap():
    """The gold answer's characters occur in the prediction (F1 > 0) but elsewhere in the paragraph."""
    question = gold("乙丙", 5)
    assert analysis.category(question, 3, 0, 3, "乙丙甲") == "wrong span"


# ---------------------------------------------------------------------------------------------------------------------
# Through inference.py: errors.jsonl, summary.md and the metrics JSON agree, recomputed here

# Planted models: paragraph selection reads the candidate holding 標; the span model's best span runs from 甲 to 乙,
# or to 。 when there is one after 乙 (end score 9 > 8).
# Each case: (candidates, the gold answer's start and text in the first candidate, the predicted answer, its
# category). With two candidates the second holds 標: the answer comes from it, the gold one is the first.
CASES = {
    "right-exactly": (["天甲地玄乙黃"], 1, "甲地玄乙", "甲地玄乙", "right"),
    "right-after-normalisation-in-place": (["天甲地玄乙。黃"], 1, "甲地玄乙", "甲地玄乙。", "right"),
    "right-after-normalisation-in-another-candidate": (
        ["宇甲ab C乙宙", "標甲ＡＢ， c乙地"], 1, "甲ab C乙", "甲ＡＢ， c乙", "right"),
    "same-text-in-another-candidate": (["宇宙甲地乙", "標甲地乙天"], 2, "甲地乙", "甲地乙", "right"),
    "wrong-paragraph-at-the-gold-offsets": (["天甲宇宙乙地", "標甲地玄乙天"], 1, "甲宇宙乙", "甲地玄乙",
                                            "wrong paragraph"),
    "ends-where-the-gold-starts": (["天甲地乙玄黃宇"], 4, "玄黃", "甲地乙", "wrong span"),
    "starts-where-the-gold-ends": (["天地甲玄乙黃"], 0, "天地", "甲玄乙", "wrong span"),
    "overlaps-by-its-last-character": (["天甲地乙玄黃"], 3, "乙玄", "甲地乙", "partial overlap"),
    "overlaps-by-its-first-character": (["天地玄甲黃宇乙"], 1, "地玄甲", "甲黃宇乙", "partial overlap"),
    "shares-characters-elsewhere": (["甲地乙天地"], 4, "地", "甲地乙", "wrong span"),
    "disjoint": (["天甲地乙玄黃宇宙"], 6, "宇宙", "甲地乙", "wrong span"),
}


@pytest.fixture(scope="module")
def analysed(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis-boundaries")
    mc = save_marker_choice_model(tiny_base, root / "mc", {"標": 5.0})
    qa = save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0, "。": 9.0})
    context, questions = [], []
    for name, (candidates, start, text, _, _) in CASES.items():
        relevant = len(context)
        indices = list(range(len(context), len(context) + len(candidates)))[::-1]  # listed with 標's first
        context += candidates
        assert context[relevant][start : start + len(text)] == text
        questions.append({"id": name, "question": "問題", "paragraphs": indices, "relevant": relevant,
                          "answer": {"text": text, "start": start}})
    files = {"context": write_json(root / "context.json", context), "test": write_json(root / "valid.json", questions)}
    answers = inference.main(["--context_file", str(files["context"]), "--test_file", str(files["test"]),
                              "--output_file", str(root / "pred.csv"), "--mc_model", str(mc), "--qa_model", str(qa),
                              "--analysis_dir", str(root / "analysis")])
    return root, context, questions, answers


def read_errors(root):
    return [json.loads(line) for line in (root / "analysis" / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def normalized(text):
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def char_f1(prediction, gold_text):
    prediction, gold_text = normalized(prediction), normalized(gold_text)
    if not prediction or not gold_text:
        return float(prediction == gold_text)
    shared = sum((collections.Counter(prediction) & collections.Counter(gold_text)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(prediction), shared / len(gold_text)
    return 2 * precision * recall / (precision + recall)


def summary_table(summary):
    """{category: (questions, share)} from summary.md's markdown table."""
    lines = summary.splitlines()
    header = lines.index("| category | questions | share |")
    assert re.fullmatch(r"\|-+\|-+:\|-+:\|", lines[header + 1])
    table = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        name, count, share = (cell.strip() for cell in line.strip("|").split("|"))
        table[name] = (int(count), share)
    return table


def test_each_boundary_answer_gets_its_category_in_errors_jsonl(analysed):
    root, context, questions, answers = analysed
    assert answers == {name: case[3] for name, case in CASES.items()}
    records = read_errors(root)
    assert [r["id"] for r in records] == list(CASES)
    assert {r["id"]: r["category"] for r in records} == {name: case[4] for name, case in CASES.items()}
    by_id = {q["id"]: q for q in questions}
    for record in records:
        question = by_id[record["id"]]
        assert record["gold_paragraph"] == question["relevant"] and record["gold_answer"] == question["answer"]
        # The prediction's text is where errors.jsonl says it is, in the paragraph it says.
        predicted = record["prediction"]
        paragraph = context[record["answer_paragraph"]]
        assert paragraph[predicted["start"] : predicted["start"] + len(predicted["text"])] == predicted["text"]
        expected_paragraph = question["paragraphs"][0]  # the one holding 標, or the only one
        assert record["answer_paragraph"] == record["paragraph_selection"] == expected_paragraph
    same_text = next(r for r in records if r["id"] == "same-text-in-another-candidate")
    assert same_text["answer_paragraph"] != same_text["gold_paragraph"]


def test_summary_table_metrics_categories_and_em_f1_agree_with_errors_jsonl(analysed):
    root, _, questions, _ = analysed
    records = read_errors(root)
    counts = collections.Counter(r["category"] for r in records)
    assert counts == {"right": 4, "wrong paragraph": 1, "partial overlap": 2, "wrong span": 4}

    summary = (root / "analysis" / "summary.md").read_text(encoding="utf-8")
    table = summary_table(summary)
    assert list(table) == CATEGORIES
    assert table == {name: (counts[name], f"{100 * counts[name] / len(records):.1f}%") for name in CATEGORIES}

    metrics = read_json(root / "pred.csv.metrics.json")
    assert metrics["categories"] == {name: counts[name] for name in CATEGORIES}
    exact = [float(normalized(r["prediction"]["text"]) == normalized(r["gold_answer"]["text"])) for r in records]
    f1 = [char_f1(r["prediction"]["text"], r["gold_answer"]["text"]) for r in records]
    for record, e, f in zip(records, exact, f1):
        assert record["exact_match"] == pytest.approx(100 * e) and record["f1"] == pytest.approx(100 * f), record["id"]
    assert sum(exact) == counts["right"] == 4
    assert metrics["questions"] == len(records) == len(questions)
    assert metrics["exact_match"] == pytest.approx(100 * sum(exact) / len(records))
    assert metrics["f1"] == pytest.approx(100 * sum(f1) / len(records))
    assert (f"exact match {100 * sum(exact) / len(records):.2f}, F1 {100 * sum(f1) / len(records):.2f} (in [0, 100])"
            in summary)
    # "shares-characters-elsewhere" has F1 > 0 and no overlap: categories follow offsets, F1 follows characters.
    shares = next(r for r in records if r["id"] == "shares-characters-elsewhere")
    assert shares["f1"] > 0 and shares["category"] == "wrong span"


def test_answer_metrics_of_hand_made_answers_count_each_category_and_no_answer():
    """answer_metrics on a Prediction made by hand (no model): 5 labelled questions, answers from the gold paragraph
    (right, partial overlap, wrong span), from another paragraph, and none at all (a wrong paragraph: None is no
    paragraph). The second question's n-best has the gold answer second: only the first counts."""
    from decoding import Answer

    def question(qid, relevant, text, start):
        return {"id": qid, "question": "?", "paragraphs": [relevant], "relevant": relevant,
                "answer": {"text": text, "start": start}}

    questions = [question("a", 0, "景宗", 0), question("b", 0, "景宗", 0), question("c", 2, "在位四年", 2),
                 question("d", 2, "在位", 2), question("e", 0, "景宗", 0)]
    nbest = [[Answer(0, 0, 2, "景宗", -0.1)], [Answer(1, 0, 2, "臺北", -0.2), Answer(0, 0, 2, "景宗", -0.5)],
             [Answer(2, 4, 7, "四年。", -0.3)], [Answer(2, 5, 7, "年。", -0.4)], []]
    prediction = inference.Prediction(
        answers={"a": "景宗", "b": "臺北", "c": "四年。", "d": "年。", "e": ""}, answer_paragraphs=[0, 1, 2, 2, None],
        selected_paragraphs=[0, 1, 2, 0, 0], nbest=nbest, stages=(), load_seconds=0.0, metrics=None)
    metrics = analysis.answer_metrics(questions, prediction)
    assert metrics["categories"] == {"right": 1, "wrong paragraph": 2, "partial overlap": 1, "wrong span": 1}
    assert metrics["questions"] == 5 and metrics["exact_match"] == pytest.approx(20.0)
    # F1: 1 (a) + 2/3 (c: 四年 of 在位四年, precision 1, recall 1/2) over 5 questions.
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3) / 5)
    assert metrics["paragraph_selection_accuracy"] == pytest.approx(3 / 5)
    assert metrics["answer_paragraph_accuracy"] == pytest.approx(3 / 5)
    assert metrics["answer_from_gold_paragraph"]["questions"] == 3
    assert metrics["answer_from_other_paragraph"] == {"questions": 2, "exact_match": 0.0, "f1": 0.0}
