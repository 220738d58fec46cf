"""tokens.tokenize_texts must give exactly the tokenizer's own tokens and offsets. For BERT-family tokenizers it
tokenizes each ideograph alone and the runs of other characters between them (_tokenize_at_ideographs); these tests
compare it with the tokenizer on the sample paragraphs, on thousands of random hostile texts, and check that
tokenizers for which that split would be wrong take the tokenizer's own path."""

import random

import numpy as np
import pytest
from tokenizers import AddedToken, normalizers
from transformers import AutoTokenizer

import tokens as tokens_module
from make_tiny_model import make_tiny_model

# Characters and strings that stress every boundary of the split: ideographs at both ends of both ranges, the Yijing
# hexagram symbols between the ranges (not ideographs: they join the neighbouring letters into one word), ideographs
# of the other ranges (Extension B, compatibility ideographs, which NFD maps to another), combining marks after an
# ideograph (removed with the accents), spacing marks, control and format characters, every kind of space,
# full-width forms, punctuation, Latin words with accents and ligatures, digits, emoji, and the special tokens, which
# the tokenizer matches in the text.
HOSTILE = [
    *"中文的一是了不在有人這個們來到時大地為子中",
    "\u3400", "\u4dbf", "\u4e00", "\u9fff", "\u4dc0", "\u4dff", "\ua000", "\u33ff",
    "\U00020000", "\U0002a6df", "\uf900", "\ufa6d", "\u2f00",
    "\u0301", "\u0308", "\u0903", "\u200b", "\u200d", "\ufeff", "\u00ad", "\x07", "\x1f", "\x7f", "\ufffd",
    " ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2028", "\u2029", "\u202f",
    *"，。、「」『』（）：；！？《》〈〉—…·‧・～",
    *",.;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`",
    "ｆｕｌｌ", "ＡＢＣ１２３", "①", "Ⅷ", "㎞", "℃",
    "abc", "ABC", "Café", "cafe\u0301", "İstanbul", "straße", "ﬁne", "ǅ", "naïve",
    "0", "12", "2024", "3.14", "1,000",
    "😀", "👍🏽", "🇹🇼",
    "[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]", "[MASK", "MASK]",
]


@pytest.fixture(scope="module")
def sparse_tokenizer(tmp_path_factory, sample_context):
    """A BERT tokenizer whose vocabulary holds only the sample's characters and a few words: other ideographs are
    [UNK], and Latin words split into several pieces."""
    base = make_tiny_model(tmp_path_factory.mktemp("sparse"), texts=[sample_context[:20]], words=200)
    return AutoTokenizer.from_pretrained(base)


def own_tokens(tokenizer, texts):
    """What the tokenizer itself gives, through the transformers call a user would make."""
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [
        (np.array(ids, dtype=np.int64), np.array(offsets, dtype=np.int64).reshape(-1, 2))
        for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"])
    ]


def assert_same_tokens(tokenizer, texts):
    ours = tokens_module.tokenize_texts(texts, tokenizer)
    assert len(ours) == len(texts)
    for text, tokens, (ids, offsets) in zip(texts, ours, own_tokens(tokenizer, texts)):
        assert tokens.ids.tolist() == ids.tolist(), repr(text)
        assert tokens.offsets.tolist() == offsets.tolist(), repr(text)
        # Integers, not floats equal to them (101.0 == 101): NumPy makes float64 of an empty list or iterator.
        assert tokens.ids.dtype == np.int64 and tokens.offsets.dtype == np.int64, repr(text)
        assert tokens.offsets.shape == (len(ids), 2), repr(text)


def random_texts(seed, count, longest=40):
    generator = random.Random(seed)
    return [
        "".join(generator.choice(HOSTILE) for _ in range(generator.randint(0, longest))) for _ in range(count)
    ]


def test_bert_tokenizers_take_the_ideograph_split(tokenizer, sparse_tokenizer):
    """Otherwise the comparisons below would only test the tokenizer against itself."""
    assert tokens_module._backend(tokenizer).ideograph_ids is not None
    assert tokens_module._backend(sparse_tokenizer).ideograph_ids is not None


def test_every_sample_paragraph_and_question_gives_the_tokenizers_own_tokens(
    tokenizer, sparse_tokenizer, sample_context, sample_train
):
    texts = sample_context + [question["question"] for question in sample_train]
    for each in (tokenizer, sparse_tokenizer):
        assert_same_tokens(each, texts)


@pytest.mark.parametrize("seed", range(4))
def test_random_hostile_texts_give_the_tokenizers_own_tokens(tokenizer, sparse_tokenizer, seed):
    """Texts of the HOSTILE pieces in random order, tokenized in batches of different sizes (so that a run of other
    characters also meets the end of a text, and texts are empty)."""
    texts = random_texts(seed, 600)
    for each in (tokenizer, sparse_tokenizer):
        assert_same_tokens(each, texts)
        for batch_start in range(0, 60, 7):
            assert_same_tokens(each, texts[batch_start : batch_start + 7])


