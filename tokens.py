"""Tokens: every text tokenized once per tokenizer, into compact arrays with character offsets, from which every
(question, paragraph) sequence is then assembled (features.py).

- `tokenize_texts` is the one tokenizing function of training, evaluation and inference: exactly the tokenizer's own
  ids and offsets, several times faster for BERT-family tokenizers on Chinese (each ideograph looked up once);
- `question_token_ids` caps a question's length in tokens, for both stages (`truncate_questions` gives the cut text
  itself, which the tests and benchmarks/oracle_offsets.py feed to the tokenizer to compare);
- `ParagraphTokens` keeps each paragraph's tokens for a run (both stages and every ensemble member with the same
  tokenizer share them); `CandidateTokens` adds each question's candidates joined into one text (`join_tokens`:
  end-to-end span selection).
"""

import collections
import hashlib
import itertools
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tokenizers

from adl_data import CANDIDATE_SEPARATOR, join_candidates
from cli import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def truncate_questions(
    questions: list[str], tokenizer: "PreTrainedTokenizerFast", max_question_length: int
) -> list[str]:
    """Cuts each question after its first `max_question_length` tokens, with the tokenizer's own call: the reference
    that tests and benchmarks compare question_token_ids with.

    Args:
        questions: the question texts.
        tokenizer: a fast tokenizer.
        max_question_length: the most tokens a question keeps.

    Returns:
        Each question's text, cut at a character boundary after its last kept token.
    """
    encoded = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_question_length:
            question = question[: offsets[max_question_length - 1][1]]
        truncated.append(question)
    return truncated


