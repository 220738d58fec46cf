"""Checkpoints: loading a model folder with its tokenizer, for inference, training and resuming, and the checks that
make a wrong or broken one fail in one line naming the folder before anything runs.

A checkpoint is refused when it is not of the stage it is used for (a multiple-choice model given as the span model, a
run_swag.py folder resumed by run_qa.py), when its tokenizer cannot feed its model (more tokens than embeddings; a
tokenizer.json that went missing; no padding token; token types the model has no embedding for; sequences longer than
its positions), or when its weights, optimizer state or trainer state are missing, truncated or malformed.

A checkpoint also carries the settings it was trained with (config.json's "trained_with": its stage, window,
stride, question length and context), which inference.py uses unless a flag says otherwise.
"""

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from cli import InputError, one_line
from features import MAX_SEQ_LENGTH, PairTemplate, WindowSettings

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast, TrainingArguments

    from training import ModelArguments

logger = logging.getLogger(__name__)

# The file download.sh puts in each demo model (trained from scratch on samples/): inference warns when it runs one.
DEMO_MARKER = "DEMO_MODEL.md"
# The config.json key of the settings a checkpoint was trained with.
SETTINGS_KEY = "trained_with"


@dataclass(frozen=True)
class Stage:
    """A task a checkpoint is trained for: its name (also its folder's in models/), its model class, and the suffix of
    its architectures' names; `pairs` when its sequences are (question, paragraph) pairs."""

    role: str
    auto_model_class: type
    architecture_suffix: str
    pairs: bool = True


PARAGRAPH_SELECTION = Stage("paragraph-selection", AutoModelForMultipleChoice, "ForMultipleChoice")
SPAN_SELECTION = Stage("span-selection", AutoModelForQuestionAnswering, "ForQuestionAnswering")
INTENT_CLASSIFICATION = Stage(
    "intent-classification", AutoModelForSequenceClassification, "ForSequenceClassification", pairs=False
)
SLOT_TAGGING = Stage("slot-tagging", AutoModelForTokenClassification, "ForTokenClassification", pairs=False)


# ---------------------------------------------------------------------------------------------------------------------
# The settings a checkpoint was trained with


def record_settings(config: "PretrainedConfig", stage: Stage, **settings: object) -> None:
    """Writes the stage and the settings a model is trained with into its config, so that every checkpoint and the
    final model carry them (config.json's "trained_with").

    Args:
        config: the model's config (saved with every checkpoint).
        stage: the task.
        **settings: what inference needs to read like training did (max_seq_length, doc_stride, ...).
    """
    setattr(config, SETTINGS_KEY, {"stage": stage.role, **settings})


def trained_settings(config: "PretrainedConfig") -> dict:
    """The settings a checkpoint was trained with (record_settings); {} for a checkpoint saved before they were.

    Args:
        config: the checkpoint's config.

    Returns:
        A copy of config.json's "trained_with": "stage" and the settings.
    """
    value = getattr(config, SETTINGS_KEY, None)
    return dict(value) if isinstance(value, dict) else {}


def window_settings(path: str | Path, config: "PretrainedConfig", given: dict[str, int | None]) -> WindowSettings:
    """The window settings to run a checkpoint with: each one given on the command line, else the checkpoint's own
    (record_settings), else the defaults (a checkpoint saved before settings travelled with it). A given value that
    differs from the checkpoint's is said in the log.

    Args:
        path: the checkpoint folder (for messages).
        config: its config.
        given: {setting: value or None (not given)} for the fields of features.WindowSettings.

    Returns:
        The settings.
    """
    trained = trained_settings(config)
    values = {}
    for name in WindowSettings.__dataclass_fields__:
        saved = trained.get(name)
        minimum = 0 if name == "doc_stride" else 1
        if saved is not None and not (isinstance(saved, int) and not isinstance(saved, bool) and saved >= minimum):
            raise InputError(f"{path}: config.json's {SETTINGS_KEY}: {name} {saved!r} is not an integer >= {minimum}")
        if given.get(name) is not None:
            if saved is not None and saved != given[name]:
                logger.info(f"{path}: --{name} {given[name]}, not the {saved} it was trained with")
            values[name] = given[name]
        elif saved is not None:
            values[name] = saved
    return WindowSettings(**values)


