"""What the training scripts (run_swag.py, run_qa.py, run_intent.py, run_slot.py) share: their arguments and the
checks on them, logging, the data splits of a classification task and its label names, and training, evaluating
and saving with the Trainer. Loading the model and resuming a checkpoint: checkpoints.py; which stage takes which of
train.sh's flags: route_flags.py."""

import contextlib
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import datasets
import transformers
from datasets import Dataset
from safetensors import SafetensorError
from transformers import HfArgumentParser, TrainingArguments

from adl_data import check_known_labels
from checkpoints import FINISHED_TRAINING_FILE, model_folders
from cli import InputError, OneLineErrors, one_line, short_number
from features import MAX_QUESTION_LENGTH, MAX_SEQ_LENGTH
from outputs import check_output_folder, write_predictions_csv

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast, Trainer

logger = logging.getLogger(__name__)

# Upper bounds that keep memory sane: processes spawned, sequences per device batch.
MAX_WORKERS = 64
MAX_BATCH_SIZE = 4096


@dataclass
class ModelArguments:
    """The model flags of every training script: the model, config and tokenizer to start from (Hub ids or local
    folders) and how to load them (cache, revision, the repository's own code), from random weights or with changes
    to the config."""

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
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": f"Processes for tokenization (at most {MAX_WORKERS})."}
    )

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
        require_at_most(self, MAX_WORKERS, "preprocessing_num_workers")


def require_at_least(arguments: object, minimum: int | float, *names: str) -> None:
    """Refuses, at parse time, a numeric flag below `minimum` or not a finite number (None means "not given").

    Args:
        arguments: the dataclass of arguments, in its __post_init__.
        minimum: the smallest value accepted.
        *names: the fields to check.
    """
    for name in names:
        value = getattr(arguments, name)
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise ValueError(f"--{name} {value}: must be a number of at least {minimum}")


def require_at_most(arguments: object, maximum: int | float, *names: str) -> None:
    """Refuses, at parse time, a numeric flag above `maximum`: a bound that keeps memory sane (None: not given).

    Args:
        arguments: the dataclass of arguments, in its __post_init__.
        maximum: the largest value accepted.
        *names: the fields to check.
    """
    for name in names:
        value = getattr(arguments, name)
        if value is not None and value > maximum:
            raise ValueError(f"--{name} {short_number(value)}: must be at most {maximum:,}")


@dataclass
class CheckedTrainingArguments(TrainingArguments):
    """TrainingArguments whose numbers are checked at parse time, so that a run cannot silently do nothing (no
    epochs) or nonsense (a NaN learning rate)."""

    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Check the flags, the data files, the output folder, and the config and tokenizer of the model "
            "(and the checkpoint to resume), then stop: no weights are loaded, nothing is trained or written."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        require_at_least(
            self, 1, "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"
        )
        require_at_most(self, MAX_BATCH_SIZE, "per_device_train_batch_size", "per_device_eval_batch_size")
        require_at_most(self, MAX_WORKERS, "dataloader_num_workers")
        require_at_least(self, 0, "weight_decay", "max_grad_norm", "warmup_steps")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning_rate {self.learning_rate}: must be a number above 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max_steps {self.max_steps}: must be at least 1 (or -1: train --num_train_epochs)")
        if self.max_steps == -1 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(
                f"--num_train_epochs {self.num_train_epochs}: must be above 0 (or give --max_steps), else nothing "
                "trains"
            )
        for strategy, steps in (("eval_strategy", "eval_steps"), ("save_strategy", "save_steps")):
            value = getattr(self, steps)
            if getattr(self, strategy) == "steps" and value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{steps} {value}: must be above 0 (in steps, or below 1 as a share of them)")


class TrainingArgumentParser(OneLineErrors, HfArgumentParser):
    """The parser of the training scripts: the dataclasses' flags, one line for a bad command line."""


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
    parser = TrainingArgumentParser(argument_classes)
    try:
        if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
            parsed = parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
        else:
            *parsed, unknown = parser.parse_args_into_dataclasses(return_remaining_strings=True)
            if unknown:  # as argparse says it, exit status 2 (the dataclasses were built: their checks passed)
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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