def question_token_ids(
    questions: list[str], tokenizer: "PreTrainedTokenizerFast", max_question_length: int
) -> list[np.ndarray]:
    """The token ids of each question, cut to `max_question_length` tokens, for both stages: those of
    truncate_questions' text (a question that is cut is tokenized again, since the cut text may not split into the
    same first tokens).

    Args:
        questions: the question texts.
        tokenizer: a fast tokenizer.
        max_question_length: the most tokens a question keeps.

    Returns:
        One int64 array of token ids per question, without special tokens.
    """
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


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything the tokenizer does (its tokenizer.json): two tokenizers with the same fingerprint give
    the same tokens, so that the paragraph selection and span selection models of one family share them. Kept per
    tokenizer object: a tokenizer is not changed (tokens added) after its first use.

    Args:
        tokenizer: a fast tokenizer.

    Returns:
        A hexadecimal SHA-256 digest.
    """
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


def splits_at_every_ideograph(backend: tokenizers.Tokenizer) -> bool:
    """Whether a tokenizer (its `tokenizers.Tokenizer`) reads each ideograph as a word of its own, so that a text
    can be tokenized as its ideographs (each looked up once) and the runs of other characters between them (each
    tokenized on its own): BERT's normalizer with handle_chinese_chars, BERT's pre-tokenizer and WordPiece, and no
    added token that could match across an ideograph or the spaces put around it (one holding an ideograph or a
    space, or with single_word / lstrip / rstrip, which look at the neighbouring characters).

    Args:
        backend: the tokenizer's own (Rust) tokenizer, `tokenizer.backend_tokenizer`.

    Returns:
        True when tokenize_texts may tokenize ideograph by ideograph.
    """
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


def tokenize_texts(texts: list[str], tokenizer: "PreTrainedTokenizerFast") -> list[TokenizedText]:
    """Tokenizes each text once, without special tokens, with offsets, into compact arrays (a paragraph of a million
    characters takes about 16 bytes a token instead of the tokenizer's Python lists). Exactly what the tokenizer
    itself gives (`tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)`): for BERT-family
    tokenizers, by _tokenize_at_ideographs (several times faster on Chinese; tests and benchmarks/oracle_offsets.py
    compare it with the tokenizer's own on every paragraph of the data and on hostile text).

    Args:
        texts: the texts.
        tokenizer: a fast tokenizer.

    Returns:
        One TokenizedText per text, in order.
    """
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


def candidate_separator_ids(tokenizer: "PreTrainedTokenizerFast") -> np.ndarray:
    """The tokens of adl_data.CANDIDATE_SEPARATOR, which stand between joined candidate paragraphs.

    Args:
        tokenizer: a fast tokenizer.

    Returns:
        The separator's token ids (an InputError when the tokenizer makes none).
    """
    ids = tokenize_texts([CANDIDATE_SEPARATOR], tokenizer)[0].ids
    if len(ids) == 0:
        raise InputError(
            f"{type(tokenizer).__name__}: the tokenizer makes no token of the separator {CANDIDATE_SEPARATOR!r} "
            "between joined candidate paragraphs, so it cannot read them joined"
        )
    return ids


def join_tokens(
    paragraph_tokens: list[TokenizedText], separator_ids: np.ndarray, starts: Sequence[int]
) -> TokenizedText:
    """The TokenizedText of paragraphs joined into one text (adl_data.join_candidates): each paragraph's own tokens,
    their offsets moved to where it starts in the joined text (`starts`), and `separator_ids` between consecutive
    paragraphs with offsets (-1, -1). The separator belongs to no paragraph, so no answer starts, ends or crosses
    there (answer_token_positions, best_spans_of_windows).

    With BERT-family tokenizers these are exactly the tokens of the joined text; tokenizers that merge characters
    across the separator (byte-level BPE) would differ, and training and inference both use these.

    Args:
        paragraph_tokens: each paragraph's tokens, in the order joined.
        separator_ids: candidate_separator_ids.
        starts: the character offset of each paragraph in the joined text (adl_data.JoinedCandidates.starts).

    Returns:
        The tokens of the joined text.
    """
    ids, offsets = [], []
    for position, (tokens, start) in enumerate(zip(paragraph_tokens, starts)):
        if position:
            ids.append(np.asarray(separator_ids, dtype=np.int64))
            offsets.append(np.full((len(separator_ids), 2), -1, dtype=np.int64))
        ids.append(tokens.ids)
        offsets.append(tokens.offsets + start)
    return TokenizedText(np.concatenate(ids), np.concatenate(offsets).reshape(-1, 2))


class ParagraphTokens:
    """Each paragraph of a context tokenized once per tokenizer, for a whole run: every model (of either stage, every
    ensemble member) with the same tokenizer shares the tokens."""

    def __init__(self, context):
        self.context = context
        self.tokens = {}  # (tokenizer fingerprint, paragraph index) -> TokenizedText

    def of(self, tokenizer, paragraph_indices) -> dict[int, TokenizedText]:
        """{paragraph index: its tokens} for `paragraph_indices`, tokenizing those not seen before."""
        fingerprint = tokenizer_fingerprint(tokenizer)
        missing = [p for p in dict.fromkeys(paragraph_indices) if (fingerprint, p) not in self.tokens]
        for p, tokens in zip(missing, tokenize_texts([self.context[p] for p in missing], tokenizer)):
            self.tokens[(fingerprint, p)] = tokens
        return {p: self.tokens[(fingerprint, p)] for p in paragraph_indices}


class CandidateTokens(ParagraphTokens):
    """ParagraphTokens of the context's paragraphs followed by one text per question: its candidates joined in file
    order (adl_data.join_candidates), whose tokens are assembled from the paragraphs' own (join_tokens).
    Text len(context) + q is question q's; `joined[q]` maps its offsets back to paragraphs."""

    def __init__(self, context, questions):
        self.joined = [join_candidates(q["paragraphs"], context) for q in questions]
        self.first_joined = len(context)
        super().__init__(list(context) + [joined.text for joined in self.joined])

    def of(self, tokenizer, paragraph_indices) -> dict[int, TokenizedText]:
        own = [i for i in paragraph_indices if i < self.first_joined]
        joined = {i: self.joined[i - self.first_joined] for i in paragraph_indices if i >= self.first_joined}
        tokens = super().of(tokenizer, own + [p for j in joined.values() for p in j.paragraphs])
        separator_ids = candidate_separator_ids(tokenizer)
        for i, j in joined.items():
            tokens[i] = join_tokens([tokens[p] for p in j.paragraphs], separator_ids, j.starts)
        return {i: tokens[i] for i in paragraph_indices}
