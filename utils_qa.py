"""Feature preparation, post-processing and metrics shared by training (run_swag.py, run_qa.py) and inference.py.

Every transformation between text and model tensors lives here exactly once:

- questions: `question_token_ids` caps a question's length in tokens, for both stages (`truncate_questions` gives
  the cut text itself, which the tests and benchmarks/oracle_offsets.py feed to the tokenizer to compare);
- paragraph selection: `prepare_multiple_choice_features` pairs a question with each candidate paragraph, and
  `DataCollatorForMultipleChoice` pads them into (batch, choices, length) tensors;
- span selection: `prepare_train_features` / `prepare_validation_features` cut a paragraph into overlapping windows
  and map the answer's characters to token positions; `postprocess_qa_predictions` maps logits back to text. The
  context can also be all of a question's candidate paragraphs joined (`join_tokens`, end-to-end span selection);
- long-context models: `question_global_attention` (Longformer's global attention on the question) and
  `keep_block_sparse_attention` (BigBird);
- metrics: `compute_qa_metrics` (exact match and character-level F1 for Chinese, in [0, 100]).

The span-selection functions keep the names and signatures of the transformers examples' run_qa.py / utils_qa.py, so
code can move between the two. `examples` there is a batch (dict of lists) or a datasets.Dataset with `id`, `question`,
`context` and, for training, SQuAD-style `answers` ({"text": [...], "answer_start": [...]}).
"""

import collections
import functools
import hashlib
import inspect
import itertools
import json
import logging
import os
import unicodedata
import weakref
from dataclasses import dataclass

import numpy as np
import tokenizers
import torch

from adl_data import CANDIDATE_SEPARATOR, InputError

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
# Tokens: every text tokenized once, every (question, paragraph) sequence assembled from the pieces


def truncate_questions(questions, tokenizer, max_question_length=MAX_QUESTION_LENGTH):
    """Cuts each question after its first `max_question_length` tokens (at a character boundary of the text)."""
    encoded = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_question_length:
            question = question[: offsets[max_question_length - 1][1]]
        truncated.append(question)
    return truncated


def question_token_ids(questions, tokenizer, max_question_length=MAX_QUESTION_LENGTH):
    """The token ids of each question, cut to `max_question_length` tokens: those of truncate_questions' text (a
    question that is cut is tokenized again, since the cut text may not split into the same first tokens)."""
    encoded = tokenize_texts(questions, tokenizer)
    cut = [i for i, tokens in enumerate(encoded) if len(tokens.ids) > max_question_length]
    again = tokenize_texts([questions[i][: encoded[i].offsets[max_question_length - 1, 1]] for i in cut], tokenizer)
    for i, tokens in zip(cut, again):
        encoded[i] = tokens
    return [tokens.ids for tokens in encoded]


@dataclass(frozen=True)
class TokenizedText:
    """A text's tokens (no special tokens) and the characters [start, end) of the text each one covers."""

    ids: np.ndarray  # (tokens,) int64
    offsets: np.ndarray  # (tokens, 2) int64


# A text longer than this is tokenized alone, so that no call holds the Python lists of several such texts at once.
CHARACTERS_PER_TOKENIZER_CALL = 100_000


_fingerprints = weakref.WeakKeyDictionary()  # tokenizer -> tokenizer_fingerprint
_backends = collections.OrderedDict()  # fingerprint -> _Backend, the most recently used last
BACKENDS_KEPT = 4
# Tokenized runs of other characters kept per backend (a few tens of MB at most).
RUNS_KEPT = 200_000


def tokenizer_fingerprint(tokenizer):
    """A digest of everything the tokenizer does (its tokenizer.json): two tokenizers with the same fingerprint give
    the same tokens, so that the paragraph selection and span selection models of one family share them. Kept per
    tokenizer object: a tokenizer is not changed (tokens added) after its first use."""
    if tokenizer not in _fingerprints:
        backend = tokenizer.backend_tokenizer
        # Whether special tokens' text is read as text (split_special_tokens) is not part of tokenizer.json.
        described = f"{backend.to_str()}\nencode_special_tokens={backend.encode_special_tokens}"
        _fingerprints[tokenizer] = hashlib.sha256(described.encode()).hexdigest()
    return _fingerprints[tokenizer]


