"""Feature preparation, post-processing and metrics shared by training (run_swag.py, run_qa.py) and inference.py.

Every transformation between text and model tensors lives here exactly once:

- questions: `truncate_questions` caps a question's length in tokens, for both stages;
- paragraph selection: `prepare_multiple_choice_features` pairs a question with each candidate paragraph, and
  `DataCollatorForMultipleChoice` pads them into (batch, choices, length) tensors;
- span selection: `prepare_train_features` / `prepare_validation_features` cut a paragraph into overlapping windows
  and map the answer's characters to token positions; `postprocess_qa_predictions` maps logits back to text;
- metrics: `compute_qa_metrics` (exact match and character-level F1 for Chinese, in [0, 100]).

The span-selection functions keep the names and signatures of the transformers examples' run_qa.py / utils_qa.py, so
code can move between the two. `examples` there is a batch (dict of lists) or a datasets.Dataset with `id`, `question`,
`context` and, for training, SQuAD-style `answers` ({"text": [...], "answer_start": [...]}).
"""

import collections
import json
import logging
import os
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Defaults shared by the training scripts and inference.py.
MAX_SEQ_LENGTH = 512
DOC_STRIDE = 128
# Chinese QA questions run to about 75 characters (DRCD, CMRC 2018); a longer one is cut so that a window keeps room
# for the paragraph: 96 leaves more than doc_stride 128 tokens of paragraph even with max_seq_length 256.
MAX_QUESTION_LENGTH = 96
N_BEST_SIZE = 20
# In tokens. Chinese BERT vocabularies have one token per Chinese character: 64 covers the longest answer of the
# real data (63 characters; 99% are at most 26).
MAX_ANSWER_LENGTH = 64


# ---------------------------------------------------------------------------------------------------------------------
# Questions


def truncate_questions(questions, tokenizer, max_question_length=MAX_QUESTION_LENGTH):
    """Cuts each question after its first `max_question_length` tokens (at a character boundary of the text)."""
    encoded = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_question_length:
            question = question[: offsets[max_question_length - 1][1]]
        truncated.append(question)
    return truncated


def check_window_fits(tokenizer, max_seq_length, max_question_length, doc_stride=0):
    """Returns None when a window of `max_seq_length` tokens leaves room for the paragraph, else an explanation.

    Windows overlap by `doc_stride` tokens, so the paragraph part of a window must be longer than `doc_stride`.
    """
    room = max_seq_length - max_question_length - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= 0:
        return (
            f"max_seq_length {max_seq_length} leaves no room for the paragraph after a question of up to "
            f"{max_question_length} tokens: raise max_seq_length or lower max_question_length"
        )
    if room <= doc_stride:
        return (
            f"max_seq_length {max_seq_length} leaves {room} tokens for the paragraph after a question of up to "
            f"{max_question_length} tokens, which must be more than doc_stride {doc_stride}: raise max_seq_length or "
            f"lower max_question_length / doc_stride"
        )
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Paragraph selection (multiple choice)


def prepare_multiple_choice_features(
    examples, tokenizer, max_seq_length=MAX_SEQ_LENGTH, pad_to_max_length=False, max_question_length=MAX_QUESTION_LENGTH
):
    """Tokenizes each question with each of its candidate paragraphs (paragraph truncated to fit).

    `examples` has `question` (str) and `candidates` (list of paragraph texts, any number >= 1) per example, and
    optionally `label` (index of the relevant candidate). Returns per example a list of encodings, one per candidate,
    and `labels` when labels were given.
    """
    questions = truncate_questions(examples["question"], tokenizer, max_question_length)
    num_choices = [len(candidates) for candidates in examples["candidates"]]
    first_texts = [question for question, count in zip(questions, num_choices) for _ in range(count)]
    second_texts = [paragraph for candidates in examples["candidates"] for paragraph in candidates]
    tokenized = tokenizer(
        first_texts,
        second_texts,
        truncation="only_second",
        max_length=max_seq_length,
        padding="max_length" if pad_to_max_length else False,
    )
    features = {key: [] for key in tokenized.keys()}
    start = 0
    for count in num_choices:
        for key, values in tokenized.items():
            features[key].append(values[start : start + count])
        start += count
    if "label" in examples:
        features["labels"] = list(examples["label"])
    return features


