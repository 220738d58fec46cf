"""Features: how a question and a paragraph become model inputs, for both stages, in training and inference alike.

- `PairTemplate` joins a question's and a paragraph's tokens (tokens.py) into one sequence, exactly as the tokenizer
  would encode the pair;
- paragraph selection pairs a question with each candidate (cut to fit), and `DataCollatorForMultipleChoice` pads
  the pairs into (batch, choices, length) tensors;
- span selection cuts a paragraph into overlapping windows (`question_windows`) and maps the answer's characters to
  token positions in each (`answer_token_positions`).

utils_qa.py wraps these in the transformers examples' API (`prepare_*_features`); inference.py calls them directly.
"""

import collections
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from tokens import (
    TokenizedText,
    candidate_separator_ids,
    join_tokens,
    question_token_ids,
    tokenize_texts,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# The window defaults of training and inference (a checkpoint saves the ones it was trained with: checkpoints.py).
MAX_SEQ_LENGTH = 512
DOC_STRIDE = 128
# Chinese QA questions run to about 75 characters (DRCD, CMRC 2018); a longer one is cut so that a window keeps room
# for the paragraph: 96 leaves more than doc_stride 128 tokens of paragraph even with max_seq_length 256.
MAX_QUESTION_LENGTH = 96


@dataclass(frozen=True)
class WindowSettings:
    """How a model reads a question with a paragraph: sequences of at most `max_seq_length` tokens, the question cut
    to `max_question_length` tokens, consecutive windows of a long paragraph sharing `doc_stride` tokens. A checkpoint
    carries the settings it was trained with (checkpoints.window_settings)."""

    max_seq_length: int = MAX_SEQ_LENGTH
    doc_stride: int = DOC_STRIDE
    max_question_length: int = MAX_QUESTION_LENGTH


@dataclass(frozen=True)
class PairTemplate:
    """How a tokenizer joins a question and a paragraph into one sequence: `prefix` question `middle` paragraph
    `suffix` (BERT: [CLS] q [SEP] p [SEP]; RoBERTa: <s> q </s></s> p </s>), and the token type of each of the five
    parts (None for tokenizers without token types).

    Read off the tokenizer's own encoding of a pair, so that a sequence assembled from the question's and the
    paragraph's tokens is exactly what the tokenizer would give for the pair (tests and benchmarks/oracle_offsets.py
    check it on every window).
    """

    prefix: tuple
    middle: tuple
    suffix: tuple
    types: tuple | None  # (prefix, question, middle, paragraph, suffix)

    @classmethod
    def of(cls, tokenizer):
        encoding = tokenizer("a", "b")
        sequence_ids = encoding.sequence_ids(0)
        question = [i for i, s in enumerate(sequence_ids) if s == 0]
        paragraph = [i for i, s in enumerate(sequence_ids) if s == 1]
        bounds = [0, question[0], question[-1] + 1, paragraph[0], paragraph[-1] + 1, len(sequence_ids)]
        parts = [range(bounds[k], bounds[k + 1]) for k in range(5)]
        for part, expected in zip(parts, (None, 0, None, 1, None)):
            if any(sequence_ids[position] != expected for position in part):
                raise ValueError(f"{type(tokenizer).__name__}: a pair of unexpected layout {sequence_ids}")
        ids = encoding["input_ids"]
        types = None
        if "token_type_ids" in encoding:
            type_of_part = [{encoding["token_type_ids"][position] for position in part} for part in parts]
            if any(len(values) > 1 for values in type_of_part):
                raise ValueError(f"{type(tokenizer).__name__}: token types change inside a part of a pair")
            types = tuple(values.pop() if values else 0 for values in type_of_part)
        return cls(*(tuple(ids[position] for position in parts[k]) for k in (0, 2, 4)), types)

    @property
    def num_special_tokens(self):
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def room(self, question_ids, max_seq_length):
        """How many paragraph tokens fit in a sequence of `max_seq_length` tokens after this question."""
        return max_seq_length - len(question_ids) - self.num_special_tokens

    @functools.cached_property
    def _arrays(self):
        """prefix, middle, suffix and types as arrays, made once: assemble runs for every pair and window."""
        types = None if self.types is None else np.asarray(self.types, dtype=np.int64)
        return (*(np.asarray(part, dtype=np.int64) for part in (self.prefix, self.middle, self.suffix)), types)

    def assemble(self, question_ids, paragraph_ids):
        """input_ids and token_type_ids (None without token types) of the pair, and where the paragraph starts."""
        prefix, middle, suffix, types = self._arrays
        question_ids = np.asarray(question_ids, dtype=np.int64)
        paragraph_ids = np.asarray(paragraph_ids, dtype=np.int64)
        input_ids = np.concatenate([prefix, question_ids, middle, paragraph_ids, suffix])
        token_type_ids = None
        if types is not None:
            lengths = [len(prefix), len(question_ids), len(middle), len(paragraph_ids), len(suffix)]
            token_type_ids = np.repeat(types, lengths)
        return input_ids, token_type_ids, len(prefix) + len(question_ids) + len(middle)


def window_spans(num_tokens, room, doc_stride):
    """The [start, end) token ranges of a paragraph's windows: `room` tokens each, consecutive windows sharing
    `doc_stride` tokens, the last one ending at the paragraph's end (how the tokenizer cuts overflowing tokens)."""
    if num_tokens <= room:
        return [(0, num_tokens)]
    spans = []
    for start in range(0, num_tokens, room - doc_stride):
        spans.append((start, min(start + room, num_tokens)))
        if spans[-1][1] == num_tokens:
            return spans
    return spans


def check_window_fits(
    tokenizer: "PreTrainedTokenizerFast", max_seq_length: int, max_question_length: int, doc_stride: int = 0
) -> str | None:
    """Whether a window of `max_seq_length` tokens leaves room for the paragraph after the longest question.

    Windows overlap by `doc_stride` tokens, so the paragraph part of a window must be longer than `doc_stride`.

    Args:
        tokenizer: a fast tokenizer (the special tokens it adds to a pair).
        max_seq_length: the tokens of a window.
        max_question_length: the most tokens a question keeps.
        doc_stride: the tokens consecutive windows share.

    Returns:
        None when it does, else the explanation.
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


def model_inputs(
    input_ids: np.ndarray, token_type_ids: np.ndarray | None, pad_to: int | None, pad_token_id: int
) -> dict[str, list[int]]:
    """The model input lists of one sequence, padded to `pad_to` tokens when given.

    Args:
        input_ids, token_type_ids: the sequence (PairTemplate.assemble); token_type_ids None without token types.
        pad_to: the length to pad to, or None (a sequence already that long or longer is not padded).
        pad_token_id: the tokenizer's padding token.

    Returns:
        {"input_ids", "attention_mask"}, and "token_type_ids" when given.
    """
    padding = max(0, (pad_to or 0) - len(input_ids))
    inputs = {
        "input_ids": input_ids.tolist() + [pad_token_id] * padding,
        "attention_mask": [1] * len(input_ids) + [0] * padding,
    }
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids.tolist() + [0] * padding
    return inputs


# ---------------------------------------------------------------------------------------------------------------------
# Paragraph selection: pairs


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


def mask_filler_choices(logits: torch.Tensor, choice_mask: torch.Tensor) -> torch.Tensor:
    """Gives the filler candidates added by DataCollatorForMultipleChoice the lowest possible score.

    Args:
        logits: (batch, choices) scores.
        choice_mask: the collator's `choice_mask`, True for the real candidates.

    Returns:
        A copy of `logits` with the fillers' scores at the dtype's minimum.
    """
    return logits.masked_fill(~choice_mask.to(logits.device), torch.finfo(logits.dtype).min)


# ---------------------------------------------------------------------------------------------------------------------
# Span selection: windows and labels


@dataclass(frozen=True)
class Window:
    """One window of a question's paragraph: the model inputs and the characters of its paragraph tokens."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    context_start: int  # position of the window's first paragraph token in input_ids
    offsets: np.ndarray  # (paragraph tokens of the window, 2): the characters [start, end) of each


def question_windows(
    question_ids: np.ndarray,
    paragraph: TokenizedText,
    template: "PairTemplate",
    max_seq_length: int = MAX_SEQ_LENGTH,
    doc_stride: int = DOC_STRIDE,
) -> Iterator[Window]:
    """The windows of one (question, paragraph) pair: the paragraph is cut into pieces of as many tokens as fit beside
    the question, consecutive pieces sharing `doc_stride` tokens (window_spans).

    Args:
        question_ids: the question's token ids (tokens.question_token_ids).
        paragraph: the paragraph's tokens.
        template: how the tokenizer joins a question and a paragraph.
        max_seq_length: the tokens of a window.
        doc_stride: the tokens consecutive windows share.

    Returns:
        An iterator over the windows, in the paragraph's order.
    """
    room = template.room(question_ids, max_seq_length)
    for start, end in window_spans(len(paragraph.ids), room, doc_stride):
        input_ids, token_type_ids, context_start = template.assemble(question_ids, paragraph.ids[start:end])
        yield Window(input_ids, token_type_ids, context_start, paragraph.offsets[start:end])


def answer_token_positions(window, start_char, end_char, cls_index):
    """Token positions of the answer characters [start_char, end_char) in a window, or the CLS index twice when the
    answer is not wholly inside the window's part of the paragraph. Tokens of offsets (-1, -1) (the separators of
    joined candidates) are no part of any paragraph."""
    inside = np.flatnonzero(window.offsets[:, 0] >= 0)
    offsets = window.offsets[inside]
    if len(offsets) == 0 or offsets[0, 0] > start_char or offsets[-1, 1] < end_char:
        return cls_index, cls_index
    # The first token that ends after the answer starts, the last token that starts before the answer ends.
    start_token = int(inside[np.argmax(offsets[:, 1] > start_char)])
    end_token = int(inside[np.flatnonzero(offsets[:, 0] < end_char)[-1]])
    return window.context_start + start_token, window.context_start + end_token


def window_features(
    examples: Mapping[str, list],
    tokenizer: "PreTrainedTokenizerFast",
    max_seq_length: int,
    doc_stride: int,
    pad_to_max_length: bool,
    max_question_length: int,
) -> collections.defaultdict[str, list]:
    """The windows of every example as lists of model inputs, each with its example's index in `example_index` and
    its Window in `windows` (both for the callers to use or drop). Each distinct paragraph is tokenized once; the
    context of examples with `candidates` (adl_data.to_squad_examples) is made of their tokens (join_tokens).

    Args:
        examples: columns of SQuAD-style examples (`question`, `context`, and `candidates` with `candidate_starts` for
            joined candidates).
        tokenizer: a fast tokenizer.
        max_seq_length, doc_stride: the windows (question_windows).
        pad_to_max_length: pad every window to `max_seq_length` tokens, else none is padded.
        max_question_length: the most tokens a question keeps.

    Returns:
        {column: one value per window}, windows in the order of the examples.
    """
    template = PairTemplate.of(tokenizer)
    questions = question_token_ids(examples["question"], tokenizer, max_question_length)
    paragraphs = examples["candidates"] if "candidates" in examples else [[context] for context in examples["context"]]
    distinct = list(dict.fromkeys(paragraph for texts in paragraphs for paragraph in texts))
    tokens = dict(zip(distinct, tokenize_texts(distinct, tokenizer)))
    if "candidates" in examples:
        separator_ids = candidate_separator_ids(tokenizer)
        contexts = [
            join_tokens([tokens[paragraph] for paragraph in texts], separator_ids, starts)
            for texts, starts in zip(paragraphs, examples["candidate_starts"])
        ]
    else:
        contexts = [tokens[context] for context in examples["context"]]
    pad_to = max_seq_length if pad_to_max_length else None
    features = collections.defaultdict(list)
    for example_index, (question, context) in enumerate(zip(questions, contexts)):
        for window in question_windows(question, context, template, max_seq_length, doc_stride):
            for name, values in model_inputs(
                window.input_ids, window.token_type_ids, pad_to, tokenizer.pad_token_id
            ).items():
                features[name].append(values)
            features["example_index"].append(example_index)
            features["windows"].append(window)
    return features


def add_answer_positions(
    features: collections.defaultdict[str, list], examples: Mapping[str, list], tokenizer: "PreTrainedTokenizerFast"
) -> None:
    """Adds `start_positions` and `end_positions` to window_features' features: the token positions of the first
    answer of each window's example (answer_token_positions), or the position of the window's first
    tokenizer.cls_token_id twice when the window does not hold the whole answer.

    Args:
        features: window_features' features, with their `windows` and `example_index`.
        examples: the examples they were made of, with SQuAD-style `answers`.
        tokenizer: the tokenizer they were made with.
    """
    for window, example_index in zip(features["windows"], features["example_index"]):
        answers = examples["answers"][example_index]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        cls_index = int(np.flatnonzero(window.input_ids == tokenizer.cls_token_id)[0])
        start_token, end_token = answer_token_positions(window, start_char, end_char, cls_index)
        features["start_positions"].append(start_token)
        features["end_positions"].append(end_token)
