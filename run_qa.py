"""Span selection, the second stage: find the answer inside the relevant paragraph (extractive question answering).

A paragraph longer than a window is cut into windows of --max_seq_length tokens overlapping by --doc_stride, so no
answer is lost; evaluation maps the logits of every window back to text (utils_qa.postprocess_qa_predictions) and
reports exact match and character-level F1 in [0, 100]. Example (see README.md for the recommended hyperparameters):

    python run_qa.py --model_name_or_path hfl/chinese-macbert-base \
        --context_file data/context.json --train_file data/train.json --validation_file data/valid.json \
        --do_train --do_eval --output_dir outputs/span-selection

Training and evaluation use each question's gold paragraph ("relevant"). --do_predict needs a test file whose questions
carry "relevant" too, such as the `test_with_relevant.json` that `run_swag.py --do_predict` writes; it writes
`predict_predictions.json` and `pred.csv` to --output_dir. For the whole two-stage pipeline, use inference.py.

With --context_mode candidates, a question is read with all its candidate paragraphs joined into one text instead
(adl_data.join_candidates; shuffled per question in training), cut into windows as usual: one end-to-end model that
needs no paragraph selection (inference.py --end_to_end; docs/end-to-end.md). Test files then need no "relevant".
"""

import logging
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer
from transformers.trainer_utils import PredictionOutput, speed_metrics

from adl_data import load_context, load_questions, to_squad_examples
from checkpoints import (
    SPAN_SELECTION,
    checkpoint_to_resume,
    load_model,
    load_tokenizer_and_config,
    record_settings,
)
from cli import InputError, run_main
from features import DOC_STRIDE, check_window_fits
from long_context import (
    keep_block_sparse_attention,
    question_end_token,
    question_global_attention,
)
from metrics import compute_qa_metrics
from outputs import write_predictions_csv
from spans import MAX_ANSWER_LENGTH, MAX_N_BEST_SIZE, N_BEST_SIZE
from training import (
    CheckedTrainingArguments,
    ModelArguments,
    QuestionDataArguments,
    check_run_outputs,
    dry_run_ends,
    evaluate_and_save,
    first_n,
    reported_write_errors,
    require_at_least,
    require_at_most,
    start_run,
    train_and_save,
)
from utils_qa import (
    postprocess_qa_predictions,
    prepare_train_features,
    prepare_validation_features,
)

logger = logging.getLogger(__name__)