def start_run(
    argument_classes: tuple[type, type, type],
) -> tuple[ModelArguments, DataArguments, CheckedTrainingArguments]:
    """Parses (model, data, training) arguments, sets up logging, and checks that the run has the files it needs
    (check_data_arguments: at least one of --do_train, --do_eval and --do_predict, each with its file flag).

    Args:
        argument_classes: the script's ARGUMENT_CLASSES, its model, data and training argument dataclasses.

    Returns:
        (model_args, data_args, training_args), instances of those classes.
    """
    model_args, data_args, training_args = parse_arguments(argument_classes)
    setup_logging(training_args)
    check_data_arguments(data_args, training_args)
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


def check_run_outputs(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    resume_from: str | None,
) -> None:
    """Checks, before any model loads, that what the run writes (--output_dir: the model, checkpoints, metrics,
    predictions) lands on nothing it reads (outputs.check_output_folder) and does not train over a finished run.

    Args:
        model_args, data_args, training_args: the run's arguments.
        resume_from: the checkpoint training continues from (checkpoints.checkpoint_to_resume), or None.
    """
    data_files = [data_args.train_file, data_args.validation_file, data_args.test_file]
    data_files.append(getattr(data_args, "context_file", None))
    model_folders_read = model_folders(model_args)
    if resume_from is not None and not os.path.realpath(resume_from).startswith(
        os.path.realpath(training_args.output_dir) + os.sep
    ):
        model_folders_read.append(resume_from)
    check_output_folder(training_args.output_dir, [f for f in data_files if f], model_folders_read)
    finished = os.path.join(training_args.output_dir, FINISHED_TRAINING_FILE)
    if training_args.do_train and os.path.exists(finished):
        raise InputError(
            f"{training_args.output_dir}: --output_dir holds a finished training ({FINISHED_TRAINING_FILE}), which "
            "--do_train would train over: use another --output_dir, leave out --do_train to evaluate or predict "
            f"with it, or delete {FINISHED_TRAINING_FILE} to continue it"
        )


def dry_run_ends(training_args: CheckedTrainingArguments, model_args: ModelArguments) -> bool:
    """With --dry_run, says that every check passed and returns True: the script stops there.

    Args:
        training_args: the run's training arguments.
        model_args: its model arguments (for the message).

    Returns:
        Whether --dry_run was given.
    """
    if training_args.dry_run:
        logger.info(
            f"Dry run: the flags, the data files, --output_dir {training_args.output_dir} and the config and "
            f"tokenizer of {model_args.model_name_or_path} are fine; nothing was trained or written."
        )
    return training_args.dry_run


@contextlib.contextmanager
def reported_write_errors(folder: str) -> Iterator[None]:
    """Turns a failed write into the run's folder (a full disk, a read-only or lost file system) into one line. The
    Trainer's writers raise OSError, safetensors' SafetensorError, or torch's RuntimeError from its C++ writer, which
    say little, so the folder is probed: an error while the folder can be written is re-raised as it was. A
    checkpoint cut short by the failure is skipped when the run resumes (checkpoints.checkpoint_problem).

    Args:
        folder: the run's --output_dir.

    Returns:
        A context manager around the run's training, evaluation and prediction.
    """
    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as error:
        reason = _unwritable(folder)
        if reason is None:
            raise
        raise InputError(
            f"{folder}: cannot write ({reason}) after {type(error).__name__}: {one_line(error, 120)}; "
            "a checkpoint cut short is skipped when the run resumes"
        ) from None


def _unwritable(folder):
    """Why a megabyte cannot be written into `folder` now, or None when it can."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 2**20)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        return error.strerror or str(error)
    return None


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


def load_labelled_splits(
    data_args: DataArguments,
    training_args: TrainingArguments,
    load_records: Callable[[str, bool], list[dict]],
    label_field: str,
) -> tuple[dict[str, list[dict]], list[str] | None]:
    """Reads and validates the files of a classification run (intent or slot).

    Args:
        data_args, training_args: the run's arguments (the files, the splits asked for, --max_*_samples).
        load_records: load_records(path, need_labels) reads one file (adl_data.load_intent_utterances,
            load_slot_utterances).
        label_field: the field that holds a record's label, or its list of labels.

    Returns:
        ({"train", "eval", "predict": records} for the splits asked for, each cut to its --max_*_samples; the label
        names of the whole training file, sorted, or None without --do_train).
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


