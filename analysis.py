"""How inference.py did on labelled questions (valid.json): the metrics the leaderboard measures (the answer metrics),
and an error analysis that sorts every answer into a category.

- exact match and F1 in [0, 100] (metrics.compute_qa_metrics: the project's Chinese normalisation), over all
  questions and split by whether the answer comes from the gold paragraph;
- paragraph accuracy in [0, 1], of paragraph selection alone (its most probable candidate) and of the paragraph the
  answer comes from (they differ only with joint decoding, --top_k_paragraphs > 1);
- categories: `right` (exact match after normalisation), `wrong paragraph` (the answer comes from another
  paragraph), `partial overlap` (gold paragraph, the answer's characters overlap the gold answer's), `wrong span`
  (gold paragraph, no overlap).
"""

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from metrics import compute_qa_metrics, normalize_answer
from outputs import json_lines_writer

if TYPE_CHECKING:
    from inference import Prediction

FILES = ("errors.jsonl", "summary.md")
CATEGORIES = ("right", "wrong paragraph", "partial overlap", "wrong span")
EXAMPLES_PER_CATEGORY = 3


def category(question: dict, paragraph: int | None, start: int, end: int, text: str) -> str:
    """The category of one answer (see the top of this module).

    Args:
        question: a labelled question (adl_data.load_questions with its "relevant" and "answer").
        paragraph: the paragraph the answer comes from, None when there is no answer.
        start, end: the answer's characters in that paragraph.
        text: the answer.

    Returns:
        One of CATEGORIES.
    """
    gold = question["answer"]
    if normalize_answer(text) == normalize_answer(gold["text"]):
        return "right"
    if paragraph != question["relevant"]:
        return "wrong paragraph"
    if start < gold["start"] + len(gold["text"]) and gold["start"] < end:
        return "partial overlap"
    return "wrong span"


def _answer_of(prediction, index):
    best = prediction.nbest[index]
    return (best[0].paragraph, best[0].start, best[0].end, best[0].text) if best else (None, -1, -1, "")


def answer_metrics(questions: list[dict], prediction: "Prediction") -> dict:
    """The metrics of a Prediction (inference.py) of labelled questions, as a JSON-ready dict (metrics.json).

    Args:
        questions: the labelled questions, in the order predicted.
        prediction: inference.Prediction.

    Returns:
        Exact match and F1 over all questions and split by the answer's paragraph, the two paragraph accuracies, and
        the count of each category.
    """
    references = {q["id"]: [q["answer"]["text"]] for q in questions}
    metrics = {"questions": len(questions), **compute_qa_metrics(prediction.answers, references)}
    metrics["paragraph_selection_accuracy"] = sum(
        chosen == q["relevant"] for q, chosen in zip(questions, prediction.selected_paragraphs)
    ) / len(questions)
    right = [p == q["relevant"] for q, p in zip(questions, prediction.answer_paragraphs)]
    metrics["answer_paragraph_accuracy"] = sum(right) / len(questions)
    for name, wanted in (("gold_paragraph", True), ("other_paragraph", False)):
        ids = [q["id"] for q, is_right in zip(questions, right) if is_right == wanted]
        split = {"questions": len(ids)}
        if ids:
            split.update(compute_qa_metrics(prediction.answers, {i: references[i] for i in ids}))
        metrics[f"answer_from_{name}"] = split
    counts = dict.fromkeys(CATEGORIES, 0)
    for index, question in enumerate(questions):
        counts[category(question, *_answer_of(prediction, index))] += 1
    metrics["categories"] = counts
    return metrics


def metrics_line(metrics: dict) -> str:
    """The answer metrics in one line of the log.

    Args:
        metrics: answer_metrics' dict.

    Returns:
        Exact match, F1 and the two paragraph accuracies, with the number of questions.
    """
    return (
        f"answers to {metrics['questions']} labelled questions: exact match {metrics['exact_match']:.2f}, "
        f"F1 {metrics['f1']:.2f} (in [0, 100]); paragraph accuracy {metrics['paragraph_selection_accuracy']:.4f} "
        f"(paragraph selection), {metrics['answer_paragraph_accuracy']:.4f} (paragraph of the answer)"
    )