@dataclass
class SpanSelectionDataArguments(QuestionDataArguments):
    doc_stride: int = field(
        default=DOC_STRIDE, metadata={"help": "Tokens shared by consecutive windows of a long paragraph."}
    )
    n_best_size: int = field(
        default=N_BEST_SIZE, metadata={"help": f"Candidate spans kept per question (at most {MAX_N_BEST_SIZE})."}
    )
    max_answer_length: int = field(
        default=MAX_ANSWER_LENGTH, metadata={"help": "Longest answer, in tokens, that can be predicted."}
    )
    context_mode: Literal["relevant", "candidates"] = field(
        default="relevant",
        metadata={
            "help": "What a question is read with: 'relevant', its relevant paragraph (the second stage of the "
            "pipeline); 'candidates', all its candidate paragraphs joined into one text (an end-to-end model, for "
            "inference.py --end_to_end), in file order, shuffled per question with --seed in training."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        require_at_least(self, 1, "n_best_size", "max_answer_length")
        require_at_least(self, 0, "doc_stride")
        require_at_most(self, MAX_N_BEST_SIZE, "n_best_size")


@dataclass
class SpanSelectionTrainingArguments(CheckedTrainingArguments):
    metric_for_best_model: str | None = field(
        default="exact_match", metadata={"help": "Metric for --load_best_model_at_end and the best checkpoint."}
    )


ARGUMENT_CLASSES = (ModelArguments, SpanSelectionDataArguments, SpanSelectionTrainingArguments)


@dataclass
class DataCollatorForSpanSelection(DataCollatorWithPadding):
    """Pads a batch of windows; for a model that takes global attention (Longformer), adds it on the question."""

    question_end_token: int | None = None  # long_context.question_end_token

    def __call__(self, features):
        batch = super().__call__(features)
        if self.question_end_token is not None:
            batch["global_attention_mask"] = question_global_attention(batch["input_ids"], self.question_end_token)
        return batch


class QuestionAnsweringTrainer(Trainer):
    """Trainer whose evaluate() and predict() turn window logits into answers and score them.

    The Trainer gathers the logits of all windows from all processes, in dataset order and each exactly once, so
    post-processing sees every window of every question whatever the number of processes.
    """

    def __init__(self, *args, eval_examples=None, post_process_function=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.post_process_function = post_process_function

    def evaluate(
        self, eval_dataset=None, eval_examples=None, ignore_keys=None, metric_key_prefix="eval", output_dir=None
    ):
        """Metrics over `eval_examples`; with `output_dir`, also writes the predictions there."""
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        eval_examples = self.eval_examples if eval_examples is None else eval_examples
        start_time = time.time()
        output = self.evaluation_loop(
            self.get_eval_dataloader(eval_dataset),
            description="Evaluation",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        answers = self.post_process_function(
            eval_examples, eval_dataset, output.predictions, self._writable(output_dir), metric_key_prefix
        )
        references = dict(zip(eval_examples["id"], (a["text"] for a in eval_examples["answers"])))
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in compute_qa_metrics(answers, references).items()}
        metrics.update(output.metrics)
        metrics.update(speed_metrics(metric_key_prefix, start_time, num_samples=len(eval_examples)))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def predict(
        self, predict_dataset, predict_examples, ignore_keys=None, metric_key_prefix="predict", output_dir=None
    ) -> PredictionOutput:
        """As Trainer.predict: a PredictionOutput whose predictions are the answer texts of `predict_examples`, in
        their order (no label_ids), with the run's speed in its metrics; with `output_dir`, also writes the
        predictions there."""
        start_time = time.time()
        output = self.evaluation_loop(
            self.get_test_dataloader(predict_dataset),
            description="Prediction",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        answers = self.post_process_function(
            predict_examples, predict_dataset, output.predictions, self._writable(output_dir), metric_key_prefix
        )
        metrics = {**output.metrics, **speed_metrics(metric_key_prefix, start_time, num_samples=len(predict_examples))}
        return PredictionOutput([answers[i] for i in predict_examples["id"]], label_ids=None, metrics=metrics)

    def _writable(self, output_dir):
        return output_dir if self.is_world_process_zero() else None


def main() -> None:
    """Trains, evaluates and predicts span selection as the command line (sys.argv) says; see the top of this
    module."""
    model_args, data_args, training_args = start_run(ARGUMENT_CLASSES)

    # Read and check every input before anything is written.
    context = load_context(data_args.context_file)
    mode = data_args.context_mode
    examples = {}
    if training_args.do_train:
        questions = load_questions(data_args.train_file, context, need_answer=True)
        examples["train"] = Dataset.from_dict(
            to_squad_examples(
                first_n(questions, data_args.max_train_samples), context, mode, shuffle_seed=training_args.seed
            )
        )
    if training_args.do_eval:
        questions = load_questions(data_args.validation_file, context, need_answer=True)
        examples["eval"] = Dataset.from_dict(
            to_squad_examples(first_n(questions, data_args.max_eval_samples), context, mode)
        )
    if training_args.do_predict:
        questions = load_questions(data_args.test_file, context, need_relevant=mode == "relevant")
        examples["predict"] = Dataset.from_dict(
            to_squad_examples(first_n(questions, data_args.max_predict_samples), context, mode)
        )
    resume_from = checkpoint_to_resume(training_args, SPAN_SELECTION)
    check_run_outputs(model_args, data_args, training_args, resume_from)
    tokenizer, config, _ = load_tokenizer_and_config(model_args, SPAN_SELECTION, data_args.max_seq_length)
    problem = check_window_fits(
        tokenizer, data_args.max_seq_length, data_args.max_question_length, data_args.doc_stride
    )
    if problem:
        raise InputError(problem)
    if dry_run_ends(training_args, model_args):
        return
    record_settings(
        config,
        SPAN_SELECTION,
        max_seq_length=data_args.max_seq_length,
        doc_stride=data_args.doc_stride,
        max_question_length=data_args.max_question_length,
        context_mode=mode,
    )
    model = load_model(model_args, SPAN_SELECTION, config, training_args.seed, new_head=False)
    keep_block_sparse_attention(model)

    window_options = {
        "tokenizer": tokenizer,
        "max_seq_length": data_args.max_seq_length,
        "doc_stride": data_args.doc_stride,
        "pad_to_max_length": data_args.pad_to_max_length,
        "max_question_length": data_args.max_question_length,
    }
    features = {}
    for split, split_examples in examples.items():
        prepare = prepare_train_features if split == "train" else prepare_validation_features
        features[split] = split_examples.map(
            partial(prepare, **window_options),
            batched=True,
            remove_columns=split_examples.column_names,
            num_proc=data_args.preprocessing_num_workers,
            desc=f"Cutting {split} {'candidates' if mode == 'candidates' else 'paragraphs'} into windows",
        )
        logger.info(
            f"{split}: {len(split_examples)} questions, {len(features[split])} windows "
            f"({len(features[split]) / len(split_examples):.2f} per question; context: {mode})"
        )

    def post_process(split_examples, split_features, predictions, output_dir, prefix):
        return postprocess_qa_predictions(
            split_examples,
            split_features,
            predictions,
            n_best_size=data_args.n_best_size,
            max_answer_length=data_args.max_answer_length,
            output_dir=output_dir,
            prefix=prefix,
            log_level=training_args.get_process_log_level(),
        )

    trainer = QuestionAnsweringTrainer(
        model=model,
        args=training_args,
        train_dataset=features.get("train"),
        eval_dataset=features.get("eval"),
        eval_examples=examples.get("eval"),
        processing_class=tokenizer,
        data_collator=DataCollatorForSpanSelection(
            tokenizer,
            pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None,
            question_end_token=question_end_token(model, tokenizer),
        ),
        post_process_function=post_process,
    )

    with reported_write_errors(training_args.output_dir):
        if training_args.do_train:
            train_and_save(trainer, resume_from, train_samples=len(features["train"]))

        if training_args.do_eval:
            evaluate_and_save(trainer, eval_samples=len(examples["eval"]), output_dir=training_args.output_dir)

        if training_args.do_predict:
            output = trainer.predict(features["predict"], examples["predict"], output_dir=training_args.output_dir)
            if trainer.is_world_process_zero():
                ids = examples["predict"]["id"]
                path = write_predictions_csv(
                    os.path.join(training_args.output_dir, "pred.csv"), ids, dict(zip(ids, output.predictions))
                )
                logger.info(f"Wrote the answers to {len(ids)} questions to {path}")


if __name__ == "__main__":
    run_main(main)
