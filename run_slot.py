"""Slot tagging: a BIO tag for every word of an utterance (token classification), e.g. for a restaurant booking

    tokens: i    want  a  table  for  three     people    at  7    pm
    tags:   O    O     O  O      O    B-people  I-people  O   B-time I-time

The words are given (the "tokens" of each record) and tokenized with `is_split_into_words`: each word becomes one or
more word pieces (a word the vocabulary lacks is cut into several, e.g. "highchairs" -> "high ##chair ##s"). A word's
tag goes on its first piece; its other pieces, [CLS], [SEP] and padding get the label -100, which the loss ignores.
Predictions are read back one tag per word, from the word's first piece, so every word gets exactly one tag:

- a word that the tokenizer turns into no piece at all (an empty string, or only characters BERT drops, such as
  U+FFFD or control characters; the course data has empty words) is given to the model as the unknown token
  ([UNK], <unk>), so it has a first piece like any other word;
- a word cut off by --max_seq_length (its first piece beyond the cut) has no label in training and gets the tag
  "O" (CUT_WORD_TAG) in evaluation and prediction, and evaluation counts it like any other word. The log says how
  many utterances were cut; with a word-piece vocabulary the longest utterance of the course data is 57 tokens
  (benchmarks/oracle_slot_tags.py), so the default of 128 cuts none.

The tag set is that of --train_file (sorted), saved in the model's config (id2label / label2id), so the checkpoint
predicts tag names. Metrics: joint accuracy (an utterance counts only when every one of its tags is right: the course's
score), token accuracy (over all words), and entity precision / recall / F1 from seqeval (strict IOB2: an entity counts
when its type and its exact span are right). Example (docs/intent-slot.md has the recommended hyperparameters):

    python run_slot.py --model_name_or_path bert-base-uncased \
        --train_file data/slot/train.json --validation_file data/slot/eval.json --test_file data/slot/test.json \
        --do_train --do_eval --do_predict --output_dir outputs/slot

With --do_predict it writes `pred.csv` to --output_dir: header `id,tags`, one row per test utterance in test order,
its tags space-separated, one per word.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from transformers import (
    DataCollatorForTokenClassification,
    Trainer,
)

from adl_data import load_slot_utterances
from checkpoints import (
    SLOT_TAGGING,
    checkpoint_to_resume,
    load_model,
    load_tokenizer_and_config,
    record_settings,
)
from cli import InputError, run_main
from training import (
    CheckedTrainingArguments,
    ModelArguments,
    UtteranceDataArguments,
    check_run_outputs,
    dry_run_ends,
    evaluate_and_save,
    load_labelled_splits,
    reported_write_errors,
    start_run,
    task_label_names,
    tokenize_utterances,
    train_and_save,
    write_submission,
)

if TYPE_CHECKING:
    import numpy as np
    from transformers import BatchEncoding, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# The tag of a word that truncation cut off: "no slot", the tag of most words, and one that starts no entity.
CUT_WORD_TAG = "O"
# The label of the positions that carry no tag (pieces after a word's first, [CLS], [SEP], padding): the loss skips it.
IGNORED_LABEL = -100


@dataclass
class SlotTrainingArguments(CheckedTrainingArguments):
    metric_for_best_model: str | None = field(
        default="joint_accuracy", metadata={"help": "Metric for --load_best_model_at_end and the best checkpoint."}
    )


ARGUMENT_CLASSES = (ModelArguments, UtteranceDataArguments, SlotTrainingArguments)


def words_with_pieces(utterances: list[list[str]], tokenizer: "PreTrainedTokenizerFast") -> list[list[str]]:
    """Each utterance's words, those that the tokenizer turns into no piece at all replaced by its unknown token.

    Args:
        utterances: each utterance's words.
        tokenizer: a fast tokenizer.

    Returns:
        New lists of words, one per utterance.
    """
    encodings = tokenizer(utterances, is_split_into_words=True, add_special_tokens=False)
    replaced = []
    for index, words in enumerate(utterances):
        with_pieces = set(encodings.word_ids(index))
        replaced.append([word if i in with_pieces else tokenizer.unk_token for i, word in enumerate(words)])
    return replaced


def prepare_slot_features(
    examples: Mapping[str, list],
    tokenizer: "PreTrainedTokenizerFast",
    max_seq_length: int,
    pad_to_max_length: bool = False,
    label2id: dict[str, int] | None = None,
) -> "BatchEncoding":
    """Tokenizes the utterances (examples["tokens"]) word by word, each cut to max_seq_length tokens.

    Args:
        examples: a batch of load_slot_utterances records, by column.
        tokenizer: a fast tokenizer.
        max_seq_length: the most tokens of an utterance, special tokens included.
        pad_to_max_length: pad every utterance to `max_seq_length` tokens, else none is padded.
        label2id: {tag: id}, or None for no labels.

    Returns:
        The model inputs and `first_pieces`: for each utterance, the position of each word's first piece, or -1 for a
        word cut off by truncation. With `label2id` and examples["tags"], also `labels`: each word's tag id on its
        first piece, IGNORED_LABEL everywhere else.
    """
    words = words_with_pieces(examples["tokens"], tokenizer)
    features = tokenizer(
        words,
        is_split_into_words=True,
        truncation=True,
        max_length=max_seq_length,
        padding="max_length" if pad_to_max_length else False,
    )
    labelled = label2id is not None and "tags" in examples
    features["first_pieces"] = []
    if labelled:
        features["labels"] = []
    for index, utterance in enumerate(words):
        first_pieces = [-1] * len(utterance)
        for position, word in enumerate(features.word_ids(index)):
            if word is not None and first_pieces[word] == -1:
                first_pieces[word] = position
        features["first_pieces"].append(first_pieces)
        if labelled:
            labels = [IGNORED_LABEL] * len(features["input_ids"][index])
            for word, position in enumerate(first_pieces):
                if position >= 0:
                    labels[position] = label2id[examples["tags"][index][word]]
            features["labels"].append(labels)
    return features


def tags_per_word(
    predicted_ids: "np.ndarray", first_pieces: list[list[int]], label_names: list[str]
) -> list[list[str]]:
    """One tag per word of each utterance: the label predicted on the word's first piece, or CUT_WORD_TAG for a word
    cut off by truncation.

    Args:
        predicted_ids: (utterances, positions) label ids: predicted_ids[i][p] is the one predicted at position p of
            utterance i.
        first_pieces: prepare_slot_features' `first_pieces`.
        label_names: the tag of each label id.

    Returns:
        Each utterance's tags, one per word.
    """
    return [
        [label_names[predicted_ids[index][position]] if position >= 0 else CUT_WORD_TAG for position in positions]
        for index, positions in enumerate(first_pieces)
    ]


def compute_slot_metrics(predicted_tags, gold_tags):
    """Joint accuracy (utterances with every tag right), token accuracy (words with the right tag, over all words)
    and seqeval's entity precision, recall and F1 (micro-averaged over entity types, strict IOB2), all in [0, 1]."""
    right_words = sum(p == g for predicted, gold in zip(predicted_tags, gold_tags) for p, g in zip(predicted, gold))
    entity_options = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {
        "joint_accuracy": sum(p == g for p, g in zip(predicted_tags, gold_tags)) / len(gold_tags),
        "token_accuracy": right_words / sum(len(gold) for gold in gold_tags),
        "entity_precision": float(precision_score(gold_tags, predicted_tags, **entity_options)),
        "entity_recall": float(recall_score(gold_tags, predicted_tags, **entity_options)),
        "entity_f1": float(f1_score(gold_tags, predicted_tags, **entity_options)),
    }


