"""How inference.py chooses each question's answer from the scores of its models: paragraph probabilities, span
probabilities, ensembles of several checkpoints, and joint paragraph x span decoding.

For a question q with candidate paragraphs p and a span s of p, with M paragraph-selection models and N span-selection
models (M = N = 1 without an ensemble):

- P(p | q) = 1/M sum_m softmax_m(p): each paragraph model's softmax over the question's candidates, averaged;
- P(s | q, p) = 1/N sum_n P_n(s | q, p), where P_n(s | q, p) = exp(start_n(s) + end_n(s) - log Z_n(q, p)) and
  Z_n(q, p) sums exp(start + end) over every valid span of every window of p (a span at most --max_answer_length
  tokens long inside the paragraph part of one window). Spans are merged at the character level, so models with
  different tokenizers combine; a span that appears in two overlapping windows keeps its better score; a span outside
  a model's --n_best_size best counts as probability 0 for that model;
- the answer maximises log P(p | q) + log P(s | q, p) over the `top_k` most probable paragraphs and their spans
  (`joint_score`). With top_k = 1 it is the best span of the most probable paragraph: the plain two-stage pipeline.
"""

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from adl_data import JoinedCandidates


@dataclass
class SpanCandidates:
    """The best character spans of one (question, paragraph) pair under one model or an ensemble, best first."""

    starts: np.ndarray  # character offsets into the paragraph, int64
    ends: np.ndarray  # exclusive
    log_probs: np.ndarray  # log P(span | question, paragraph), float64

    @classmethod
    def empty(cls):
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


def paragraph_log_probs(scores_of_each_model: list[np.ndarray]) -> np.ndarray:
    """log P(p | q) for each candidate of one question: the softmax of each model's scores, averaged over the models.

    Args:
        scores_of_each_model: one array of candidate scores per model.

    Returns:
        One float64 log-probability per candidate (-inf where every model's probability is 0).
    """
    probabilities = []
    for scores in scores_of_each_model:
        scores = np.asarray(scores, dtype=np.float64)
        exponentials = np.exp(scores - scores.max())
        probabilities.append(exponentials / exponentials.sum())
    with np.errstate(divide="ignore"):
        return np.log(np.mean(probabilities, axis=0))


def top_paragraphs(log_probs: np.ndarray, top_k: int) -> list[int]:
    """Positions of the `top_k` most probable candidates (all of them when there are fewer), most probable first;
    ties keep the candidates' order.

    Args:
        log_probs: paragraph_log_probs of one question.
        top_k: how many to keep.

    Returns:
        The candidates' positions among the question's paragraphs.
    """
    return np.argsort(-np.asarray(log_probs), kind="stable")[:top_k].tolist()


def merge_span_candidates(candidates_of_each_model: list[SpanCandidates], n_best_size: int) -> SpanCandidates:
    """The ensemble's SpanCandidates of one pair: each character span's probability averaged over the models (0 for
    a model that does not have it among its best), the `n_best_size` most probable kept.

    One model is returned as it is; ties keep the order of the first model's list, then of the next.

    Args:
        candidates_of_each_model: the pair's SpanCandidates under each model.
        n_best_size: the most spans kept.

    Returns:
        The merged spans, most probable first.
    """
    if len(candidates_of_each_model) == 1:
        return candidates_of_each_model[0]
    probability, order = {}, []
    for candidates in candidates_of_each_model:
        for start, end, log_prob in zip(candidates.starts.tolist(), candidates.ends.tolist(), candidates.log_probs):
            if (start, end) not in probability:
                probability[(start, end)] = 0.0
                order.append((start, end))
            probability[(start, end)] += np.exp(log_prob) / len(candidates_of_each_model)
    order.sort(key=lambda span: -probability[span])
    order = order[:n_best_size]
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.array([probability[span] for span in order], dtype=np.float64))
    return SpanCandidates(
        np.array([start for start, _ in order], dtype=np.int64),
        np.array([end for _, end in order], dtype=np.int64),
        log_probs,
    )


def joint_score(paragraph_log_prob, span_log_probs):
    """The score of an answer: log P(p | q) + log P(s | q, p), the log-probability that paragraph p holds the answer
    and that s is the answer in it (see the top of this module for how each factor is computed)."""
    return paragraph_log_prob + span_log_probs


@dataclass
class Answer:
    paragraph: int | None  # index into context.json of the paragraph the answer comes from
    start: int  # character offsets into that paragraph (-1 when no span was possible)
    end: int
    text: str
    score: float  # joint_score of the answer


def decode(
    paragraphs: list[int],
    paragraph_log_prob: list[float],
    span_candidates: list[SpanCandidates],
    context: list[str],
    n_best_size: int,
) -> list[Answer]:
    """The `n_best_size` best answers of one question over its decoded paragraphs, best first (joint_score). Ties keep
    the paragraphs' order, then the spans'.

    Args:
        paragraphs: the indices (into context) of the paragraphs decoded, most probable first.
        paragraph_log_prob, span_candidates: for each of them, log P(p | q) and its SpanCandidates.
        context: the paragraphs of context.json.
        n_best_size: the most answers kept.

    Returns:
        The answers, best first; an empty list for a question without any valid span.
    """
    answers = []
    for paragraph, log_prob, candidates in zip(paragraphs, paragraph_log_prob, span_candidates):
        scores = joint_score(log_prob, candidates.log_probs)
        for start, end, score in zip(candidates.starts.tolist(), candidates.ends.tolist(), scores.tolist()):
            answers.append(Answer(paragraph, start, end, context[paragraph][start:end], score))
    answers.sort(key=lambda answer: -answer.score)
    return answers[:n_best_size]


def spans_of_each_paragraph(
    candidates: SpanCandidates, joined: "JoinedCandidates"
) -> tuple[list[int], list[SpanCandidates]]:
    """SpanCandidates over a joined text (adl_data.JoinedCandidates) split by paragraph. No span crosses a separator
    (spans.best_spans_of_windows); one that does is an AssertionError.

    Args:
        candidates: the spans, in character offsets of the joined text.
        joined: the text they are in.

    Returns:
        (the paragraphs: indices into context.json, in the order joined; the SpanCandidates of each, in its own
        offsets, the spans in the order of `candidates`).
    """
    located = collections.defaultdict(list)  # paragraph -> [(offset, span index)]
    for index, (start, end) in enumerate(zip(candidates.starts.tolist(), candidates.ends.tolist())):
        paragraph, offset = joined.locate(start)
        if joined.locate(end - 1)[0] != paragraph:
            raise AssertionError(f"span [{start}, {end}) of a joined text crosses a separator")
        located[paragraph].append((offset, index))
    paragraphs = list(dict.fromkeys(joined.paragraphs))
    pieces = []
    for paragraph in paragraphs:
        offsets = np.array([offset for offset, _ in located[paragraph]], dtype=np.int64)
        mine = np.array([index for _, index in located[paragraph]], dtype=np.int64)
        lengths = candidates.ends[mine] - candidates.starts[mine]
        pieces.append(SpanCandidates(offsets, offsets + lengths, candidates.log_probs[mine]))
    return paragraphs, pieces