# ---------------------------------------------------------------------------------------------------------------------
# Checks shared by training and inference


def position_limit(config, tokenizer) -> int:
    """The longest sequence a model reads: its position embeddings, or less where its tokenizer says so (RoBERTa
    keeps 2 of its 514 positions for padding)."""
    limit = getattr(config, "max_position_embeddings", None) or MAX_SEQ_LENGTH
    if tokenizer.model_max_length and tokenizer.model_max_length < limit:
        limit = tokenizer.model_max_length
    return limit


def check_model_reads(config, tokenizer, max_seq_length: int, pairs: bool = True) -> str | None:
    """Whether the model of `config` can read what `tokenizer` makes of sequences of `max_seq_length` tokens.

    A tokenizer larger than the embeddings would index past them; one much smaller than them (a checkpoint saved
    without tokenizer.json loads a tokenizer of a few special tokens) maps text to [UNK]; without a padding token no
    batch can be padded; a pair's token types (0 for the question, 1 for the paragraph) need as many token type
    embeddings.

    Args:
        config: the model's config.
        tokenizer: a fast tokenizer.
        max_seq_length: the longest sequence it will be given.
        pairs: whether it reads (question, paragraph) pairs.

    Returns:
        None when it can, else the explanation.
    """
    limit = position_limit(config, tokenizer)
    if max_seq_length > limit:
        return f"--max_seq_length {max_seq_length} is more than the model reads ({limit} tokens)"
    embeddings = getattr(config, "vocab_size", None)
    if embeddings and len(tokenizer) > embeddings:
        return f"the tokenizer has {len(tokenizer):,} tokens but the model only {embeddings:,} embeddings"
    if embeddings and len(tokenizer) < embeddings / 2:
        return (
            f"the tokenizer has {len(tokenizer):,} tokens for a model of {embeddings:,} embeddings: its tokenizer "
            "files are missing or wrong (save the checkpoint with its tokenizer.json)"
        )
    if tokenizer.pad_token_id is None:
        return "the tokenizer has no padding token (pad_token), so batches cannot be padded: set one in its files"
    type_embeddings = getattr(config, "type_vocab_size", None)
    types = PairTemplate.of(tokenizer).types if pairs else None
    if type_embeddings is not None and types is not None and max(types) >= type_embeddings:
        return (
            f"the tokenizer gives a pair's tokens the types {sorted(set(types))} but the model has "
            f"{type_embeddings} token type embedding{'s' if type_embeddings != 1 else ''} (type_vocab_size)"
        )
    return None


def _check_architecture(path, config, stage: Stage) -> None:
    architectures = config.architectures or []
    if architectures and not any(name.endswith(stage.architecture_suffix) for name in architectures):
        raise InputError(
            f"{path}: a {', '.join(architectures)} checkpoint, not a {stage.role} model (*{stage.architecture_suffix})"
        )
    trained_for = trained_settings(config).get("stage")
    if trained_for is not None and trained_for != stage.role:
        raise InputError(f"{path}: a {trained_for} checkpoint (config.json's {SETTINGS_KEY}), not a {stage.role} one")


# ---------------------------------------------------------------------------------------------------------------------
# Inference: a fine-tuned checkpoint


