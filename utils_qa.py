"""The transformers examples' API for feature preparation and post-processing (their run_swag.py, run_qa.py and
utils_qa.py), on the project's own pieces, so that code can move between the two:

- `prepare_multiple_choice_features`: paragraph selection, each question paired with each candidate (features.py);
- `prepare_train_features` / `prepare_validation_features`: span selection, a paragraph cut into overlapping windows
  with the answer's token positions (features.py); the context can also be all of a question's candidates joined
  (end-to-end span selection);
- `postprocess_qa_predictions`: the start/end logits of every window back to an answer text (spans.py).

`examples` is a batch (a dict of lists, or what datasets' map(batched=True) passes; postprocess_qa_predictions also
takes a datasets.Dataset) with `id`, `question`, `context` and, for training, SQuAD-style `answers` ({"text": [...],
"answer_start": [...]}); paragraph selection's has `question`, `candidates` and `label`.
"""

import collections
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from features import (
    DOC_STRIDE,
    MAX_QUESTION_LENGTH,
    MAX_SEQ_LENGTH,
    PairTemplate,
    add_answer_positions,
    model_inputs,
    window_features,
)
from outputs import OutputPlan, json_writer
from spans import (
    MAX_ANSWER_LENGTH,
    N_BEST_SIZE,
    best_spans_of_windows,
    character_spans,
    merge_character_spans,
)
from tokens import question_token_ids, tokenize_texts

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)


def prepare_multiple_choice_features(
    examples: Mapping[str, list],
    tokenizer: "PreTrainedTokenizerFast",
    max_seq_length: int = MAX_SEQ_LENGTH,
    pad_to_max_length: bool = False,
    max_question_length: int = MAX_QUESTION_LENGTH,
) -> dict[str, list]:
    """Pairs each question with each of its candidate paragraphs (the paragraph cut to fit `max_seq_length`). Each
    distinct paragraph is tokenized once.

    Args:
        examples: `question` (str) and `candidates` (list of paragraph texts, any number >= 1) per example, and
            optionally `label` (index of the relevant candidate).
        tokenizer: a fast tokenizer.
        max_seq_length: the most tokens of a pair.
        pad_to_max_length: pad every pair to `max_seq_length` tokens, else none is padded.
        max_question_length: the most tokens a question keeps.

    Returns:
        {model input: per example a list of values, one per candidate}, and `labels` when labels were given.
    """
    template = PairTemplate.of(tokenizer)
    questions = question_token_ids(examples["question"], tokenizer, max_question_length)
    distinct = list(dict.fromkeys(paragraph for candidates in examples["candidates"] for paragraph in candidates))
    tokens = dict(zip(distinct, tokenize_texts(distinct, tokenizer)))
    pad_to = max_seq_length if pad_to_max_length else None
    features = collections.defaultdict(list)
    for question, candidates in zip(questions, examples["candidates"]):
        pairs = collections.defaultdict(list)
        for paragraph in candidates:
            paragraph_ids = tokens[paragraph].ids[: template.room(question, max_seq_length)]
            input_ids, token_type_ids, _ = template.assemble(question, paragraph_ids)
            for name, values in model_inputs(input_ids, token_type_ids, pad_to, tokenizer.pad_token_id).items():
                pairs[name].append(values)
        for name, values in pairs.items():
            features[name].append(values)
    if "label" in examples:
        features["labels"] = list(examples["label"])
    return dict(features)


def prepare_train_features(
    examples: Mapping[str, list],
    tokenizer: "PreTrainedTokenizerFast",
    max_seq_length: int = MAX_SEQ_LENGTH,
    doc_stride: int = DOC_STRIDE,
    pad_to_max_length: bool = False,
    max_question_length: int = MAX_QUESTION_LENGTH,
) -> dict[str, list]:
    """Windows with `start_positions`/`end_positions`: the answer's first and last token, or the CLS index in windows
    that do not hold the whole answer.

    Args:
        examples: SQuAD-style examples with `answers` (the top of this module).
        tokenizer: a fast tokenizer.
        max_seq_length, doc_stride: the windows (features.question_windows).
        pad_to_max_length: pad every window to `max_seq_length` tokens, else none is padded.
        max_question_length: the most tokens a question keeps.

    Returns:
        {column: one value per window}: the model inputs, `start_positions` and `end_positions`.
    """
    features = window_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length)
    add_answer_positions(features, examples, tokenizer)
    del features["windows"], features["example_index"]
    return dict(features)


