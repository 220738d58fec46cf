"""Planted-score models: real BERT checkpoints with hand-set weights whose scores are known before they run.

A test that only checks the format of the output passes whatever the model says, so it cannot tell a right answer from
a wrong one. These models make the right answer known in advance, so a test can demand exactly it:

- `save_span_model`: a BertForQuestionAnswering whose start and end logits are fixed per token: a character listed in
  `start_scores` / `end_scores` gets that logit, every other token 0. Putting, say, 甲 and 乙 in a paragraph plants the
  answer "甲...乙" at a chosen place (the second window, a window's edge, beyond --max_answer_length).
- `save_choice_model`: a BertForMultipleChoice whose score for a (question, paragraph) pair rises with the share of
  its tokens that are the `marker` character, so the candidate with the densest marker wins.

Both are ordinary checkpoints (config.json, model.safetensors, tokenizer): every loader, export and batch size sees
them as it would see a fine-tuned model.

How the weights make that happen. Every token's embedding has four non-zero entries, +1 and -1 in two pairs of
dimensions: dimensions (0, 1) for all, then (2, 3) for an ordinary token, or a pair of its own for a planted character.
All embeddings then have mean 0 and the same norm, so LayerNorm scales each of them by the same factor and a linear
head reads the planted pair exactly. Position and token-type embeddings are zero. The one transformer layer has zero
query and key weights, so attention is uniform over the tokens the attention mask keeps (padding never counts), and
zero feed-forward weights. The span model has zero value weights too, so each token's final state is its own
embedding; the choice model's value weights copy the marker dimension into a pair of free dimensions, so the [CLS]
state holds the share of marker tokens, which the pooler and classifier turn into the score.
"""

import math
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForMultipleChoice, BertForQuestionAnswering

HIDDEN_SIZE = 32
_AGGREGATE = (HIDDEN_SIZE - 2, HIDDEN_SIZE - 1)  # the choice model's share of marker tokens
_LAYERNORM_SCALE = math.sqrt(HIDDEN_SIZE) / 2  # what LayerNorm multiplies each 4-entry embedding by


def _config(tokenizer):
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )


def _planted_embeddings(model, tokenizer, characters):
    """Zeroes every weight, then gives each token its embedding; returns {character: its feature dimension}."""
    if 2 * len(characters) + 4 > _AGGREGATE[0]:
        raise ValueError(f"at most {(_AGGREGATE[0] - 4) // 2} planted characters")
    feature = {}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
        embeddings = model.bert.embeddings.word_embeddings.weight
        embeddings[:, 0], embeddings[:, 1], embeddings[:, 2], embeddings[:, 3] = 1.0, -1.0, 1.0, -1.0
        for index, character in enumerate(characters):
            token_id = tokenizer.convert_tokens_to_ids(character)
            if token_id == tokenizer.unk_token_id:
                raise ValueError(f"{character!r} is not in the vocabulary")
            dimension = 4 + 2 * index
            embeddings[token_id, 2:4] = 0.0
            embeddings[token_id, dimension], embeddings[token_id, dimension + 1] = 1.0, -1.0
            feature[character] = dimension
    return feature


def save_span_model(tokenizer_dir, output_dir, start_scores, end_scores):
    """A span-selection checkpoint whose start logit is start_scores[c] on the token of character c (0 elsewhere),
    and the same for end logits."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = BertForQuestionAnswering(_config(tokenizer))
    feature = _planted_embeddings(model, tokenizer, sorted(set(start_scores) | set(end_scores)))
    with torch.no_grad():
        for row, scores in enumerate((start_scores, end_scores)):
            for character, score in scores.items():
                model.qa_outputs.weight[row, feature[character]] = score / _LAYERNORM_SCALE
    return _save(model, tokenizer, output_dir)


def save_choice_model(tokenizer_dir, output_dir, marker):
    """A paragraph-selection checkpoint scoring a pair by tanh(g(share of `marker` tokens)) * 10, g increasing."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = BertForMultipleChoice(_config(tokenizer))
    feature = _planted_embeddings(model, tokenizer, [marker])[marker]
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        layer.attention.self.value.weight[_AGGREGATE[0], feature] = 1.0
        layer.attention.self.value.weight[_AGGREGATE[1], feature] = -1.0
        for dimension in _AGGREGATE:
            layer.attention.output.dense.weight[dimension, dimension] = 1.0
        model.bert.pooler.dense.weight[0, _AGGREGATE[0]] = 1.0
        model.classifier.weight[0, 0] = 10.0
    return _save(model, tokenizer, output_dir)


def _save(model, tokenizer, output_dir):
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