class _Backend:
    """A copy of a fast tokenizer's own (Rust) tokenizer without truncation or padding (calling it directly skips the
    Python dictionaries the transformers wrapper builds around every encoding), and, when the tokenizer reads every
    ideograph as a word of its own, the token of each ideograph."""

    def __init__(self, tokenizer):
        self.rust = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
        self.rust.no_truncation()
        self.rust.no_padding()
        self.rust.encode_special_tokens = tokenizer.backend_tokenizer.encode_special_tokens
        # Token id of each code point from IDEOGRAPHS_START: UNASKED until a text holds it, NOT_ALONE when it is
        # not one token covering the character; None when the tokenizer does not split at every ideograph.
        self.ideograph_ids = None
        if splits_at_every_ideograph(self.rust):
            self.ideograph_ids = np.full(IDEOGRAPHS_END - IDEOGRAPHS_START, UNASKED, dtype=np.int64)
        self.runs = {}  # text of a run of other characters -> its (ids, offsets), for _tokenize_at_ideographs

    def tokens_of_runs(self, runs):
        """The (ids, offsets) of each of the distinct `runs` (texts between ideographs), each tokenized once per
        backend: a comma or a year recurs in every paragraph. At most RUNS_KEPT are kept."""
        new = [run for run in runs if run not in self.runs]
        encoded = {
            run: (encoding.ids, encoding.offsets)
            for run, encoding in zip(new, self.rust.encode_batch(new, add_special_tokens=False))
        }
        tokens = [encoded[run] if run in encoded else self.runs[run] for run in runs]
        if len(self.runs) + len(encoded) > RUNS_KEPT:
            self.runs.clear()
        if len(encoded) <= RUNS_KEPT:
            self.runs.update(encoded)
        return tokens


def _backend(tokenizer):
    fingerprint = tokenizer_fingerprint(tokenizer)
    if fingerprint not in _backends:
        _backends[fingerprint] = _Backend(tokenizer)
        while len(_backends) > BACKENDS_KEPT:
            _backends.popitem(last=False)
    _backends.move_to_end(fingerprint)
    return _backends[fingerprint]


# CJK Unified Ideographs (U+4E00-U+9FFF) and Extension A (U+3400-U+4DBF), without the Yijing hexagram symbols
# (U+4DC0-U+4DFF) between them. A BertNormalizer with handle_chinese_chars puts spaces around each of these, and none
# of them changes under cleaning, NFD, accent stripping or lowercasing: each is a word of its own, tokenized the
# same whatever its neighbours are. Nine in ten characters of Chinese paragraphs are such ideographs.
IDEOGRAPHS_START, IDEOGRAPHS_END = 0x3400, 0xA000
HEXAGRAMS_START, HEXAGRAMS_END = 0x4DC0, 0x4E00
UNASKED, NOT_ALONE = -2, -1


def splits_at_every_ideograph(backend):
    """Whether a tokenizer (its `tokenizers.Tokenizer`) reads each ideograph as a word of its own, so that a text
    can be tokenized as its ideographs (each looked up once) and the runs of other characters between them (each
    tokenized on its own): BERT's normalizer with handle_chinese_chars, BERT's pre-tokenizer and WordPiece, and no
    added token that could match across an ideograph or the spaces put around it (one holding an ideograph or a
    space, or with single_word / lstrip / rstrip, which look at the neighbouring characters)."""
    normalizer = json.loads(backend.normalizer.__getstate__()) if backend.normalizer is not None else {}
    pre_tokenizer = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else {}
    if normalizer.get("type") != "BertNormalizer" or not normalizer.get("handle_chinese_chars"):
        return False
    if pre_tokenizer.get("type") != "BertPreTokenizer" or not isinstance(backend.model, tokenizers.models.WordPiece):
        return False
    for token in backend.get_added_tokens_decoder().values():
        if token.single_word or token.lstrip or token.rstrip:
            return False
        # A normalized token is matched in the normalized text, where e.g. a compatibility ideograph has become an
        # ideograph between spaces.
        forms = [token.content]
        if token.normalized:
            forms.append(backend.normalizer.normalize_str(token.content))
        for form in forms:
            if any(c.isspace() or IDEOGRAPHS_START <= ord(c) < IDEOGRAPHS_END for c in form):
                return False
    return True