def test_the_kept_runs_are_dropped_when_full_and_asked_again(tiny_base, monkeypatch):
    """Runs of other characters are tokenized once and kept (at most RUNS_KEPT): a full store starts again."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    tokenizer.add_tokens(["kept"])  # a tokenizer of its own, so that no earlier test filled its store
    monkeypatch.setattr(tokens_module, "RUNS_KEPT", 5)
    texts = random_texts(21, 200)
    assert_same_tokens(tokenizer, texts)  # more distinct runs than can be kept: none is
    runs = tokens_module._backend(tokenizer).runs
    sizes = [len(runs)]
    for text in texts[:60]:  # a few runs each: kept, found again, or the store starts again
        assert_same_tokens(tokenizer, [text])
        sizes.append(len(runs))
    assert max(sizes) <= 5 and len(set(sizes)) > 2


def test_texts_split_across_tokenizer_calls_keep_their_order(tokenizer, sample_context, monkeypatch):
    monkeypatch.setattr(tokens_module, "CHARACTERS_PER_TOKENIZER_CALL", 50)
    assert_same_tokens(tokenizer, sample_context[:8] + ["", "中", "a"] + random_texts(7, 30))


def test_texts_of_only_ideographs_only_other_characters_or_nothing(tokenizer, sparse_tokenizer):
    texts = ["", "中文", "abc 12", "中", "。", "[SEP]", "中[SEP]文", "\u0301", "中\u0301", "  ", ""]
    for each in (tokenizer, sparse_tokenizer):
        assert_same_tokens(each, texts)
        assert_same_tokens(each, [""])
        assert tokens_module.tokenize_texts([], each) == []


def copy_of(tokenizer):
    return AutoTokenizer.from_pretrained(tokenizer.name_or_path)


@pytest.mark.parametrize(
    "change",
    [
        "chinese characters not split",
        "added token with an ideograph",
        "added token with a compatibility ideograph",
        "added token with a space",
        "added token single word",
        "added token lstrip",
        "added token rstrip",
        "another pre-tokenizer",
    ],
)
def test_tokenizers_the_split_would_get_wrong_take_their_own_path(tiny_base, change):
    """Each change makes an ideograph's tokens depend on its neighbours (or may): such tokenizers must not take the
    ideograph split, and still give their own tokens."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    backend = tokenizer.backend_tokenizer
    if change == "chinese characters not split":
        backend.normalizer = normalizers.BertNormalizer(handle_chinese_chars=False)
    elif change == "another pre-tokenizer":
        from tokenizers import pre_tokenizers

        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    elif change == "added token with an ideograph":
        tokenizer.add_tokens(["中文"])
    elif change == "added token with a compatibility ideograph":
        tokenizer.add_tokens(["a\uf902"])  # normalized (NFD) to a + U+8ECA between spaces: matches "a車"
    elif change == "added token with a space":
        tokenizer.add_tokens(["a b"])
    else:
        option = change.split()[-1] if change.endswith("strip") else "single_word"
        tokenizer.add_tokens([AddedToken("ab", **{option: True})])
    assert tokens_module._backend(tokenizer).ideograph_ids is None
    texts = ["我是中文a b測試ab", "中文", " ab 中ab中 abc", "a b中", "a車", "中a車文"] + random_texts(11, 100)
    assert_same_tokens(tokenizer, texts)


def test_special_tokens_read_as_text_when_the_tokenizer_says_so(tiny_base):
    """With split_special_tokens, "[SEP]" in a paragraph is five characters, not the separator; such a tokenizer
    gives another fingerprint, so it does not share the tokens of the same files read the usual way."""
    splitting = AutoTokenizer.from_pretrained(tiny_base, split_special_tokens=True)
    texts = ["[SEP]", "中[MASK]文", "a [CLS] b"] + random_texts(5, 100)
    assert_same_tokens(splitting, texts)
    assert len(tokens_module.tokenize_texts(["[SEP]"], splitting)[0].ids) > 1
    usual = AutoTokenizer.from_pretrained(tiny_base)
    assert tokens_module.tokenizer_fingerprint(splitting) != tokens_module.tokenizer_fingerprint(usual)
    assert_same_tokens(usual, texts)


def test_tokenizers_with_the_same_files_share_one_backend(tokenizer):
    """The paragraph-selection and span-selection tokenizers of one family are read from two folders: their
    paragraphs are tokenized once (tokens_module.ParagraphTokens keys them by this fingerprint)."""
    other = copy_of(tokenizer)
    assert other is not tokenizer
    assert tokens_module.tokenizer_fingerprint(other) == tokens_module.tokenizer_fingerprint(tokenizer)
    assert tokens_module._backend(other) is tokens_module._backend(tokenizer)
    changed = copy_of(tokenizer)
    changed.add_tokens(["新詞"])
    assert tokens_module.tokenizer_fingerprint(changed) != tokens_module.tokenizer_fingerprint(tokenizer)
