"""What the training scripts (run_swag.py, run_qa.py, run_intent.py, run_slot.py) share: their arguments and the
checks on them, logging, the data splits of a classification task and its label names, and training, evaluating
and saving with the Trainer. Loading the model and resuming a checkpoint: checkpoints.py."""

import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from functools import partial

import datasets
import transformers
from datasets import Dataset
from transformers import HfArgumentParser, TrainingArguments

from adl_data import check_known_labels
from cli import InputError, OneLineErrors, one_line
from outputs import write_predictions_csv
from features import MAX_QUESTION_LENGTH, MAX_SEQ_LENGTH

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "Hub id (e.g. bert-base-chinese, hfl/chinese-macbert-base) or local directory of the model."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Config to use instead of the model's own."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use instead of the model's own."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit) of the model."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the model repository's own Python code. Only for repositories you trust."}
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "Train the architecture of --model_name_or_path from random weights (its tokenizer is kept)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Changes to the config, e.g. 'num_hidden_layers=4,hidden_size=256,num_attention_heads=4,"
            "intermediate_size=1024' (with --from_scratch for a smaller model)."
        },
    )


@dataclass
class DataArguments:
    """The data flags of every training script; each script's subclass adds what its task needs."""

    train_file: str | None = field(default=None, metadata={"help": "Training records (train.json)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation records (valid.json)."})
    test_file: str | None = field(default=None, metadata={"help": "Records to predict (test.json)."})
    max_seq_length: int = field(
        default=MAX_SEQ_LENGTH, metadata={"help": "Tokens per sequence (question + paragraph); longer ones are cut."}
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every sequence to max_seq_length (default: pad each batch to its longest sequence)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation records."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep only the first N test records."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})

    def __post_init__(self):
        require_at_least(
            self,
            1,
            "max_seq_length",
            "max_train_samples",
            "max_eval_samples",
            "max_predict_samples",
            "preprocessing_num_workers",
        )


def require_at_least(arguments, minimum, *names):
    """Refuses, at parse time, a numeric flag below `minimum` or not a finite number (None means "not given")."""
    for name in names:
        value = getattr(arguments, name)
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise ValueError(f"--{name} {value}: must be a number of at least {minimum}")


@dataclass
class CheckedTrainingArguments(TrainingArguments):
    """TrainingArguments whose numbers are checked at parse time, so that a run cannot silently do nothing (no
    epochs) or nonsense (a NaN learning rate)."""

    def __post_init__(self):
        super().__post_init__()
        require_at_least(
            self, 1, "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"
        )
        require_at_least(self, 0, "weight_decay", "max_grad_norm", "warmup_steps")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning_rate {self.learning_rate}: must be a number above 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max_steps {self.max_steps}: must be at least 1 (or -1: train --num_train_epochs)")
        if self.max_steps == -1 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(
                f"--num_train_epochs {self.num_train_epochs}: must be above 0 (or give --max_steps), else nothing trains"
            )
        for strategy, steps in (("eval_strategy", "eval_steps"), ("save_strategy", "save_steps")):
            value = getattr(self, steps)
            if getattr(self, strategy) == "steps" and value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{steps} {value}: must be above 0 (in steps, or below 1 as a share of them)")


class ArgumentParser(OneLineErrors, HfArgumentParser):
    pass


@dataclass
class QuestionDataArguments(DataArguments):
    """Paragraph and span selection: questions that index into the paragraphs of --context_file."""

    context_file: str | None = field(default=None, metadata={"help": "context.json: the list of all paragraphs."})
    max_question_length: int = field(
        default=MAX_QUESTION_LENGTH, metadata={"help": "Questions longer than this many tokens are cut."}
    )

    def __post_init__(self):
        super().__post_init__()
        require_at_least(self, 1, "max_question_length")
        if self.context_file is None:
            raise InputError("--context_file is required (the context.json that the questions index into)")


@dataclass
class UtteranceDataArguments(DataArguments):
    """Intent classification and slot tagging: short utterances, each one sequence."""

    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per utterance ([CLS] and [SEP] included); longer ones are cut."}
    )


def parse_arguments(argument_classes):
    """Parses the command line (or a single .json file of arguments) into the given dataclasses."""
    parser = ArgumentParser(argument_classes)
    try:
        if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
            parsed = parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
        else:
            parsed = parser.parse_args_into_dataclasses()
    except ValueError as error:
        # TrainingArguments checks combinations of flags (e.g. --load_best_model_at_end with unmatched strategies).
        raise InputError(f"invalid arguments: {one_line(error)}") from None
    for arguments in parsed:
        if isinstance(arguments, TrainingArguments):
            check_launch(arguments)
    return parsed