def _encodings_to_tokens(encodings):
    return [
        TokenizedText(np.array(encoding.ids, dtype=np.int64), np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2))
        for encoding in encodings
    ]


def tokenize_texts(texts, tokenizer):
    """Tokenizes each text once, without special tokens, with offsets, into compact arrays (a paragraph of a million
    characters takes about 16 bytes a token instead of the tokenizer's Python lists). Exactly what the tokenizer
    itself gives (`tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)`): for BERT-family
    tokenizers, by _tokenize_at_ideographs (several times faster on Chinese; tests and benchmarks/oracle_offsets.py
    compare it with the tokenizer's own on every paragraph of the data and on hostile text)."""
    results, batch, batch_characters = [], [], 0
    backend = _backend(tokenizer)

    def flush():
        if batch:
            if backend.ideograph_ids is None:
                results.extend(_encodings_to_tokens(backend.rust.encode_batch(batch, add_special_tokens=False)))
            else:
                results.extend(_tokenize_at_ideographs(batch, backend))
            batch.clear()

    for text in texts:
        if batch and batch_characters + len(text) > CHARACTERS_PER_TOKENIZER_CALL:
            flush()
            batch_characters = 0
        batch.append(text)
        batch_characters += len(text)
    flush()
    return results


def _tokenize_at_ideographs(texts, backend):
    """tokenize_texts for a tokenizer that splits at every ideograph (splits_at_every_ideograph): each ideograph is
    the token the tokenizer gives it alone (asked once per tokenizer), and each run of other characters between
    them (punctuation, digits, Latin words, spaces) is tokenized by the tokenizer on its own, once per distinct run,
    its offsets moved to where the run starts. The pieces are put back in text order."""
    joined = "".join(texts)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
    text_starts = np.cumsum([0] + [len(text) for text in texts])

    is_ideograph = (codes >= IDEOGRAPHS_START) & (codes < IDEOGRAPHS_END)
    is_ideograph &= (codes < HEXAGRAMS_START) | (codes >= HEXAGRAMS_END)
    table_index = codes[is_ideograph] - IDEOGRAPHS_START
    unasked = np.unique(table_index[backend.ideograph_ids[table_index] == UNASKED])
    if len(unasked):
        encodings = backend.rust.encode_batch([chr(IDEOGRAPHS_START + i) for i in unasked], add_special_tokens=False)
        for i, encoding in zip(unasked, encodings):
            one_token = len(encoding.ids) == 1 and encoding.offsets[0] == (0, 1)
            backend.ideograph_ids[i] = encoding.ids[0] if one_token else NOT_ALONE
    token_of_character = np.full(len(codes), NOT_ALONE, dtype=np.int64)
    token_of_character[is_ideograph] = backend.ideograph_ids[table_index]
    alone = token_of_character >= 0

    # Runs of the other characters, never across two texts.
    other = ~alone
    text_start = np.zeros(len(codes) + 1, dtype=bool)
    text_start[text_starts] = True
    after_alone = np.concatenate([[True], alone[:-1]])
    before_alone = np.concatenate([alone[1:], [True]])
    run_starts = np.flatnonzero(other & (text_start[:-1] | after_alone))
    run_ends = np.flatnonzero(other & (text_start[1:] | before_alone)) + 1
    # Each distinct run (its kind) is tokenized once; each run's tokens are then its kind's, moved to where it starts.
    # Runs of one character (most: a comma, a full stop) are told apart by their code point, longer ones by their text.
    single = run_ends - run_starts == 1
    single_codes, single_kinds = np.unique(codes[run_starts[single]], return_inverse=True)
    longer = {}
    longer_kinds = [
        longer.setdefault(joined[s:e], len(longer))
        for s, e in zip(run_starts[~single].tolist(), run_ends[~single].tolist())
    ]
    run_kinds = np.empty(len(run_starts), dtype=np.int64)
    run_kinds[single] = single_kinds.reshape(-1)
    run_kinds[~single] = len(single_codes) + np.array(longer_kinds, dtype=np.int64)
    kinds = backend.tokens_of_runs([chr(code) for code in single_codes.tolist()] + list(longer))
    kind_counts = np.array([len(ids) for ids, _ in kinds], dtype=np.int64)
    kind_first = np.cumsum(kind_counts) - kind_counts
    kind_ids = np.fromiter(itertools.chain.from_iterable(ids for ids, _ in kinds), dtype=np.int64)
    offset_pairs = [offset for _, offsets in kinds for offset in offsets]
    kind_offsets = np.array(offset_pairs, dtype=np.int64).reshape(-1, 2)
    run_counts = kind_counts[run_kinds]
    run_of_token = np.repeat(np.arange(len(run_starts)), run_counts)
    within_run = np.arange(len(run_of_token)) - np.repeat(np.cumsum(run_counts) - run_counts, run_counts)
    flat = kind_first[run_kinds][run_of_token] + within_run

    # Ideograph tokens and run tokens merged in order of the character where each starts.
    positions = np.flatnonzero(alone)
    keys = np.concatenate([positions, run_starts[run_of_token]])
    order = np.argsort(keys, kind="stable")  # a run's tokens share its start and keep their order
    keys = keys[order]
    ids = np.concatenate([token_of_character[positions], kind_ids[flat]])[order]
    offsets = np.concatenate(
        [np.stack([positions, positions + 1], axis=1), kind_offsets[flat] + run_starts[run_of_token][:, None]]
    )[order]
    cuts = np.searchsorted(keys, text_starts)
    return [
        TokenizedText(ids[cuts[t] : cuts[t + 1]], offsets[cuts[t] : cuts[t + 1]] - text_starts[t])
        for t in range(len(texts))
    ]


