"""Checkpoints: loading a model folder with its tokenizer, and the checks that make a wrong or broken one fail in one
line naming the folder, before anything runs.

A checkpoint is refused when it is not of the stage it is used for (a multiple-choice model given as the span model),
when its tokenizer cannot feed its model (more tokens than embeddings; a tokenizer.json that went missing; sequences
longer than its positions), or when its weights are missing, truncated or lack the task head.
"""

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from cli import InputError, one_line
from features import MAX_SEQ_LENGTH

logger = logging.getLogger(__name__)

# The file download.sh puts in each demo model (trained from scratch on samples/): inference warns when it runs one.
DEMO_MARKER = "DEMO_MODEL.md"


@dataclass(frozen=True)
class Stage:
    """What a stage needs of its checkpoints: the name of its role, its model class, and its architectures' suffix."""

    role: str
    auto_model_class: type
    architecture_suffix: str


PARAGRAPH_SELECTION = Stage("paragraph-selection", AutoModelForMultipleChoice, "ForMultipleChoice")
SPAN_SELECTION = Stage("span-selection", AutoModelForQuestionAnswering, "ForQuestionAnswering")


def position_limit(config, tokenizer):
    """The longest sequence a model reads: its position embeddings, or less where its tokenizer says so (RoBERTa
    keeps 2 of its 514 positions for padding)."""
    limit = getattr(config, "max_position_embeddings", None) or MAX_SEQ_LENGTH
    if tokenizer.model_max_length and tokenizer.model_max_length < limit:
        limit = tokenizer.model_max_length
    return limit


def check_model_reads(config, tokenizer, max_seq_length):
    """Returns None when the model of `config` can read what `tokenizer` makes of sequences of `max_seq_length`
    tokens, else an explanation. A tokenizer larger than the embeddings would index past them; one much smaller than
    them (a checkpoint saved without tokenizer.json loads a tokenizer of a few special tokens) maps text to [UNK]."""
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
    return None


def load_checkpoint(path, stage, max_seq_length=MAX_SEQ_LENGTH):
    """Loads a fine-tuned checkpoint directory with its tokenizer, after checking that it is one of `stage` that can
    read `max_seq_length` tokens; anything missing, broken or mismatched is an InputError naming the directory."""
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
    architectures = config.architectures or []
    if architectures and not any(name.endswith(stage.architecture_suffix) for name in architectures):
        raise InputError(
            f"{path}: a {', '.join(architectures)} checkpoint, not a {role} model (*{stage.architecture_suffix}): "
            "are --mc_model and --qa_model swapped?"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:  # tokenizer files of any shape the user gave us
        raise InputError(f"{path}: cannot load the {role} tokenizer ({one_line(error)})") from None
    if not tokenizer.is_fast:
        raise InputError(f"{path}: the {role} tokenizer must be a fast tokenizer (character offsets)")
    problem = check_model_reads(config, tokenizer, max_seq_length)
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
# Training: the model to start from, and the checkpoint to resume


_CHECKPOINT_NAME = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
# What the Trainer writes last into a checkpoint (transformers.trainer.TRAINER_STATE_NAME).
TRAINER_STATE_NAME = "trainer_state.json"


def load_tokenizer_and_model(
    model_args, auto_model_class, seed, max_seq_length=None, label_names=None, tokenizer_options=None
):
    """Loads the (fast) tokenizer and the model, pretrained or, with --from_scratch, randomly initialised.

    The random weights (the new task head of a pretrained model; all of them with --from_scratch) follow `seed`.
    With `max_seq_length`, first checks that the model can read sequences that long with this tokenizer.
    `label_names` (a classification task's labels, from its training file) go into the config as id2label/label2id,
    so that the saved model predicts names; a model already trained on the same labels keeps its own order (and its
    head), any other gets a new head of one output per label. `tokenizer_options` go to the tokenizer's loading.
    """
    source = model_args.model_name_or_path
    hub_options = {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "trust_remote_code": model_args.trust_remote_code,
    }
    config_source = model_args.config_name or source
    tokenizer_source = model_args.tokenizer_name or source
    try:
        config = AutoConfig.from_pretrained(config_source, **hub_options)
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
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_options, **(tokenizer_options or {}))
    except (OSError, ValueError) as error:
        raise InputError(f"{tokenizer_source}: cannot load the tokenizer ({one_line(error)})") from None
    if not tokenizer.is_fast:
        raise InputError(
            f"{tokenizer_source}: a fast tokenizer is needed (character offsets), got {type(tokenizer).__name__}"
        )
    problem = max_seq_length and check_model_reads(config, tokenizer, max_seq_length)
    if problem:
        raise InputError(f"{source}: {problem}")

    set_seed(seed)
    try:
        if model_args.from_scratch:
            model = auto_model_class.from_config(config, trust_remote_code=model_args.trust_remote_code)
            logger.info(f"Training from scratch: {model.num_parameters():,} randomly initialised parameters")
        else:
            model = auto_model_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=new_head, **hub_options
            )
    except (OSError, ValueError) as error:
        raise InputError(f"{source}: cannot load the model ({one_line(error)})") from None
    return tokenizer, model


def checkpoint_to_resume(training_args):
    """The checkpoint training continues from: --resume_from_checkpoint, else the last complete one in --output_dir.

    The Trainer writes a checkpoint's trainer_state.json last, so a checkpoint without a readable one was cut short
    (the run was killed while saving it): it is skipped, and training continues from the one before.
    """
    if not training_args.do_train:
        return None
    if training_args.resume_from_checkpoint is not None:
        if not os.path.isdir(training_args.resume_from_checkpoint):
            raise InputError(f"{training_args.resume_from_checkpoint}: --resume_from_checkpoint is not a directory")
        if not _is_complete_checkpoint(training_args.resume_from_checkpoint):
            raise InputError(
                f"{training_args.resume_from_checkpoint}: --resume_from_checkpoint is not a complete checkpoint "
                f"(no readable {TRAINER_STATE_NAME}; the run was probably stopped while saving it): pass an earlier one"
            )
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        for checkpoint in _checkpoints_newest_first(training_args.output_dir):
            if _is_complete_checkpoint(checkpoint):
                logger.warning(
                    f"Resuming training from {checkpoint}, the last complete checkpoint in --output_dir "
                    "(use another --output_dir to start over)."
                )
                return checkpoint
            logger.warning(
                f"Skipping {checkpoint}: incomplete (no readable {TRAINER_STATE_NAME}; stopped while saving)."
            )
    return None


def _checkpoints_newest_first(output_dir):
    steps = {}
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.fullmatch(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps[os.path.join(output_dir, name)] = int(match.group(1))
    return sorted(steps, key=steps.get, reverse=True)


def _is_complete_checkpoint(checkpoint):
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as file:
            json.load(file)
    except (OSError, ValueError):
        return False
    return True