def prepare_validation_features(
    examples: Mapping[str, list],
    tokenizer: "PreTrainedTokenizerFast",
    max_seq_length: int = MAX_SEQ_LENGTH,
    doc_stride: int = DOC_STRIDE,
    pad_to_max_length: bool = False,
    max_question_length: int = MAX_QUESTION_LENGTH,
) -> dict[str, list]:
    """Windows with `example_id` and `offset_mapping` (None for tokens outside the paragraph, the separators of joined
    candidates included), for post-processing.

    When the examples have `answers`, the windows also get `start_positions`/`end_positions` (as in training), so
    that the Trainer reports an evaluation loss comparable to the training loss.

    Args:
        examples: SQuAD-style examples (the top of this module).
        tokenizer: a fast tokenizer.
        max_seq_length, doc_stride: the windows (features.question_windows).
        pad_to_max_length: pad every window to `max_seq_length` tokens, else none is padded.
        max_question_length: the most tokens a question keeps.

    Returns:
        {column: one value per window}: the model inputs, `example_id` and `offset_mapping`, and the answer positions.
    """
    features = window_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length)
    if "answers" in examples:
        add_answer_positions(features, examples, tokenizer)
    features["example_id"] = [examples["id"][index] for index in features["example_index"]]
    features["offset_mapping"] = [
        [None] * window.context_start
        + [offset if offset[0] >= 0 else None for offset in window.offsets.tolist()]
        + [None] * (len(input_ids) - window.context_start - len(window.offsets))
        for window, input_ids in zip(features["windows"], features["input_ids"])
    ]
    del features["windows"], features["example_index"]
    return dict(features)