def task_label_names(
    model: "PreTrainedModel",
    model_args: ModelArguments,
    data_args: DataArguments,
    splits: dict[str, list[dict]],
    label_field: str,
) -> list[str]:
    """The label names the model predicts, in the order of its outputs (config id2label), after checking that the
    model has some and that every label of the validation split is among them.

    Args:
        model: the loaded model.
        model_args, data_args: the run's arguments (for the messages).
        splits: load_labelled_splits' records.
        label_field: the field that holds a record's label, or its list of labels.

    Returns:
        One name per output of the model.
    """
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


def tokenize_utterances(
    splits: dict[str, list[dict]],
    prepare_features: Callable[..., Mapping[str, list]],
    tokenizer: "PreTrainedTokenizerFast",
    data_args: DataArguments,
    label2id: dict[str, int],
) -> dict[str, Dataset]:
    """The features of the utterance records of each split (intent or slot), made in batches.

    Args:
        splits: load_labelled_splits' records.
        prepare_features: prepare_features(examples, tokenizer, max_seq_length, pad_to_max_length, label2id) makes a
            batch's features.
        tokenizer: a fast tokenizer.
        data_args: the run's data arguments (--max_seq_length, --pad_to_max_length, --preprocessing_num_workers).
        label2id: {label: id}.

    Returns:
        {split: features}, without the records' own columns.
    """
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


def write_submission(trainer: "Trainer", records: list[dict], predictions: list[str], column: str) -> None:
    """Writes pred.csv to --output_dir (on the main process): header `id,<column>`, then each record's id and its
    prediction, in order.

    Args:
        trainer: the run's Trainer.
        records: the predicted records, with their "id".
        predictions: each record's prediction.
        column: the name of the second column.
    """
    if trainer.is_world_process_zero():
        ids = [record["id"] for record in records]
        path = os.path.join(trainer.args.output_dir, "pred.csv")
        write_predictions_csv(path, ids, dict(zip(ids, predictions)), column=column)
        logger.info(f"Wrote the predicted {column} of {len(ids)} utterances to {path}")


def train_and_save(trainer: "Trainer", resume_from: str | None, train_samples: int) -> None:
    """Trains (from `resume_from` when given), then saves the model with its tokenizer, the metrics and the state.

    Args:
        trainer: the run's Trainer.
        resume_from: the checkpoint to continue from (checkpoints.checkpoint_to_resume), or None.
        train_samples: the number of training features, saved with the metrics.
    """
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()
    logger.info(f"Saved the model and its tokenizer to {trainer.args.output_dir}")
    save_metrics(trainer, "train", {**result.metrics, "train_samples": train_samples})
    trainer.save_state()


def evaluate_and_save(trainer: "Trainer", eval_samples: int, **evaluate_options: object) -> None:
    """Evaluates, then logs the metrics and saves them to eval_results.json (and all_results.json).

    Args:
        trainer: the run's Trainer.
        eval_samples: the number of evaluation examples, saved with the metrics.
        **evaluate_options: for trainer.evaluate.
    """
    metrics = trainer.evaluate(**evaluate_options)
    save_metrics(trainer, "eval", {**metrics, "eval_samples": eval_samples})


def save_metrics(trainer: "Trainer", split: str, metrics: dict[str, float]) -> None:
    """Logs a split's metrics and saves them (<split>_results.json, all_results.json) as strict JSON: a value that
    is not a finite number (a loss that diverged) is saved as null, with a warning, since strict readers refuse NaN.

    Args:
        trainer: the run's Trainer.
        split: the split's name ("train", "eval").
        metrics: {name: value}.
    """
    not_finite = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if not_finite:
        logger.warning(f"{split} metrics {', '.join(not_finite)} are not finite numbers: saved as null")
    metrics = {k: (None if k in not_finite else v) for k, v in metrics.items()}
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)


def first_n(records: list, n: int | None) -> list:
    """The first `n` records (--max_*_samples), or all of them when `n` is None.

    Args:
        records: the records.
        n: how many to keep, or None.

    Returns:
        `records` itself when `n` is None, else a new list.
    """
    return records if n is None else records[:n]
