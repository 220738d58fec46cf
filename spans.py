"""Spans: which answer spans a window's start and end logits make best, and their characters.

A span is valid when all its tokens are paragraph tokens of one run (a window across joined candidates has one run
per paragraph, and no span crosses the separator between them), its end is not before its start, and it is at most
`max_answer_length` tokens long. `best_spans_of_windows` finds each window's `n_best_size` best valid spans and the
log-sum-exp of the scores of all of them (the window's log partition, which makes span scores probabilities:
decoding.py); `merge_character_spans` merges the windows of one paragraph by character span. Training's evaluation
(utils_qa.postprocess_qa_predictions) and inference.py both call these.
"""

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from features import Window

N_BEST_SIZE = 20
# The most spans kept per window and paragraph: a bound that keeps the n-best lists (and the files that list them)
# sane; nobody reads a thousand candidates.
MAX_N_BEST_SIZE = 1000
# In tokens. Chinese BERT vocabularies have one token per Chinese character: 64 covers the longest answer of the
# real data (63 characters; 99% are at most 26).
MAX_ANSWER_LENGTH = 64


# Windows scored together in post-processing: bounds the score array to about 256 x 512 x 64 floats (34 MB).
WINDOWS_PER_CHUNK = 256


@dataclass
class WindowSpans:
    """The best valid spans of one window, best first, and the log-sum-exp of the scores of all its valid spans."""

    start_tokens: np.ndarray
    end_tokens: np.ndarray
    scores: np.ndarray  # start logit + end logit
    log_partition: float  # -inf when the window has no valid span


def token_runs(char_starts):
    """The run of paragraph tokens that each token of a window belongs to: 0, 1, ... for the runs of consecutive
    paragraph tokens (char_starts >= 0), in order, and -1 for the others. A window of one paragraph has one run; a
    window across joined candidates has one per paragraph, the separators between them in none. Both span decoders
    keep a span inside one run (best_spans_of_windows, best_spans_on_device)."""
    inside = char_starts >= 0
    first_of_run = inside & ~np.concatenate([[False], inside[:-1]])
    return np.where(inside, np.cumsum(first_of_run) - 1, -1)


def paragraph_runs(char_starts):
    """Masks of the runs of token_runs: a single mask for a window of one paragraph (all its paragraph tokens, or
    none), one per paragraph for a window across joined candidates."""
    runs = token_runs(char_starts)
    count = int(runs.max(initial=-1)) + 1
    if count <= 1:
        return [runs >= 0]
    return [runs == run for run in range(count)]


def best_spans_of_windows(
    all_start_logits: Sequence[np.ndarray],
    all_end_logits: Sequence[np.ndarray],
    all_char_starts: Sequence[np.ndarray],
    max_answer_length: int,
    n_best_size: int,
) -> list[WindowSpans]:
    """For each window, its `n_best_size` highest-scoring valid spans (a WindowSpans).

    A span is valid when all its tokens are paragraph tokens (char_starts >= 0) of one run (paragraph_runs: a span
    never crosses the separator of joined candidates), end >= start, and it is at most `max_answer_length` tokens
    long. All valid spans of a chunk of runs are scored at once: scores[r, i, k] = start_logit[r, i] +
    end_logit[r, i + k], the span of run r from token i to token i + k. Ties keep the order of the start token, then
    of the length.

    Args:
        all_start_logits, all_end_logits: each window's logits, one per token (longer arrays are read up to the
            window's length, that of its char_starts).
        all_char_starts: each window's character_offsets starts: -1 for the tokens outside the paragraph.
        max_answer_length: the most tokens of a span.
        n_best_size: the most spans kept per window.

    Returns:
        One WindowSpans per window, in order.
    """
    runs = [(w, run) for w, char_starts in enumerate(all_char_starts) for run in paragraph_runs(char_starts)]
    spans_of_runs = []
    requested_length = max_answer_length
    for chunk_start in range(0, len(runs), WINDOWS_PER_CHUNK):
        chunk = runs[chunk_start : chunk_start + WINDOWS_PER_CHUNK]
        width = max(len(run) for _, run in chunk)
        # No span is longer than its window: a longer limit changes nothing but the memory the scores would take.
        max_answer_length = min(requested_length, width)
        start_scores = np.full((len(chunk), width), -np.inf, dtype=np.float32)
        end_scores = np.full((len(chunk), width + max_answer_length - 1), -np.inf, dtype=np.float32)
        for row, (w, run) in enumerate(chunk):
            length = len(run)
            start_scores[row, :length] = np.where(run, all_start_logits[w][:length], -np.inf)
            end_scores[row, :length] = np.where(run, all_end_logits[w][:length], -np.inf)
        ends_of_spans = np.lib.stride_tricks.sliding_window_view(end_scores, max_answer_length, axis=1)
        # The n best spans start at the n starts whose own best span scores highest (if a best span started
        # elsewhere, n better spans would exist), so only those starts need all their span lengths ranked.
        best_of_start = start_scores + ends_of_spans.max(axis=2)
        starts = np.sort(_first_in_order(best_of_start, min(n_best_size, width)), axis=1)
        rows = np.arange(len(chunk))[:, None]
        scores = (start_scores[rows, starts][:, :, None] + ends_of_spans[rows, starts]).reshape(len(chunk), -1)
        # With the starts in increasing order, the flat index orders spans by start, then length.
        order = _first_in_order(scores, min(n_best_size, scores.shape[1]))
        top_scores = np.take_along_axis(scores, order, axis=1)
        log_partitions = _log_partitions(start_scores, end_scores, max_answer_length)
        for row in range(len(chunk)):
            valid = np.isfinite(top_scores[row])
            start_index, lengths = np.divmod(order[row][valid], max_answer_length)
            start_tokens = starts[row][start_index]
            spans_of_runs.append(
                WindowSpans(start_tokens, start_tokens + lengths, top_scores[row][valid], log_partitions[row])
            )
    runs_of_window = collections.defaultdict(list)
    for (w, _), spans in zip(runs, spans_of_runs):
        runs_of_window[w].append(spans)
    return [_merge_runs(runs_of_window[w], n_best_size) for w in range(len(all_char_starts))]