def postprocess_qa_predictions(
    examples: "Dataset | Mapping[str, list]",
    features: "Dataset | Mapping[str, list]",
    predictions: tuple[np.ndarray | Sequence[np.ndarray], np.ndarray | Sequence[np.ndarray]],
    version_2_with_negative: bool = False,
    n_best_size: int = N_BEST_SIZE,
    max_answer_length: int = MAX_ANSWER_LENGTH,
    null_score_diff_threshold: float = 0.0,
    output_dir: str | None = None,
    prefix: str | None = None,
    log_level: int = logging.WARNING,
) -> dict[str, str]:
    """Maps the start/end logits of every window back to an answer text per example.

    Every window of an example is searched for its best spans; the example's answer is the best of all of them.
    Without `version_2_with_negative`, an answer is never empty unless no window has a valid span.

    Args:
        examples: the examples, with `id` and `context`.
        features: prepare_validation_features' windows of them (`example_id`, `offset_mapping`).
        predictions: (start_logits, end_logits), each indexable by window: a 2-D array (padding beyond a window's
            length is ignored) or a list of 1-D arrays.
        version_2_with_negative: an answer may be empty (SQuAD 2.0): the empty answer wins when the lowest of its
            windows' null scores (start and end logits at position 0) beats the best span by more than
            `null_score_diff_threshold`.
        n_best_size: the most spans kept per example (nbest_predictions.json).
        max_answer_length: the most tokens of an answer.
        null_score_diff_threshold: see `version_2_with_negative`.
        output_dir: an existing folder to write `predictions.json` and `nbest_predictions.json` (the `n_best_size`
            best distinct spans) to, and with `version_2_with_negative` `null_odds.json`; None writes nothing.
        prefix: the files' names are prefixed with `prefix_` when given.
        log_level: the level of this module's logger.

    Returns:
        {example id: answer text} in the order of `examples`.
    """
    if len(predictions) != 2:
        raise ValueError("`predictions` should be a tuple with two elements (start_logits, end_logits).")
    all_start_logits, all_end_logits = predictions
    example_ids = features["example_id"]
    if len(all_start_logits) != len(example_ids):
        raise ValueError(f"Got {len(all_start_logits)} predictions and {len(example_ids)} features.")
    logger.setLevel(log_level)

    windows_of_example = collections.defaultdict(list)
    for window_index, example_id in enumerate(example_ids):
        windows_of_example[example_id].append(window_index)
    all_start_logits = [np.asarray(logits, dtype=np.float32) for logits in all_start_logits]
    all_end_logits = [np.asarray(logits, dtype=np.float32) for logits in all_end_logits]
    all_char_starts, all_char_ends = zip(*map(_offsets_as_arrays, features["offset_mapping"]))
    best_spans = best_spans_of_windows(
        all_start_logits, all_end_logits, all_char_starts, max_answer_length, n_best_size
    )

    answers = collections.OrderedDict()
    nbest_of_example = collections.OrderedDict()
    null_score_diff_of_example = collections.OrderedDict()
    for example_id, context in zip(examples["id"], examples["context"]):
        windows = windows_of_example[example_id]
        merged = merge_character_spans(
            [
                character_spans(best_spans[w], all_char_starts[w], all_char_ends[w])
                + (np.full(len(best_spans[w].scores), w),)
                for w in windows
            ],
            n_best_size,
        )
        candidates = []
        for start, end, score, start_token, end_token, window in zip(*merged) if merged else ():
            candidates.append(
                {
                    "score": float(score),
                    "start_logit": float(all_start_logits[window][start_token]),
                    "end_logit": float(all_end_logits[window][end_token]),
                    "start": int(start),
                    "end": int(end),
                    "text": context[start:end],
                }
            )

        best_text = candidates[0]["text"] if candidates else ""
        null_scores = [float(all_start_logits[w][0] + all_end_logits[w][0]) for w in windows]
        if version_2_with_negative and null_scores:
            null_score = min(null_scores)
            best_score = candidates[0]["score"] if candidates else -np.inf
            null_score_diff_of_example[example_id] = float(null_score - best_score)
            if null_score - best_score > null_score_diff_threshold:
                best_text = ""
            candidates.append({"score": null_score, "start": -1, "end": -1, "text": ""})
            candidates.sort(key=lambda candidate: candidate["score"], reverse=True)
        if candidates:
            scores = np.array([candidate["score"] for candidate in candidates])
            probabilities = np.exp(scores - scores.max())
            probabilities /= probabilities.sum()
            for candidate, probability in zip(candidates, probabilities):
                candidate["probability"] = float(probability)
        answers[example_id] = best_text
        nbest_of_example[example_id] = candidates

    if output_dir is not None:
        if not os.path.isdir(output_dir):
            raise OSError(f"{output_dir} is not a directory.")
        name_prefix = f"{prefix}_" if prefix else ""
        files = {"predictions": answers, "nbest_predictions": nbest_of_example}
        if version_2_with_negative:
            # No valid span at all makes the difference infinite, which strict JSON cannot hold: null.
            files["null_odds"] = {i: (d if np.isfinite(d) else None) for i, d in null_score_diff_of_example.items()}
        plan, writers = OutputPlan(), {}
        for name, value in files.items():
            writers[plan.add(os.path.join(output_dir, f"{name_prefix}{name}.json"))] = json_writer(value)
        logger.info(f"Saving {', '.join(files)} to {output_dir}.")
        plan.write(writers)
    return answers


def _offsets_as_arrays(offsets):
    """(char_starts, char_ends) of a window's tokens, -1 where the offset is None (not a paragraph token)."""
    pairs = np.full((len(offsets), 2), -1, dtype=np.int64)
    inside = [i for i, offset in enumerate(offsets) if offset is not None]
    if inside:
        # The paragraph's tokens are one run (windows put the paragraph between the question and the last [SEP]).
        first, last = inside[0], inside[-1] + 1
        if len(inside) == last - first:
            pairs[first:last] = offsets[first:last]
        else:
            pairs[inside] = [offsets[i] for i in inside]
    return pairs[:, 0], pairs[:, 1]