def error_records(questions, context, prediction):
    """One record per question: the question, the gold paragraph and answer, the prediction, its n-best, its
    category."""
    records = []
    for index, question in enumerate(questions):
        paragraph, start, end, text = _answer_of(prediction, index)
        references = {question["id"]: [question["answer"]["text"]]}
        scores = compute_qa_metrics({question["id"]: text}, references)
        records.append(
            {
                "id": question["id"],
                "question": question["question"],
                "category": category(question, paragraph, start, end, text),
                "gold_paragraph": question["relevant"],
                "gold_answer": question["answer"],
                "paragraph_selection": prediction.selected_paragraphs[index],
                "answer_paragraph": paragraph,
                "prediction": {"text": text, "start": start},
                "exact_match": scores["exact_match"],
                "f1": scores["f1"],
                "nbest": [
                    {"paragraph": a.paragraph, "start": a.start, "text": a.text, "score": _json_score(a.score)}
                    for a in prediction.nbest[index]
                ],
            }
        )
    return records


def _in_context(paragraph_text, start, end, margin=30):
    """The answer marked 【】 in its paragraph, with `margin` characters of context on each side."""
    before = paragraph_text[max(0, start - margin) : start]
    after = paragraph_text[end : end + margin]
    return f"…{before}【{paragraph_text[start:end]}】{after}…".replace("\n", " ").replace("|", "\\|")


def summary_markdown(records, context, metrics):
    lines = [
        "# Error analysis",
        "",
        metrics_line(metrics) + ".",
        "",
        "| category | questions | share |",
        "|---|---:|---:|",
    ]
    for name in CATEGORIES:
        count = metrics["categories"][name]
        lines.append(f"| {name} | {count} | {100 * count / len(records):.1f}% |")
    for name in CATEGORIES:
        examples = [r for r in records if r["category"] == name][:EXAMPLES_PER_CATEGORY]
        if not examples:
            continue
        lines += ["", f"## {name}", ""]
        for record in examples:
            gold = record["gold_answer"]
            gold_paragraph = context[record["gold_paragraph"]]
            lines.append(f"- **{record['id']}** {record['question']}")
            lines.append(
                f"  - gold (paragraph {record['gold_paragraph']}): "
                f"{_in_context(gold_paragraph, gold['start'], gold['start'] + len(gold['text']))}"
            )
            predicted = record["prediction"]
            if record["answer_paragraph"] is None:
                lines.append("  - predicted: no answer")
            else:
                lines.append(
                    f"  - predicted (paragraph {record['answer_paragraph']}, F1 {record['f1']:.1f}): "
                    + _in_context(
                        context[record["answer_paragraph"]],
                        predicted["start"],
                        predicted["start"] + len(predicted["text"]),
                    )
                )
    return "\n".join(lines) + "\n"


def _json_score(score):
    """A score as strict JSON holds it: rounded, and null for -inf (a span outside every ensemble member's n best has
    probability 0)."""
    return round(score, 4) if math.isfinite(score) else None


def analysis_writers(
    questions: list[dict], context: list[str], prediction: "Prediction"
) -> dict[str, Callable[[TextIO], object]]:
    """The writers of errors.jsonl and summary.md (for an outputs.OutputPlan), by file name.

    Args:
        questions: the labelled questions, in the order predicted.
        context: the paragraphs.
        prediction: inference.Prediction, with its metrics.

    Returns:
        {"errors.jsonl": writer, "summary.md": writer}.
    """
    records = error_records(questions, context, prediction)
    summary = summary_markdown(records, context, prediction.metrics)
    return {"errors.jsonl": json_lines_writer(records), "summary.md": lambda file: file.write(summary)}