def candidate_separator_ids(tokenizer):
    """The tokens of adl_data.CANDIDATE_SEPARATOR, which stand between joined candidate paragraphs."""
    ids = tokenize_texts([CANDIDATE_SEPARATOR], tokenizer)[0].ids
    if len(ids) == 0:
        raise InputError(
            f"{type(tokenizer).__name__}: the tokenizer makes no token of the separator {CANDIDATE_SEPARATOR!r} "
            "between joined candidate paragraphs, so it cannot read them joined"
        )
    return ids


def join_tokens(paragraph_tokens, separator_ids, starts):
    """The TokenizedText of paragraphs joined into one text (adl_data.join_candidates): each paragraph's own tokens,
    their offsets moved to where it starts in the joined text (`starts`), and `separator_ids` between consecutive
    paragraphs with offsets (-1, -1). The separator belongs to no paragraph, so no answer starts, ends or crosses
    there (answer_token_positions, best_spans_of_windows).

    With BERT-family tokenizers these are exactly the tokens of the joined text; tokenizers that merge characters
    across the separator (byte-level BPE) would differ, and training and inference both use these."""
    ids, offsets = [], []
    for position, (tokens, start) in enumerate(zip(paragraph_tokens, starts)):
        if position:
            ids.append(np.asarray(separator_ids, dtype=np.int64))
            offsets.append(np.full((len(separator_ids), 2), -1, dtype=np.int64))
        ids.append(tokens.ids)
        offsets.append(tokens.offsets + start)
    return TokenizedText(np.concatenate(ids), np.concatenate(offsets).reshape(-1, 2))


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


def position_limit(config, tokenizer):
    """The longest sequence a model reads: its position embeddings, or less where its tokenizer says so (RoBERTa
    keeps 2 of its 514 positions for padding)."""
    limit = getattr(config, "max_position_embeddings", None) or MAX_SEQ_LENGTH
    if tokenizer.model_max_length and tokenizer.model_max_length < limit:
        limit = tokenizer.model_max_length
    return limit


