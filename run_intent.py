"""Intent classification: which intent an utterance expresses ("are you a human" -> are_you_a_bot), as sequence
classification of the whole utterance ([CLS] text [SEP]).

The intents are those of --train_file (sorted), saved in the model's config (id2label / label2id), so the checkpoint
predicts intent names (LABEL_0, LABEL_1... included); evaluation reports accuracy. A training file needs at least two
intents: a model of one output would be trained as a regression (problem_type "regression", MSE loss), and one that
always predicts the only intent learns nothing. Example (docs/intent-slot.md has the recommended hyperparameters):

    python run_intent.py --model_name_or_path bert-base-uncased \
        --train_file data/intent/train.json --validation_file data/intent/eval.json --test_file data/intent/test.json \
        --do_train --do_eval --do_predict --output_dir outputs/intent

With --do_predict it writes `pred.csv` to --output_dir: header `id,intent`, one row per test utterance in test order.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from transformers import (
    DataCollatorWithPadding,
    Trainer,
)

from adl_data import load_intent_utterances
from checkpoints import (
    INTENT_CLASSIFICATION,
    checkpoint_to_resume,
    load_model,
    load_tokenizer_and_config,
    record_settings,
)
from cli import InputError, run_main
from metrics import compute_accuracy
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

logger = logging.getLogger(__name__)


@dataclass
class IntentTrainingArguments(CheckedTrainingArguments):
    metric_for_best_model: str | None = field(
        default="accuracy", metadata={"help": "Metric for --load_best_model_at_end and the best checkpoint."}
    )


ARGUMENT_CLASSES = (ModelArguments, UtteranceDataArguments, IntentTrainingArguments)


def prepare_intent_features(examples, tokenizer, max_seq_length, pad_to_max_length=False, label2id=None):
    """Tokenizes the utterances (examples["text"]), each cut to max_seq_length tokens; with `label2id` and
    examples["intent"], adds `labels`, the intent ids."""
    features = tokenizer(
        examples["text"],
        truncation=True,
        max_length=max_seq_length,
        padding="max_length" if pad_to_max_length else False,
    )
    if label2id is not None and "intent" in examples:
        features["labels"] = [label2id[intent] for intent in examples["intent"]]
    return features


def main() -> None:
    """Trains, evaluates and predicts intents as the command line (sys.argv) says; see the top of this module."""
    model_args, data_args, training_args = start_run(ARGUMENT_CLASSES)

    # Read and check every input before anything is written.
    splits, training_intents = load_labelled_splits(data_args, training_args, load_intent_utterances, "intent")
    if training_intents is not None and len(training_intents) < 2:
        raise InputError(
            f"{data_args.train_file}: has one intent only ({training_intents[0]!r}): a classifier needs at least two"
        )
    resume_from = checkpoint_to_resume(training_args, INTENT_CLASSIFICATION)
    check_run_outputs(model_args, data_args, training_args, resume_from)
    tokenizer, config, new_head = load_tokenizer_and_config(
        model_args,
        INTENT_CLASSIFICATION,
        data_args.max_seq_length,
        label_names=training_intents,
    )
    if dry_run_ends(training_args, model_args):
        return
    record_settings(config, INTENT_CLASSIFICATION, max_seq_length=data_args.max_seq_length)
    model = load_model(model_args, INTENT_CLASSIFICATION, config, training_args.seed, new_head)
    intent_names = task_label_names(model, model_args, data_args, splits, "intent")
    label2id = {name: index for index, name in enumerate(intent_names)}
    logger.info(f"{len(intent_names)} intents")

    features = tokenize_utterances(splits, prepare_intent_features, tokenizer, data_args, label2id)
    for split, utterances in splits.items():
        logger.info(f"{split}: {len(utterances)} utterances")

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("eval"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None
        ),
        compute_metrics=compute_accuracy,
    )

    with reported_write_errors(training_args.output_dir):
        if training_args.do_train:
            train_and_save(trainer, resume_from, train_samples=len(features["train"]))

        if training_args.do_eval:
            evaluate_and_save(trainer, eval_samples=len(features["eval"]))

        if training_args.do_predict:
            logits = trainer.predict(features["predict"]).predictions
            intents = [intent_names[index] for index in np.argmax(logits, axis=1)]
            write_submission(trainer, splits["predict"], intents, "intent")


if __name__ == "__main__":
    run_main(main)
