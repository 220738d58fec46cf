"""The metrics of answers, for Chinese: exact match and character-level F1 in [0, 100] (what the leaderboard
measures), after the normalisation readers would apply; and the accuracy of a classifier's logits in [0, 1].

`evaluate.load("squad")` needs the Hub and splits on whitespace, which Chinese does not have, so the project computes
them here. This module imports no torch, so converters and analyses that only compare strings stay light.
"""

import collections
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import EvalPrediction


def normalize_answer(text: str) -> str:
    """An answer as readers compare it: full-width = half-width (NFKC), case, whitespace and punctuation ignored.

    Args:
        text: an answer.

    Returns:
        The normalised text.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 in [0, 1] of two answers after normalisation (1.0 when both normalise to nothing).

    Args:
        prediction: the predicted answer.
        gold: the gold answer.

    Returns:
        The harmonic mean of the shares of common characters (counted with multiplicity) in each.
    """
    prediction, gold = normalize_answer(prediction), normalize_answer(gold)
    if not prediction or not gold:
        return float(prediction == gold)
    common = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def compute_qa_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and character-level F1, in [0, 100], each the best over an example's gold answers.

    Args:
        predictions: {id: answer text}; a missing prediction counts as "".
        references: {id: [gold answer texts]}, at least one id.

    Returns:
        {"exact_match": ..., "f1": ...}.
    """
    if not references:
        raise ValueError("compute_qa_metrics needs at least one reference")
    exact, f1 = 0.0, 0.0
    for example_id, golds in references.items():
        prediction = predictions.get(example_id, "")
        exact += max(float(normalize_answer(prediction) == normalize_answer(gold)) for gold in golds)
        f1 += max(char_f1(prediction, gold) for gold in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}


def compute_accuracy(eval_prediction: "EvalPrediction") -> dict[str, float]:
    """The share of examples whose highest logit is their label, in [0, 1] (a Trainer's compute_metrics).

    Args:
        eval_prediction: a transformers EvalPrediction of (examples, classes) logits and the labels.

    Returns:
        {"accuracy": ...}.
    """
    predicted = np.argmax(eval_prediction.predictions, axis=1)
    return {"accuracy": float((predicted == eval_prediction.label_ids).mean())}