def check_model_reads(config, tokenizer, max_seq_length):
    """Returns None when the model of `config` can read what `tokenizer` makes of sequences of `max_seq_length`
    tokens, else an explanation. A tokenizer larger than the embeddings would index past them; one much smaller than
    them (a checkpoint saved without tokenizer.json loads a tokenizer of a few special tokens) maps text to [UNK]."""
    limit = position_limit(config, tokenizer)
    if max_seq_length > limit:
        return f"--max_seq_length {max_seq_length} is more than the model reads ({limit} tokens)"
    embeddings = getattr(config, "vocab_size", None)
    if embeddings and len(tokenizer) > embeddings:
        return f"the tokenizer has {len(tokenizer):,} tokens but the model only {embeddings:,} embeddings"
    if embeddings and len(tokenizer) < embeddings / 2:
        return (
            f"the tokenizer has {len(tokenizer):,} tokens for a model of {embeddings:,} embeddings: its tokenizer "
            "files are missing or wrong (save the checkpoint with its tokenizer.json)"
        )
    return None


def _model_inputs(input_ids, token_type_ids, pad_to, pad_token_id):
    """The model input lists of one sequence, padded to `pad_to` tokens when given."""
    padding = max(0, (pad_to or 0) - len(input_ids))
    inputs = {
        "input_ids": input_ids.tolist() + [pad_token_id] * padding,
        "attention_mask": [1] * len(input_ids) + [0] * padding,
    }
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids.tolist() + [0] * padding
    return inputs


# ---------------------------------------------------------------------------------------------------------------------
# Paragraph selection (multiple choice)


def prepare_multiple_choice_features(
    examples, tokenizer, max_seq_length=MAX_SEQ_LENGTH, pad_to_max_length=False, max_question_length=MAX_QUESTION_LENGTH
):
    """Pairs each question with each of its candidate paragraphs (the paragraph cut to fit `max_seq_length`).

    `examples` has `question` (str) and `candidates` (list of paragraph texts, any number >= 1) per example, and
    optionally `label` (index of the relevant candidate). Returns per example a list of encodings, one per candidate,
    and `labels` when labels were given. Each distinct paragraph is tokenized once.
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
            for name, values in _model_inputs(input_ids, token_type_ids, pad_to, tokenizer.pad_token_id).items():
                pairs[name].append(values)
        for name, values in pairs.items():
            features[name].append(values)
    if "label" in examples:
        features["labels"] = list(examples["label"])
    return dict(features)


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


@dataclass(frozen=True)
class Window:
    """One window of a question's paragraph: the model inputs and the characters of its paragraph tokens."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    context_start: int  # position of the window's first paragraph token in input_ids
    offsets: np.ndarray  # (paragraph tokens of the window, 2): the characters [start, end) of each


def question_windows(question_ids, paragraph, template, max_seq_length=MAX_SEQ_LENGTH, doc_stride=DOC_STRIDE):
    """The windows of one (question, paragraph) pair, `paragraph` being a TokenizedText: the paragraph is cut into
    pieces of as many tokens as fit beside the question, consecutive pieces sharing `doc_stride` tokens."""
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


def _window_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length):
    """The windows of every example as lists of model inputs, each with its example's index in `example_index` and
    its Window in `windows` (both for the callers to use or drop). Each distinct paragraph is tokenized once; the
    context of examples with `candidates` (adl_data.to_squad_examples) is made of their tokens (join_tokens)."""
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
            for name, values in _model_inputs(
                window.input_ids, window.token_type_ids, pad_to, tokenizer.pad_token_id
            ).items():
                features[name].append(values)
            features["example_index"].append(example_index)
            features["windows"].append(window)
    return features


def _add_answer_positions(features, examples, tokenizer):
    for window, example_index in zip(features["windows"], features["example_index"]):
        answers = examples["answers"][example_index]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        cls_index = int(np.flatnonzero(window.input_ids == tokenizer.cls_token_id)[0])
        start_token, end_token = answer_token_positions(window, start_char, end_char, cls_index)
        features["start_positions"].append(start_token)
        features["end_positions"].append(end_token)


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
    features = _window_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length)
    _add_answer_positions(features, examples, tokenizer)
    del features["windows"], features["example_index"]
    return dict(features)