@dataclass
class DataCollatorForMultipleChoice:
    """Pads a batch of multiple-choice features into (batch, choices, length) tensors.

    Questions may have different numbers of candidates: the shorter ones are filled up with copies of their first
    candidate, and `choice_mask` marks the real ones so that the filler never wins nor counts in the loss.
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features):
        num_choices = [len(feature["input_ids"]) for feature in features]
        max_choices = max(num_choices)
        input_keys = [key for key in features[0] if key != "labels"]
        flat = [
            {key: feature[key][choice if choice < count else 0] for key in input_keys}
            for feature, count in zip(features, num_choices)
            for choice in range(max_choices)
        ]
        batch = self.tokenizer.pad(flat, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        batch = {key: value.view(len(features), max_choices, -1) for key, value in batch.items()}
        batch["choice_mask"] = torch.arange(max_choices)[None, :] < torch.tensor(num_choices)[:, None]
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([feature["labels"] for feature in features], dtype=torch.long)
        return batch


def mask_filler_choices(logits, choice_mask):
    """Gives the filler candidates added by DataCollatorForMultipleChoice the lowest possible score."""
    return logits.masked_fill(~choice_mask.to(logits.device), torch.finfo(logits.dtype).min)


# ---------------------------------------------------------------------------------------------------------------------
# Span selection: windows and labels


def _tokenize_windows(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length):
    """Question + paragraph, the paragraph cut into windows of `max_seq_length` tokens overlapping by `doc_stride`."""
    questions = truncate_questions(examples["question"], tokenizer, max_question_length)
    return tokenizer(
        questions,
        list(examples["context"]),
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )


def _answer_token_positions(offsets, context_mask, start_char, end_char, cls_index):
    """Token positions of the answer characters [start_char, end_char) in one window, or the CLS index twice when
    the answer is not wholly inside the window's part of the paragraph."""
    context_tokens = np.flatnonzero(context_mask)
    if len(context_tokens) == 0:
        return cls_index, cls_index
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first, 0] > start_char or offsets[last, 1] < end_char:
        return cls_index, cls_index
    window = offsets[first : last + 1]
    # The first token that ends after the answer starts, the last token that starts before the answer ends.
    start_token = first + int(np.argmax(window[:, 1] > start_char))
    end_token = first + int(np.flatnonzero(window[:, 0] < end_char)[-1])
    return start_token, end_token


def _window_arrays(tokenized, window_index):
    offsets = np.asarray(tokenized["offset_mapping"][window_index], dtype=np.int64)
    context_mask = np.array([sequence_id == 1 for sequence_id in tokenized.sequence_ids(window_index)])
    return offsets, context_mask


def _add_answer_positions(tokenized, examples, sample_mapping, tokenizer):
    start_positions, end_positions = [], []
    for window_index, example_index in enumerate(sample_mapping):
        offsets, context_mask = _window_arrays(tokenized, window_index)
        cls_index = tokenized["input_ids"][window_index].index(tokenizer.cls_token_id)
        answers = examples["answers"][example_index]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        start_token, end_token = _answer_token_positions(offsets, context_mask, start_char, end_char, cls_index)
        start_positions.append(start_token)
        end_positions.append(end_token)
    tokenized["start_positions"] = start_positions
    tokenized["end_positions"] = end_positions


def prepare_train_features(
    examples,
    tokenizer,
    max_seq_length=MAX_SEQ_LENGTH,
    doc_stride=DOC_STRIDE,
    pad_to_max_length=False,
    max_question_length=MAX_QUESTION_LENGTH,
):
    """Windows with `start_positions`/`end_positions`: the answer's first and last token, or the CLS index in windows
    that do not hold the whole answer."""
    tokenized = _tokenize_windows(
        examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length
    )
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    _add_answer_positions(tokenized, examples, sample_mapping, tokenizer)
    tokenized.pop("offset_mapping")
    return tokenized