def _merge_runs(spans_of_runs, n_best_size):
    """The WindowSpans of a window from those of its runs (in order): the n best of all, ties in the runs' order."""
    if len(spans_of_runs) == 1:
        return spans_of_runs[0]
    start_tokens, end_tokens, scores = (
        np.concatenate([getattr(spans, name) for spans in spans_of_runs])
        for name in ("start_tokens", "end_tokens", "scores")
    )
    order = np.argsort(-scores, kind="stable")[:n_best_size]
    log_partition = np.logaddexp.reduce([spans.log_partition for spans in spans_of_runs])
    return WindowSpans(start_tokens[order], end_tokens[order], scores[order], float(log_partition))


def _first_in_order(values, k):
    """Per row, the positions of the first k values in the order (value descending, position ascending): what a full
    stable sort would give, without sorting every value (a partition finds the k-th value; ties with it are taken
    from the left)."""
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1 : k]
    above = values > kth
    tied = values == kth
    # Every row has at least k values >= its k-th: the first of the ties make up the count.
    tied &= np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)
    positions = np.nonzero(above | tied)[1].reshape(len(values), k)
    return np.take_along_axis(
        positions, np.argsort(-np.take_along_axis(values, positions, axis=1), axis=1, kind="stable"), axis=1
    )


def _log_partitions(start_scores, end_scores, max_answer_length):
    """log sum over the valid spans (i, i + k) of exp(start[i] + end[i + k]), per window, without building every span:
    the sum over k of exp(end[i + k]) is a difference of cumulative sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        end_max = np.max(end_scores, axis=1, keepdims=True)
        end_max = np.where(np.isfinite(end_max), end_max, 0.0)
        cumulative = np.concatenate(
            [np.zeros((len(end_scores), 1)), np.cumsum(np.exp(end_scores.astype(np.float64) - end_max), axis=1)], axis=1
        )
        width = start_scores.shape[1]
        ends_sum = cumulative[:, max_answer_length : max_answer_length + width] - cumulative[:, :width]
        terms = start_scores + end_max + np.log(np.maximum(ends_sum, 0.0))
        top = np.max(terms, axis=1, keepdims=True)
        finite_top = np.where(np.isfinite(top), top, 0.0)
        return (finite_top + np.log(np.sum(np.exp(terms - finite_top), axis=1, keepdims=True)))[:, 0]


def character_spans(
    window_spans: WindowSpans, char_starts: np.ndarray, char_ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A window's best spans in characters.

    Args:
        window_spans: the window's best spans, in tokens.
        char_starts, char_ends: the window's character_offsets.

    Returns:
        (starts, ends, scores, start tokens, end tokens) arrays, the spans in the order of `window_spans`.
    """
    starts, ends = window_spans.start_tokens, window_spans.end_tokens
    return char_starts[starts], char_ends[ends], window_spans.scores, starts, ends


def merge_character_spans(pieces: list[Sequence[np.ndarray]], n_best_size: int) -> list[np.ndarray] | None:
    """The `n_best_size` best distinct character spans of the windows of one paragraph, best first.

    A span found in two windows (they overlap) keeps its better score; ties keep the windows' order.

    Args:
        pieces: window by window in the paragraph's order, arrays (starts, ends, scores, ...extra).
        n_best_size: the most spans kept.

    Returns:
        The same arrays, merged; None when there are no pieces.
    """
    if not pieces:
        return None
    columns = [np.concatenate(column) for column in zip(*pieces)]
    starts, ends, scores = columns[:3]
    order = np.argsort(-scores, kind="stable")
    _, first = np.unique((starts[order] << 32) | ends[order], return_index=True)
    keep = order[np.sort(first)][:n_best_size]
    return [column[keep] for column in columns]


def character_offsets(window: "Window") -> tuple[np.ndarray, np.ndarray]:
    """The characters of every token of a window's sequence.

    Args:
        window: a features.Window.

    Returns:
        (char_starts, char_ends) int64 arrays: -1 outside the paragraph, and on the separators of joined candidates.
    """
    starts = np.full(len(window.input_ids), -1, dtype=np.int64)
    ends = np.full(len(window.input_ids), -1, dtype=np.int64)
    starts[window.context_start : window.context_start + len(window.offsets)] = window.offsets[:, 0]
    ends[window.context_start : window.context_start + len(window.offsets)] = window.offsets[:, 1]
    return starts, ends