def prepare_validation_features(
    examples,
    tokenizer,
    max_seq_length=MAX_SEQ_LENGTH,
    doc_stride=DOC_STRIDE,
    pad_to_max_length=False,
    max_question_length=MAX_QUESTION_LENGTH,
):
    """Windows with `example_id` and `offset_mapping` (None for tokens outside the paragraph, the separators of joined
    candidates included), for post-processing.

    When the examples have `answers`, the windows also get `start_positions`/`end_positions` (as in training), so
    that the Trainer reports an evaluation loss comparable to the training loss.
    """
    features = _window_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length, max_question_length)
    if "answers" in examples:
        _add_answer_positions(features, examples, tokenizer)
    features["example_id"] = [examples["id"][index] for index in features["example_index"]]
    features["offset_mapping"] = [
        [None] * window.context_start
        + [offset if offset[0] >= 0 else None for offset in window.offsets.tolist()]
        + [None] * (len(input_ids) - window.context_start - len(window.offsets))
        for window, input_ids in zip(features["windows"], features["input_ids"])
    ]
    del features["windows"], features["example_index"]
    return dict(features)


# ---------------------------------------------------------------------------------------------------------------------
# Span selection: post-processing


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


def best_spans_of_windows(all_start_logits, all_end_logits, all_char_starts, max_answer_length, n_best_size):
    """For each window, its `n_best_size` highest-scoring valid spans (a WindowSpans).

    A span is valid when all its tokens are paragraph tokens (char_starts >= 0) of one run (paragraph_runs: a span
    never crosses the separator of joined candidates), end >= start, and it is at most `max_answer_length` tokens
    long. All valid spans of a chunk of runs are scored at once: scores[r, i, k] = start_logit[r, i] +
    end_logit[r, i + k], the span of run r from token i to token i + k. Ties keep the order of the start token, then
    of the length.
    """
    runs = [(w, run) for w, char_starts in enumerate(all_char_starts) for run in paragraph_runs(char_starts)]
    spans_of_runs = []
    for chunk_start in range(0, len(runs), WINDOWS_PER_CHUNK):
        chunk = runs[chunk_start : chunk_start + WINDOWS_PER_CHUNK]
        width = max(len(run) for _, run in chunk)
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


def best_spans_on_device(
    start_logits, end_logits, context_start, context_end, max_answer_length, n_best_size, runs=None
):
    """best_spans_of_windows for a batch of windows, in torch on the logits' own device (inside an exported graph, so
    that only a few numbers per window leave the device): the same spans, scores and order.

    start_logits, end_logits: (windows, tokens); the paragraph part of window w is [context_start[w], context_end[w]).
    For windows over joined candidates, `runs` (windows, tokens) gives each token's run of paragraph tokens
    (token_runs; -1 for the separators): a span must start and end in one run, so that none crosses a separator.
    Returns start tokens, end tokens and scores, each (windows, n_best_size), best first (score -inf where a window has
    fewer valid spans), and the log partition of each window, (windows,).
    """
    windows, width = start_logits.shape
    positions = torch.arange(width, device=start_logits.device)
    in_context = (positions[None, :] >= context_start[:, None]) & (positions[None, :] < context_end[:, None])
    if runs is not None:
        in_context &= runs >= 0
    # n_best_size invalid tokens more, so that every window has at least n_best_size starts to rank whatever its
    # length (an exported graph then needs no guard on the length).
    nothing = torch.full((windows, n_best_size), float("-inf"), device=start_logits.device)
    start = torch.cat([start_logits.float().masked_fill(~in_context, float("-inf")), nothing], dim=1)
    end = torch.cat([end_logits.float().masked_fill(~in_context, float("-inf")), nothing], dim=1)
    padding = torch.full((windows, max_answer_length - 1), float("-inf"), device=end.device)
    span_ends = torch.arange(start.shape[1], device=end.device)[:, None] + torch.arange(
        max_answer_length, device=end.device
    )
    ends_of_spans = torch.cat([end, padding], dim=1)[:, span_ends]  # (windows, tokens, lengths)
    if runs is not None:
        # Runs are separated by tokens of no run: a span whose two ends are in one run lies wholly inside it.
        no_run = torch.full((windows, n_best_size + max_answer_length - 1), -1, dtype=runs.dtype, device=runs.device)
        runs = torch.cat([runs, no_run], dim=1)
        same_run = runs[:, span_ends] == runs[:, : start.shape[1], None]
        ends_of_spans = ends_of_spans.masked_fill(~same_run, float("-inf"))
    best_of_start = start + ends_of_spans.max(dim=2).values
    # Stable sorts give the order of best_spans_of_windows: score descending, then start, then length.
    starts = torch.sort(torch.sort(-best_of_start, dim=1, stable=True).indices[:, :n_best_size], dim=1).values
    scores = (
        start.gather(1, starts)[:, :, None]
        + ends_of_spans.gather(1, starts[:, :, None].expand(-1, -1, max_answer_length))
    ).reshape(windows, -1)
    order = torch.sort(-scores, dim=1, stable=True).indices[:, :n_best_size]
    start_tokens = starts.gather(1, torch.div(order, max_answer_length, rounding_mode="floor"))
    end_tokens = start_tokens + order % max_answer_length
    log_partition = torch.logsumexp((start[:, :, None] + ends_of_spans).reshape(windows, -1), dim=1)
    return start_tokens, end_tokens, scores.gather(1, order), log_partition