def check_launch(training_args):
    """Refuses a multi-process launch (torchrun, accelerate launch) that the Trainer would not run as one job.

    On a machine without GPUs, the Trainer only joins the processes into one job with --use_cpu; otherwise each
    process would train on all the data by itself and write the same output files as the others.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise InputError(
            f"launched as {launched} processes (WORLD_SIZE={launched}) but the Trainer runs each of them alone "
            "(world size 1): on a machine without GPUs, add --use_cpu"
        )


def start_run(argument_classes):
    """Parses (model, data, training) arguments, sets up logging, and checks that the run has the files it needs."""
    model_args, data_args, training_args = parse_arguments(argument_classes)
    setup_logging(training_args)
    check_data_arguments(data_args, training_args)
    check_output_dir(training_args.output_dir)
    return model_args, data_args, training_args


def check_data_arguments(data_args, training_args):
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise InputError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    for wanted, action, file, file_flag in [
        (training_args.do_train, "--do_train", data_args.train_file, "--train_file"),
        (training_args.do_eval, "--do_eval", data_args.validation_file, "--validation_file"),
        (training_args.do_predict, "--do_predict", data_args.test_file, "--test_file"),
    ]:
        if wanted and file is None:
            raise InputError(f"{action} needs {file_flag}")


def check_output_dir(output_dir):
    """Fails early, before any training, when --output_dir could not be written; creates nothing."""
    path = os.path.abspath(output_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{output_dir}: --output_dir is a file, not a directory")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise InputError(
            f"{output_dir}: --output_dir cannot be created or written ({existing} is not a writable folder)"
        )


def setup_logging(training_args):
    # The Trainer pins memory by default, which only matters for a GPU; on a CPU-only machine PyTorch warns about it.
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator is found")
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    # Our own messages (what was loaded, how many questions and windows, where outputs went) at INFO on the main
    # process; the libraries' at --log_level (WARNING by default), as they are verbose.
    logging.getLogger().setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    log_level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, device: {training_args.device}, "
        f"world size: {training_args.world_size}, bf16: {training_args.bf16}, fp16: {training_args.fp16}"
    )


def load_labelled_splits(data_args, training_args, load_records, label_field):
    """Reads and validates the files of a classification run (intent or slot).

    Returns {"train", "eval", "predict": records} for the splits asked for, each cut to its --max_*_samples, and the
    label names of the whole training file, sorted (None without --do_train). `load_records(path, need_labels)` reads
    one file; `label_field` holds a record's label, or its list of labels.
    """
    splits, label_names = {}, None
    if training_args.do_train:
        records = load_records(data_args.train_file, True)
        label_names = sorted({label for record in records for label in _as_list(record[label_field])})
        splits["train"] = first_n(records, data_args.max_train_samples)
    if training_args.do_eval:
        splits["eval"] = first_n(load_records(data_args.validation_file, True), data_args.max_eval_samples)
    if training_args.do_predict:
        splits["predict"] = first_n(load_records(data_args.test_file, False), data_args.max_predict_samples)
    return splits, label_names


def _as_list(value):
    return value if isinstance(value, list) else [value]


def task_label_names(model, model_args, data_args, splits, label_field):
    """The label names the model predicts, in the order of its outputs (config id2label), after checking that the
    model has some and that every label of the validation split is among them."""
    names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    # A model never trained on a task has the config's default names LABEL_0, LABEL_1... Those of a training file may
    # be LABEL_0, LABEL_1... too: a run that trains, or a checkpoint saved by one (its config names the model's class
    # among its architectures), has names of its own.
    trained = "train" in splits or type(model).__name__ in (model.config.architectures or [])
    if not trained and names == [f"LABEL_{index}" for index in range(len(names))]:
        raise InputError(
            f"{model_args.model_name_or_path}: the model has no label names of its own (its config's id2label is "
            f"{', '.join(names)}): train it first with --do_train and a --train_file"
        )
    if "eval" in splits:
        source = (
            f"the training file {data_args.train_file}"
            if "train" in splits
            else f"the model {model_args.model_name_or_path}"
        )
        check_known_labels(data_args.validation_file, splits["eval"], label_field, names, source)
    return names


def tokenize_utterances(splits, prepare_features, tokenizer, data_args, label2id):
    """{split: features} for the utterance records of each split (intent or slot), made in batches by
    prepare_features(examples, tokenizer, max_seq_length, pad_to_max_length, label2id)."""
    options = {
        "tokenizer": tokenizer,
        "max_seq_length": data_args.max_seq_length,
        "pad_to_max_length": data_args.pad_to_max_length,
        "label2id": label2id,
    }
    return {
        split: Dataset.from_list(records).map(
            partial(prepare_features, **options),
            batched=True,
            remove_columns=list(records[0]),
            num_proc=data_args.preprocessing_num_workers,
            desc=f"Tokenizing {split} utterances",
        )
        for split, records in splits.items()
    }


def write_submission(trainer, records, predictions, column):
    """Writes pred.csv to --output_dir (on the main process): header `id,<column>`, then each record's id and its
    prediction, in order."""
    if trainer.is_world_process_zero():
        ids = [record["id"] for record in records]
        path = os.path.join(trainer.args.output_dir, "pred.csv")
        write_predictions_csv(path, ids, dict(zip(ids, predictions)), column=column)
        logger.info(f"Wrote the predicted {column} of {len(ids)} utterances to {path}")


def train_and_save(trainer, resume_from, train_samples):
    """Trains (from `resume_from` when given), then saves the model with its tokenizer, the metrics and the state."""
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()
    logger.info(f"Saved the model and its tokenizer to {trainer.args.output_dir}")
    metrics = {**result.metrics, "train_samples": train_samples}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()


def evaluate_and_save(trainer, eval_samples, **evaluate_options):
    """Evaluates, then logs the metrics and saves them to eval_results.json (and all_results.json)."""
    metrics = trainer.evaluate(**evaluate_options)
    metrics["eval_samples"] = eval_samples
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


def first_n(records, n):
    return records if n is None else records[:n]