def prepare_validation_features(
    examples,
    tokenizer,
    max_seq_length=MAX_SEQ_LENGTH,
    doc_stride=DOC_STRIDE,
    pad_to_max_length=False,
    max_question_length=MAX_QUESTION_LENGTH,
):
    """Windows with `example_id` and `offset_mapping` (None for tokens outside the paragraph), for post-processing.

    When the examples have `answers`, the windows also get `start_positions`/`end_positions` (as in training), so
    that the Trainer reports an evaluation loss comparable to the training loss.
    """
    tokenized = _tokenize_windows(
        examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length
    )
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    if "answers" in examples:
        _add_answer_positions(tokenized, examples, sample_mapping, tokenizer)
    tokenized["example_id"] = [examples["id"][example_index] for example_index in sample_mapping]
    tokenized["offset_mapping"] = [
        [offset if sequence_id == 1 else None for offset, sequence_id in zip(offsets, tokenized.sequence_ids(i))]
        for i, offsets in enumerate(tokenized["offset_mapping"])
    ]
    return tokenized


# ---------------------------------------------------------------------------------------------------------------------
# Span selection: post-processing


# Windows scored together in post-processing: bounds the score array to about 256 x 512 x 64 floats (34 MB).
WINDOWS_PER_CHUNK = 256