def checkpoint_config(path: str | Path, stage: Stage) -> "PretrainedConfig":
    """The config of a fine-tuned checkpoint folder, after checking that it is a complete one of `stage`.

    Args:
        path: the checkpoint folder.
        stage: the stage it is used for.

    Returns:
        Its transformers config (an InputError naming the folder when anything is missing or mismatched).
    """
    path = Path(path)
    role = stage.role
    if not path.is_dir():
        raise InputError(f"{path}: {role} model directory not found (run `bash download.sh` first, or pass its path)")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: {role} model directory is incomplete: no config.json")
    if not any(path.glob("*.safetensors")):
        raise InputError(f"{path}: {role} model directory is incomplete: no *.safetensors weights")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as error:  # a config file of any shape the user gave us
        raise InputError(f"{path}: cannot read the {role} model's config.json ({one_line(error)})") from None
    try:
        _check_architecture(path, config, stage)
    except InputError as error:
        raise InputError(f"{error}: are --mc_model and --qa_model swapped?") from None
    return config


def load_checkpoint(
    path: str | Path, stage: Stage, max_seq_length: int
) -> tuple["PreTrainedTokenizerFast", "PreTrainedModel"]:
    """Loads a fine-tuned checkpoint folder with its tokenizer, after checking that it is one of `stage` that can
    read `max_seq_length` tokens (checkpoint_config, check_model_reads) and that its weights hold the task head.

    Args:
        path: the checkpoint folder.
        stage: the stage it is used for.
        max_seq_length: the longest sequence it will be given.

    Returns:
        (tokenizer, model in eval mode); an InputError naming the folder for anything missing, broken or mismatched.
    """
    path = Path(path)
    role = stage.role
    config = checkpoint_config(path, stage)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:  # tokenizer files of any shape the user gave us
        raise InputError(f"{path}: cannot load the {role} tokenizer ({one_line(error)})") from None
    if not tokenizer.is_fast:
        raise InputError(f"{path}: the {role} tokenizer must be a fast tokenizer (character offsets)")
    problem = check_model_reads(config, tokenizer, max_seq_length, stage.pairs)
    if problem:
        raise InputError(f"{path}: {role} model: {problem}")
    try:
        model, loading = stage.auto_model_class.from_pretrained(path, config=config, output_loading_info=True)
    except Exception as error:  # truncated or mismatched weights files
        raise InputError(f"{path}: cannot load the {role} weights ({one_line(error)})") from None
    if loading["missing_keys"]:
        missing = sorted(loading["missing_keys"])
        raise InputError(
            f"{path}: not a fine-tuned {role} checkpoint: its weights lack {', '.join(missing[:3])}"
            f"{' and more' if len(missing) > 3 else ''}"
        )
    if (path / DEMO_MARKER).exists():
        logger.warning(
            f"{path} is a DEMO model, trained from scratch on a small sample: its answers are close to random. "
            "Set MODEL_SOURCE in download.sh to your fine-tuned checkpoints."
        )
    logger.info(f"Loaded the {role} model from {path} ({model.num_parameters():,} parameters)")
    return tokenizer, model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Training: the model to start from


def _hub_options(model_args) -> dict:
    return {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "trust_remote_code": model_args.trust_remote_code,
    }


