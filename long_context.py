"""Long-context models (Longformer, BigBird), which read all joined candidates of a question in one window of up to
4,096 tokens (docs/end-to-end.md): what they need beyond a BERT, in training (run_qa.py) and inference alike."""

import inspect
from typing import TYPE_CHECKING

import torch

from features import PairTemplate

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast


def question_end_token(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerFast") -> int | None:
    """For a model that takes a `global_attention_mask` (Longformer), the token that ends the question in a pair (the
    first separator: BERT's [SEP], RoBERTa's </s>); None for other models.

    LongformerForQuestionAnswering left to itself puts global attention on the tokens before its config's
    sep_token_id only when every sequence has exactly three of them (RoBERTa's pairs), and fails otherwise: the
    Chinese Longformers use BERT tokenizers, whose pairs have two [SEP]. So we always set it, from the tokenizer's
    own pair layout (question_global_attention).

    Args:
        model: the span-selection model.
        tokenizer: its tokenizer.

    Returns:
        The token id, or None.
    """
    if "global_attention_mask" not in inspect.signature(model.forward).parameters:
        return None
    return PairTemplate.of(tokenizer).middle[0]


def question_global_attention(input_ids: torch.Tensor, end_token: int) -> torch.Tensor:
    """The global attention mask of span selection: 1 on the tokens before the first `end_token` of each sequence
    ([CLS] and the question, as LongformerForQuestionAnswering does for RoBERTa pairs), 0 elsewhere.

    Args:
        input_ids: (batch, length) token ids.
        end_token: question_end_token.

    Returns:
        A (batch, length) int64 mask; all 0 for a sequence without `end_token`.
    """
    is_end = input_ids == end_token
    question_end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), 0)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (positions[None, :] < question_end[:, None]).long()


def keep_block_sparse_attention(model: "PreTrainedModel") -> None:
    """Keeps a BigBird model on block-sparse attention for every batch long enough for it.

    BigBirdModel.forward switches the model to full attention, for good, the first time a batch is too short for
    block-sparse attention (about 11 blocks of tokens); every later batch of 4,096 tokens would then need the memory of
    full attention. A hook switches it back before each forward; short batches still run full attention.

    Args:
        model: any model; only one whose config has attention_type "block_sparse" gets the hook.
    """
    if getattr(model.config, "attention_type", None) != "block_sparse":
        return
    model.register_forward_pre_hook(lambda module, args: module.base_model.set_attention_type("block_sparse"))


def has_sparse_attention(model: "PreTrainedModel") -> bool:
    """Whether a model's attention is sparse: Longformer (sliding windows and global attention) or BigBird (blocks,
    or full attention for short batches).

    Args:
        model: any model.

    Returns:
        True when its forward takes a global_attention_mask or its config has attention_type "block_sparse".
    """
    takes_global_attention = "global_attention_mask" in inspect.signature(model.forward).parameters
    return takes_global_attention or getattr(model.config, "attention_type", None) == "block_sparse"
