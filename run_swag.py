"""Paragraph selection, the first stage, as multiple choice: which candidate paragraph of a question holds its answer.

Each question is paired with each of its candidate paragraphs; the model scores every pair and is trained with a
softmax over the candidates of a question. Example (see README.md for the recommended hyperparameters):

    python run_swag.py --model_name_or_path hfl/chinese-macbert-base \
        --context_file data/context.json --train_file data/train.json --validation_file data/valid.json \
        --do_train --do_eval --output_dir outputs/paragraph-selection

With --do_predict --test_file test.json it also writes `test_with_relevant.json` to --output_dir: the test questions
with the predicted paragraph as "relevant", ready for `run_qa.py --do_predict --test_file`.
"""

import logging
import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import Trainer

from adl_data import load_context, load_questions, to_multiple_choice_examples
from checkpoints import (
    PARAGRAPH_SELECTION,
    checkpoint_to_resume,
    load_model,
    load_tokenizer_and_config,
    record_settings,
)
from cli import InputError, run_main
from features import (
    DataCollatorForMultipleChoice,
    check_window_fits,
    mask_filler_choices,
)
from metrics import compute_accuracy
from outputs import write_json
from training import (
    CheckedTrainingArguments,
    ModelArguments,
    QuestionDataArguments,
    check_run_outputs,
    dry_run_ends,
    first_n,
    reported_write_errors,
    save_metrics,
    start_run,
    train_and_save,
)
from utils_qa import prepare_multiple_choice_features

logger = logging.getLogger(__name__)


@dataclass
class ParagraphSelectionTrainingArguments(CheckedTrainingArguments):
    metric_for_best_model: str | None = field(
        default="accuracy", metadata={"help": "Metric for --load_best_model_at_end and the best checkpoint."}
    )


ARGUMENT_CLASSES = (ModelArguments, QuestionDataArguments, ParagraphSelectionTrainingArguments)


class MultipleChoiceTrainer(Trainer):
    """Trainer whose loss and predictions ignore the filler candidates of DataCollatorForMultipleChoice."""

    # compute_loss returns the mean over its batch; the Trainer divides it for gradient accumulation.
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        choice_mask = inputs.pop("choice_mask")
        outputs = model(**inputs)
        outputs.logits = mask_filler_choices(outputs.logits, choice_mask)
        loss = F.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if "labels" in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        choice_mask = inputs.pop("choice_mask")
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = model(**inputs).logits
        return None, mask_filler_choices(logits, choice_mask).detach(), None


def chosen_paragraphs(questions, logits):
    """{question id: the index (into context.json) of its highest-scoring candidate paragraph}."""
    best = np.argmax(logits, axis=1)
    return {q["id"]: q["paragraphs"][int(choice)] for q, choice in zip(questions, best)}


def build_dataset(questions, context, tokenizer, data_args, description):
    dataset = Dataset.from_dict(to_multiple_choice_examples(questions, context))
    return dataset.map(
        partial(
            prepare_multiple_choice_features,
            tokenizer=tokenizer,
            max_seq_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            max_question_length=data_args.max_question_length,
        ),
        batched=True,
        remove_columns=dataset.column_names,
        num_proc=data_args.preprocessing_num_workers,
        desc=description,
    )


def main() -> None:
    """Trains, evaluates and predicts paragraph selection as the command line (sys.argv) says; see the top of this
    module."""
    model_args, data_args, training_args = start_run(ARGUMENT_CLASSES)

    # Read and check every input before anything is written.
    context = load_context(data_args.context_file)
    splits = {}
    if training_args.do_train:
        splits["train"] = first_n(
            load_questions(data_args.train_file, context, need_relevant=True), data_args.max_train_samples
        )
    if training_args.do_eval:
        splits["eval"] = first_n(
            load_questions(data_args.validation_file, context, need_relevant=True), data_args.max_eval_samples
        )
    if training_args.do_predict:
        splits["predict"] = first_n(load_questions(data_args.test_file, context), data_args.max_predict_samples)
    resume_from = checkpoint_to_resume(training_args, PARAGRAPH_SELECTION)
    check_run_outputs(model_args, data_args, training_args, resume_from)
    tokenizer, config, _ = load_tokenizer_and_config(model_args, PARAGRAPH_SELECTION, data_args.max_seq_length)
    problem = check_window_fits(tokenizer, data_args.max_seq_length, data_args.max_question_length)
    if problem:
        raise InputError(problem)
    if dry_run_ends(training_args, model_args):
        return
    record_settings(
        config,
        PARAGRAPH_SELECTION,
        max_seq_length=data_args.max_seq_length,
        max_question_length=data_args.max_question_length,
    )
    model = load_model(model_args, PARAGRAPH_SELECTION, config, training_args.seed, new_head=False)

    datasets = {
        split: build_dataset(questions, context, tokenizer, data_args, f"Tokenizing {split} pairs")
        for split, questions in splits.items()
    }
    for split, questions in splits.items():
        pairs = sum(len(q["paragraphs"]) for q in questions)
        logger.info(f"{split}: {len(questions)} questions, {pairs} question-paragraph pairs")

    trainer = MultipleChoiceTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("eval"),
        processing_class=tokenizer,
        data_collator=DataCollatorForMultipleChoice(
            tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None
        ),
        compute_metrics=compute_accuracy,
    )

    with reported_write_errors(training_args.output_dir):
        if training_args.do_train:
            train_and_save(trainer, resume_from, train_samples=len(datasets["train"]))

        if training_args.do_eval:
            # One pass gives both the metrics and the chosen paragraphs, written out so that the accuracy can be checked
            # (and the mistakes read) question by question.
            output = trainer.predict(datasets["eval"], metric_key_prefix="eval")
            metrics = {**output.metrics, "eval_samples": len(datasets["eval"])}
            trainer.log(metrics)
            save_metrics(trainer, "eval", metrics)
            if trainer.is_world_process_zero():
                chosen = chosen_paragraphs(splits["eval"], output.predictions)
                path = write_json(os.path.join(training_args.output_dir, "eval_predictions.json"), chosen)
                logger.info(f"Wrote the chosen paragraph of {len(chosen)} validation questions to {path}")

        if training_args.do_predict:
            chosen = chosen_paragraphs(splits["predict"], trainer.predict(datasets["predict"]).predictions)
            records = [
                {"id": q["id"], "question": q["question"], "paragraphs": q["paragraphs"], "relevant": chosen[q["id"]]}
                for q in splits["predict"]
            ]
            if trainer.is_world_process_zero():
                path = write_json(os.path.join(training_args.output_dir, "test_with_relevant.json"), records)
                logger.info(f"Wrote the predicted paragraphs of {len(records)} questions to {path}")


if __name__ == "__main__":
    run_main(main)
