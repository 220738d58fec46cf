"""Paragraph selection: pairing a question with its candidates, padding, and the filler candidates."""

import torch

import pytest

from features import DataCollatorForMultipleChoice, mask_filler_choices
from tokens import truncate_questions
from utils_qa import prepare_multiple_choice_features


def test_each_question_is_paired_with_each_candidate(tokenizer):
    examples = {"question": ["誰在位?", "哪裡?"], "candidates": [["景宗在位。", "臺北" * 300, "甲"], ["乙丙"]], "label": [0, 0]}
    features = prepare_multiple_choice_features(examples, tokenizer, max_seq_length=64, max_question_length=8)
    assert [len(choices) for choices in features["input_ids"]] == [3, 1]
    assert features["labels"] == [0, 0]
    first = tokenizer.decode(features["input_ids"][0][0])
    assert first.replace(" ", "") == "[CLS]誰在位?[SEP]景宗在位。[SEP]"
    # The long paragraph is cut to fit; the question is kept whole.
    assert len(features["input_ids"][0][1]) == 64
    assert tokenizer.decode(features["input_ids"][0][1]).replace(" ", "").startswith("[CLS]誰在位?[SEP]臺北臺北")


def test_collator_pads_lengths_and_candidate_counts(tokenizer):
    examples = {"question": ["誰?", "哪裡?"], "candidates": [["景宗在位。", "甲", "乙丙丁戊"], ["乙丙"]], "label": [2, 0]}
    features = prepare_multiple_choice_features(examples, tokenizer, max_seq_length=64)
    rows = [{key: features[key][i] for key in features} for i in range(2)]
    batch = DataCollatorForMultipleChoice(tokenizer)(rows)
    longest = max(len(ids) for choices in features["input_ids"] for ids in choices)
    assert batch["input_ids"].shape == (2, 3, longest)
    assert batch["choice_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["labels"].tolist() == [2, 0]
    # Filler candidates repeat the first one, so no sequence is all padding.
    assert torch.equal(batch["input_ids"][1, 1], batch["input_ids"][1, 0])
    assert batch["attention_mask"][0, 1].sum() == len(features["input_ids"][0][1])

    logits = torch.tensor([[0.1, 0.2, 0.3], [-5.0, 9.0, 9.0]])
    masked = mask_filler_choices(logits, batch["choice_mask"])
    assert masked.argmax(dim=1).tolist() == [2, 0]
    assert torch.nn.functional.cross_entropy(masked, batch["labels"]).isfinite()


@pytest.mark.parametrize("max_seq_length,pad", [(512, False), (64, False), (40, True)])
def test_pairs_assembled_from_tokenized_pieces_equal_the_tokenizers_own(tokenizer, sample_context, sample_train,
                                                                         max_seq_length, pad):
    questions = sample_train[:40]
    examples = {"question": [q["question"] for q in questions],
                "candidates": [[sample_context[p] for p in q["paragraphs"]] for q in questions]}
    features = prepare_multiple_choice_features(examples, tokenizer, max_seq_length, pad_to_max_length=pad,
                                                max_question_length=12)
    truncated = truncate_questions(examples["question"], tokenizer, 12)
    for i, candidates in enumerate(examples["candidates"]):
        reference = tokenizer([truncated[i]] * len(candidates), candidates, truncation="only_second",
                              max_length=max_seq_length, padding="max_length" if pad else False)
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            assert features[name][i] == reference[name], (name, i)


def test_collator_pads_a_batch_of_one_question_to_a_multiple_of_its_setting(tokenizer):
    """A batch of one question (the last batch of an epoch can be that small), and pad_to_multiple_of 8 (fp16 and bf16
    runs): [CLS] 誰 ? [SEP] + 5 or 2 paragraph characters + [SEP] make 10 and 7 tokens, padded to 16."""
    examples = {"question": ["誰?"], "candidates": [["景宗在位。", "甲乙"]], "label": [1]}
    features = prepare_multiple_choice_features(examples, tokenizer, max_seq_length=64)
    assert [len(ids) for ids in features["input_ids"][0]] == [10, 7]
    collator = DataCollatorForMultipleChoice(tokenizer, pad_to_multiple_of=8)
    batch = collator([{key: features[key][0] for key in features}])
    assert batch["input_ids"].shape == (1, 2, 16)
    assert batch["attention_mask"].sum(dim=2).tolist() == [[10, 7]]
    assert batch["choice_mask"].tolist() == [[True, True]] and batch["labels"].tolist() == [1]