def load_tokenizer_and_config(
    model_args: "ModelArguments",
    stage: Stage,
    max_seq_length: int,
    label_names: list[str] | None = None,
    tokenizer_options: dict | None = None,
) -> tuple["PreTrainedTokenizerFast", "PretrainedConfig", bool]:
    """Loads the (fast) tokenizer and the config of --model_name_or_path (or --tokenizer_name / --config_name), with
    --config_overrides applied, after checking that the model can read sequences of `max_seq_length` tokens with
    this tokenizer (check_model_reads). No weights are read: a dry run stops here.

    Args:
        model_args: training.ModelArguments.
        stage: the task trained.
        max_seq_length: the longest sequence the model will be given.
        label_names: a classification task's labels (from its training file), or None. They go into the config as
            id2label / label2id, so that the saved model predicts names; a model already trained on the same labels
            keeps its own order (and its head), any other gets a new head of one output per label.
        tokenizer_options: keyword arguments for the tokenizer's loading.

    Returns:
        (tokenizer, config, whether the task head is new).
    """
    source = model_args.model_name_or_path
    config_source = model_args.config_name or source
    tokenizer_source = model_args.tokenizer_name or source
    try:
        config = AutoConfig.from_pretrained(config_source, **_hub_options(model_args))
    except (OSError, ValueError) as error:
        raise InputError(f"{config_source}: cannot load the model config ({one_line(error)})") from None
    if model_args.config_overrides:
        try:
            config.update_from_string(model_args.config_overrides)
        except ValueError as error:
            raise InputError(f"--config_overrides {model_args.config_overrides!r}: {one_line(error)}") from None
        logger.info(f"Config after --config_overrides: {config}")
    new_head = label_names is not None and sorted(config.id2label.values()) != sorted(label_names)
    if new_head:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: index for index, name in enumerate(label_names)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_source, **_hub_options(model_args), **(tokenizer_options or {})
        )
    except (OSError, ValueError) as error:
        raise InputError(f"{tokenizer_source}: cannot load the tokenizer ({one_line(error)})") from None
    if not tokenizer.is_fast:
        raise InputError(
            f"{tokenizer_source}: a fast tokenizer is needed (character offsets), got {type(tokenizer).__name__}"
        )
    problem = check_model_reads(config, tokenizer, max_seq_length, stage.pairs)
    if problem:
        raise InputError(f"{source}: {problem}")
    return tokenizer, config, new_head


def load_model(
    model_args: "ModelArguments", stage: Stage, config: "PretrainedConfig", seed: int, new_head: bool
) -> "PreTrainedModel":
    """The model to train: pretrained from --model_name_or_path or, with --from_scratch, randomly initialised.

    Args:
        model_args: training.ModelArguments.
        stage: the task trained.
        config: load_tokenizer_and_config's config.
        seed: the seed of the random weights (the new task head of a pretrained model; all of them from scratch).
        new_head: load_tokenizer_and_config's answer: the task head is made anew for other labels.

    Returns:
        The model.
    """
    source = model_args.model_name_or_path
    set_seed(seed)
    try:
        if model_args.from_scratch:
            model = stage.auto_model_class.from_config(config, trust_remote_code=model_args.trust_remote_code)
            logger.info(f"Training from scratch: {model.num_parameters():,} randomly initialised parameters")
        else:
            model = stage.auto_model_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=new_head, **_hub_options(model_args)
            )
    except (OSError, ValueError) as error:
        raise InputError(f"{source}: cannot load the model ({one_line(error)})") from None
    return model


def model_folders(model_args: "ModelArguments") -> list[str]:
    """The local folders a training run reads its model, config and tokenizer from (not Hub ids): its outputs must not
    land in them.

    Args:
        model_args: training.ModelArguments.

    Returns:
        Each existing folder among --model_name_or_path, --config_name and --tokenizer_name, once, in that order.
    """
    sources = [model_args.model_name_or_path, model_args.config_name, model_args.tokenizer_name]
    return [source for source in dict.fromkeys(sources) if source and os.path.isdir(source)]


# ---------------------------------------------------------------------------------------------------------------------
# Training: the checkpoint to resume


_CHECKPOINT_NAME = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
# What the Trainer writes last into a checkpoint (transformers.trainer.TRAINER_STATE_NAME).
TRAINER_STATE_NAME = "trainer_state.json"
# Written by the Trainer into --output_dir when a training has finished (Trainer.save_metrics("train", ...)).
FINISHED_TRAINING_FILE = "train_results.json"