def character_spans(window_spans, char_starts, char_ends):
    """A window's best spans in characters: (starts, ends, scores, start token, end token) arrays."""
    starts, ends = window_spans.start_tokens, window_spans.end_tokens
    return char_starts[starts], char_ends[ends], window_spans.scores, starts, ends


def merge_character_spans(pieces, n_best_size):
    """The `n_best_size` best distinct character spans of the windows of one paragraph, best first.

    `pieces` holds, window by window in the paragraph's order, arrays (starts, ends, scores, ...extra). A span found
    in two windows (they overlap) keeps its better score; ties keep the windows' order. Returns the same arrays,
    merged."""
    if not pieces:
        return None
    columns = [np.concatenate(column) for column in zip(*pieces)]
    starts, ends, scores = columns[:3]
    order = np.argsort(-scores, kind="stable")
    _, first = np.unique((starts[order] << 32) | ends[order], return_index=True)
    keep = order[np.sort(first)][:n_best_size]
    return [column[keep] for column in columns]


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
    writes `predictions.json` and `nbest_predictions.json` (the `n_best_size` best distinct spans, prefixed with
    `prefix_`).
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


# ---------------------------------------------------------------------------------------------------------------------
# Long-context models (Longformer, BigBird), which read all joined candidates in one window of up to 4,096 tokens


def question_end_token(model, tokenizer):
    """For a model that takes a `global_attention_mask` (Longformer), the token that ends the question in a pair (the
    first separator: BERT's [SEP], RoBERTa's </s>); None for other models.

    LongformerForQuestionAnswering left to itself puts global attention on the tokens before its config's
    sep_token_id only when every sequence has exactly three of them (RoBERTa's pairs), and fails otherwise: the
    Chinese Longformers use BERT tokenizers, whose pairs have two [SEP]. So we always set it, from the tokenizer's
    own pair layout (question_global_attention)."""
    if "global_attention_mask" not in inspect.signature(model.forward).parameters:
        return None
    return PairTemplate.of(tokenizer).middle[0]


def question_global_attention(input_ids, end_token):
    """The global attention mask of span selection: 1 on the tokens before the first `end_token` of each sequence
    ([CLS] and the question, as LongformerForQuestionAnswering does for RoBERTa pairs), 0 elsewhere."""
    is_end = input_ids == end_token
    question_end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), 0)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (positions[None, :] < question_end[:, None]).long()


def keep_block_sparse_attention(model):
    """Keeps a BigBird model on block-sparse attention for every batch long enough for it.

    BigBirdModel.forward switches the model to full attention, for good, the first time a batch is too short for
    block-sparse attention (about 11 blocks of tokens); every later batch of 4,096 tokens would then need the memory of
    full attention. A hook switches it back before each forward; short batches still run full attention."""
    if getattr(model.config, "attention_type", None) != "block_sparse":
        return
    model.register_forward_pre_hook(lambda module, args: module.base_model.set_attention_type("block_sparse"))


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