def score_predictions(eval_prediction, first_pieces, gold_tags, label_names):
    """Trainer compute_metrics: the slot metrics of the predicted label ids (see predicted_label_ids)."""
    return compute_slot_metrics(tags_per_word(eval_prediction.predictions, first_pieces, label_names), gold_tags)


def predicted_label_ids(logits, labels):
    """Keeps the most likely label of each position, not all the logits (Trainer preprocess_logits_for_metrics)."""
    return logits.argmax(dim=-1)


def main() -> None:
    """Trains, evaluates and predicts slot tags as the command line (sys.argv) says; see the top of this module."""
    model_args, data_args, training_args = start_run(ARGUMENT_CLASSES)

    # Read and check every input before anything is written.
    splits, training_tags = load_labelled_splits(data_args, training_args, load_slot_utterances, "tags")
    if training_tags is not None and len(training_tags) < 2:
        # One class: the loss is 0 from the first step and the model learns nothing, whatever it is trained for.
        raise InputError(
            f"{data_args.train_file}: has one tag only ({training_tags[0]!r}): a tagger needs at least two"
        )
    resume_from = checkpoint_to_resume(training_args, SLOT_TAGGING)
    check_run_outputs(model_args, data_args, training_args, resume_from)
    # Byte-level BPE tokenizers (roberta-base) mark a word start by the space before it: words need one too.
    tokenizer, config, new_head = load_tokenizer_and_config(
        model_args,
        SLOT_TAGGING,
        data_args.max_seq_length,
        label_names=training_tags,
        tokenizer_options={"add_prefix_space": True},
    )
    if dry_run_ends(training_args, model_args):
        return
    record_settings(config, SLOT_TAGGING, max_seq_length=data_args.max_seq_length)
    model = load_model(model_args, SLOT_TAGGING, config, training_args.seed, new_head)
    tag_names = task_label_names(model, model_args, data_args, splits, "tags")
    label2id = {name: index for index, name in enumerate(tag_names)}
    logger.info(f"{len(tag_names)} tags: {' '.join(tag_names)}")

    # The model gets the features without `first_pieces`, which read its predictions back one tag per word.
    features = tokenize_utterances(splits, prepare_slot_features, tokenizer, data_args, label2id)
    first_pieces = {}
    for split, utterances in splits.items():
        first_pieces[split] = features[split]["first_pieces"]
        features[split] = features[split].remove_columns("first_pieces")
        cut = [pieces.count(-1) for pieces in first_pieces[split] if -1 in pieces]
        logger.info(f"{split}: {len(utterances)} utterances, {sum(map(len, first_pieces[split]))} words")
        if cut:
            logger.warning(
                f"{split}: {len(cut)} utterances longer than --max_seq_length {data_args.max_seq_length} tokens; "
                f"their {sum(cut)} words past the cut get no label in training and the tag {CUT_WORD_TAG} in "
                "evaluation and prediction"
            )

    compute_metrics = None
    if training_args.do_eval:
        compute_metrics = partial(
            score_predictions,
            first_pieces=first_pieces["eval"],
            gold_tags=[utterance["tags"] for utterance in splits["eval"]],
            label_names=tag_names,
        )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("eval"),
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(
            tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None
        ),
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=predicted_label_ids,
    )

    with reported_write_errors(training_args.output_dir):
        if training_args.do_train:
            train_and_save(trainer, resume_from, train_samples=len(features["train"]))

        if training_args.do_eval:
            evaluate_and_save(trainer, eval_samples=len(features["eval"]))

        if training_args.do_predict:
            predicted_ids = trainer.predict(features["predict"]).predictions
            tags = tags_per_word(predicted_ids, first_pieces["predict"], tag_names)
            write_submission(trainer, splits["predict"], [" ".join(word_tags) for word_tags in tags], "tags")


if __name__ == "__main__":
    run_main(main)