def checkpoint_problem(folder, stage: Stage) -> str | None:
    """What is wrong with a Trainer checkpoint folder for resuming `stage`, or None when it is complete.

    The Trainer writes a checkpoint's trainer_state.json last, so a checkpoint without a well-formed one was cut
    short (killed or out of disk space while saving). Its weights and optimizer state must be readable (a truncated
    file is found by its header or its zip directory), and it must be of the same task.

    Args:
        folder: a checkpoint-N folder.
        stage: the task to resume.

    Returns:
        None, or the problem in a few words.
    """
    folder = Path(folder)
    try:
        with open(folder / TRAINER_STATE_NAME, encoding="utf-8") as file:
            state = json.load(file)
    except OSError:
        return f"no readable {TRAINER_STATE_NAME} (stopped while saving?)"
    except ValueError:
        return f"{TRAINER_STATE_NAME} is not valid JSON (stopped while saving?)"
    if not (
        isinstance(state, dict)
        and isinstance(state.get("global_step"), int)
        and state["global_step"] >= 0
        and isinstance(state.get("log_history"), list)
    ):
        return f"{TRAINER_STATE_NAME} is not a Trainer state (no global_step and log_history)"
    try:
        AutoConfig.from_pretrained(folder)
    except Exception as error:  # a config file of any shape
        return f"no readable config.json ({one_line(error, 120)})"
    other_task = _other_task(folder, stage)
    if other_task:
        return other_task
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in weights:
        try:
            with safe_open(path, "pt"):
                pass
        except Exception as error:  # the library's own error types for truncated or malformed files
            return f"{path.name} is unreadable ({one_line(error, 120)})"
    for name in ("optimizer.pt", "scheduler.pt"):
        path = folder / name
        if path.exists():
            try:
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
            except (OSError, zipfile.BadZipFile):
                broken = name
            if broken is not None:
                return f"{name} is unreadable (truncated?)"
    return None


def checkpoint_to_resume(training_args: "TrainingArguments", stage: Stage) -> str | None:
    """The checkpoint training continues from: --resume_from_checkpoint, else the last complete one in --output_dir.

    A broken --resume_from_checkpoint is refused in one line. In --output_dir, a broken last checkpoint (cut short
    while saving, or truncated since) is skipped with a warning and training continues from the one before: the
    checkpoints are the run's own, and the one before is as good a place to continue from as the user would pick. A
    checkpoint of another task there is refused: the folder is another run's.

    Args:
        training_args: the run's TrainingArguments.
        stage: the task trained.

    Returns:
        The checkpoint folder, or None to start from --model_name_or_path.
    """
    if not training_args.do_train:
        return None
    given = training_args.resume_from_checkpoint
    if given is not None:
        if not os.path.isdir(given):
            raise InputError(f"{given}: --resume_from_checkpoint is not a directory")
        problem = checkpoint_problem(given, stage)
        if problem:
            raise InputError(f"{given}: --resume_from_checkpoint cannot be resumed: {problem}")
        return given
    if not os.path.isdir(training_args.output_dir):
        return None
    for checkpoint in _checkpoints_newest_first(training_args.output_dir):
        problem = checkpoint_problem(checkpoint, stage)
        if problem is None:
            logger.warning(
                f"Resuming training from {checkpoint}, the last complete checkpoint in --output_dir "
                "(use another --output_dir to start over)."
            )
            return checkpoint
        other_task = _other_task(checkpoint, stage)
        if other_task:
            raise InputError(
                f"{checkpoint}: {other_task}: --output_dir {training_args.output_dir} holds another task's run; "
                "use another --output_dir"
            )
        logger.warning(f"Skipping {checkpoint}: {problem}.")
    return None


def _other_task(folder, stage: Stage) -> str | None:
    """How a checkpoint whose config is readable says it is of another task than `stage` (None when it does not)."""
    try:
        _check_architecture(folder, AutoConfig.from_pretrained(folder), stage)
    except InputError as error:
        return str(error).removeprefix(f"{folder}: ")
    except Exception:  # an unreadable config: checkpoint_problem says so
        return None
    return None


def _checkpoints_newest_first(output_dir):
    steps = {}
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.fullmatch(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps[os.path.join(output_dir, name)] = int(match.group(1))
    return sorted(steps, key=steps.get, reverse=True)