def _best_spans(all_start_logits, all_end_logits, all_char_starts, max_answer_length, n_best_size):
    """For each window, its `n_best_size` highest-scoring valid spans as (start tokens, end tokens, scores), best first.

    A span is valid when both ends are paragraph tokens (char_starts >= 0), end >= start, and it is at most
    `max_answer_length` tokens long. All valid spans of a chunk of windows are scored at once:
    scores[w, i, k] = start_logit[w, i] + end_logit[w, i + k], the span of window w from token i to token i + k.
    """
    results = []
    for chunk_start in range(0, len(all_char_starts), WINDOWS_PER_CHUNK):
        chunk = range(chunk_start, min(chunk_start + WINDOWS_PER_CHUNK, len(all_char_starts)))
        width = max(len(all_char_starts[w]) for w in chunk)
        start_scores = np.full((len(chunk), width), -np.inf, dtype=np.float32)
        end_scores = np.full((len(chunk), width + max_answer_length - 1), -np.inf, dtype=np.float32)
        for row, w in enumerate(chunk):
            length = len(all_char_starts[w])
            in_paragraph = all_char_starts[w] >= 0
            start_scores[row, :length] = np.where(in_paragraph, all_start_logits[w][:length], -np.inf)
            end_scores[row, :length] = np.where(in_paragraph, all_end_logits[w][:length], -np.inf)
        ends_of_spans = np.lib.stride_tricks.sliding_window_view(end_scores, max_answer_length, axis=1)
        # The n best spans start at the n starts whose own best span scores highest (if a best span started
        # elsewhere, n better spans would exist), so only those starts need all their span lengths ranked.
        best_of_start = start_scores + ends_of_spans.max(axis=2)
        n_starts = min(n_best_size, width)
        starts = np.argpartition(-best_of_start, n_starts - 1, axis=1)[:, :n_starts]
        rows = np.arange(len(chunk))[:, None]
        scores = (start_scores[rows, starts][:, :, None] + ends_of_spans[rows, starts]).reshape(len(chunk), -1)
        k = min(n_best_size, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        for row in range(len(chunk)):
            valid = np.isfinite(top_scores[row])
            start_index, lengths = np.divmod(top[row][valid], max_answer_length)
            start_tokens = starts[row][start_index]
            results.append((start_tokens, start_tokens + lengths, top_scores[row][valid]))
    return results


def _offsets_as_arrays(offsets):
    """(char_starts, char_ends) of a window's tokens, -1 where the offset is None (not a paragraph token)."""
    pairs = np.array([offset if offset is not None else (-1, -1) for offset in offsets], dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def postprocess_qa_predictions(
    examples,
    features,
    predictions,
    version_2_with_negative=False,
    n_best_size=N_BEST_SIZE,
    max_answer_length=MAX_ANSWER_LENGTH,
    null_score_diff_threshold=0.0,
    output_dir=None,
    prefix=None,
    log_level=logging.WARNING,
):
    """Maps the start/end logits of every window back to an answer text per example.

    `predictions` is (start_logits, end_logits), each indexable by window: a 2-D array (padding beyond a window's
    length is ignored) or a list of 1-D arrays. Every window of an example is searched for its best spans; the
    example's answer is the best of all of them. Without `version_2_with_negative`, an answer is never empty unless
    no window has a valid span. Returns {example id: answer text} in the order of `examples`; with `output_dir`, also
    writes `predictions.json` and `nbest_predictions.json` (prefixed with `prefix_`).
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
    best_spans = _best_spans(all_start_logits, all_end_logits, all_char_starts, max_answer_length, n_best_size)

    answers = collections.OrderedDict()
    nbest_of_example = collections.OrderedDict()
    null_score_diff_of_example = collections.OrderedDict()
    for example_id, context in zip(examples["id"], examples["context"]):
        candidates = []
        null_score = None
        for window_index in windows_of_example[example_id]:
            start_logits, end_logits = all_start_logits[window_index], all_end_logits[window_index]
            char_starts, char_ends = all_char_starts[window_index], all_char_ends[window_index]
            window_null_score = float(start_logits[0] + end_logits[0])
            if null_score is None or window_null_score < null_score:
                null_score = window_null_score
            start_tokens, end_tokens, scores = best_spans[window_index]
            for start_token, end_token, score in zip(start_tokens, end_tokens, scores):
                candidates.append(
                    {
                        "score": float(score),
                        "start_logit": float(start_logits[start_token]),
                        "end_logit": float(end_logits[end_token]),
                        "start": int(char_starts[start_token]),
                        "end": int(char_ends[end_token]),
                    }
                )
        candidates.sort(key=lambda candidate: candidate["score"], reverse=True)
        candidates = candidates[:n_best_size]
        for candidate in candidates:
            candidate["text"] = context[candidate["start"] : candidate["end"]]

        best_text = candidates[0]["text"] if candidates else ""
        if version_2_with_negative and null_score is not None:
            best_score = candidates[0]["score"] if candidates else -np.inf
            null_score_diff_of_example[example_id] = null_score - best_score
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
            files["null_odds"] = null_score_diff_of_example
        for name, value in files.items():
            path = os.path.join(output_dir, f"{name_prefix}{name}.json")
            logger.info(f"Saving {name} to {path}.")
            with open(path, "w", encoding="utf-8") as file:
                json.dump(value, file, ensure_ascii=False, indent=2)
    return answers


# ---------------------------------------------------------------------------------------------------------------------
# Metrics


def normalize_answer(text):
    """Compares answers as readers do: full-width = half-width, case, whitespace and punctuation ignored."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _char_f1(prediction, gold):
    prediction, gold = normalize_answer(prediction), normalize_answer(gold)
    if not prediction or not gold:
        return float(prediction == gold)
    common = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def compute_qa_metrics(predictions, references):
    """Exact match and character-level F1, in [0, 100], each the best over an example's gold answers.

    predictions: {id: answer text}; references: {id: [gold answer texts]}. A missing prediction counts as "".
    """
    if not references:
        raise ValueError("compute_qa_metrics needs at least one reference")
    exact, f1 = 0.0, 0.0
    for example_id, golds in references.items():
        prediction = predictions.get(example_id, "")
        exact += max(float(normalize_answer(prediction) == normalize_answer(gold)) for gold in golds)
        f1 += max(_char_f1(prediction, gold) for gold in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}
