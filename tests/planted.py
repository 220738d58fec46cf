"""Planted-score models: real BERT checkpoints with hand-set weights whose scores are known before they run.

A test that only checks the format of the output passes whatever the model says, so it cannot tell a right answer from
a wrong one. These models make the right answer known in advance, so a test can demand exactly it:

- `save_span_model`: a BertForQuestionAnswering whose start and end logits are fixed per token: a character listed in
  `start_scores` / `end_scores` gets that logit, every other token 0. Putting, say, 甲 and 乙 in a paragraph plants the
  answer "甲...乙" at a chosen place (the second window, a window's edge, beyond --max_answer_length).
- `save_choice_model`: a BertForMultipleChoice whose score for a (question, paragraph) pair rises with the share of
  its tokens that are the `marker` character, so the candidate with the densest marker wins.
- `save_marker_choice_model`: a BertForMultipleChoice whose score is a chosen number per marker character, whatever
  the pair's length: a pair holding the marker 標 (once or several times) scores exactly `marker_scores["標"]`, a pair
  without any marker 0. So a test can plant any vector of paragraph scores over a question's candidates (one marker
  kind per candidate), and compute P(paragraph | question) itself.

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

`save_marker_choice_model` differs in its attention: the query of every token and the key of each marker token make
the attention logit of a marker token 50 and of any other 0, so [CLS] attends (all but e^-50) to the marker tokens
alone, or uniformly to all tokens when there is none. The value weights write marker c's chosen value v(c) into a
pair of free dimensions (ordinary tokens write 0), so [CLS] receives the mean v of the marker tokens, independent of
how many other tokens the pair has. LayerNorm, the pooler's tanh and the classifier's factor 10 then give the score
10 tanh(f(v)), f(x) = x / sqrt(1 + x^2 / 16) (the 32-dimensional LayerNorm of four entries +-sqrt(8) and two +-x);
v(c) is that function inverted at the wanted score.
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


MARKER_SCORE_LIMIT = 9.9  # |score| of save_marker_choice_model: 10 tanh(.) with tanh's argument below 4
_MARKER_ATTENTION = 50.0  # the attention logit of a marker token (others 0): e^-50 of the weight leaks elsewhere


def save_marker_choice_model(tokenizer_dir, output_dir, marker_scores):
    """A paragraph-selection checkpoint scoring a (question, paragraph) pair by marker_scores[c] when the marker
    characters it holds are all c (one or several tokens), and 0 when it holds none. Scores within +-9.9.

    A pair holding different markers gets 10 tanh(f(mean of their values)) (see the top of this module): not a sum
    of scores, so plant one kind of marker per candidate, and none in the question."""
    for character, score in marker_scores.items():
        if not abs(score) <= MARKER_SCORE_LIMIT:
            raise ValueError(f"{character!r}: a score within +-{MARKER_SCORE_LIMIT}, got {score}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = BertForMultipleChoice(_config(tokenizer))
    feature = _planted_embeddings(model, tokenizer, sorted(marker_scores))
    layer = model.bert.encoder.layer[0]
    scale = _LAYERNORM_SCALE
    with torch.no_grad():
        # Every token's query is `scale` in dimension 0 (all embeddings have +1 there); a marker's key is
        # key_weight * scale in dimension 0, so the attention logit is scale^2 * key_weight / sqrt(HIDDEN_SIZE).
        layer.attention.self.query.weight[0, 0] = 1.0
        key_weight = _MARKER_ATTENTION * math.sqrt(HIDDEN_SIZE) / scale**2
        for character, score in marker_scores.items():
            layer.attention.self.key.weight[0, feature[character]] = key_weight
            target = math.atanh(score / 10.0)  # the pooler's input wanted: f(x)
            x = target / math.sqrt(1.0 - target**2 / 16.0)  # f inverted
            layer.attention.self.value.weight[_AGGREGATE[0], feature[character]] = x / scale
            layer.attention.self.value.weight[_AGGREGATE[1], feature[character]] = -x / scale
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
