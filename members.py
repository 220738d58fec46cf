"""The checkpoints one inference run uses, ready to run: the device and precision, each stage's members (one
checkpoint, or several for an ensemble) loaded with the window settings each was trained with, eager or exported,
and the check that refuses scores that are not finite numbers.

inference.py runs the stages with them; the benchmarks load members the same way.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from checkpoints import SPAN_SELECTION, Stage, checkpoint_config, load_checkpoint, window_settings
from cli import InputError
from exports import PairScorer, SpanScorer, exported_forward
from features import PairTemplate, WindowSettings, check_window_fits
from long_context import has_sparse_attention, keep_block_sparse_attention, question_end_token


def choose_device(name: str) -> tuple[torch.device, torch.dtype]:
    """The device --device names, and the precision to run in there; an InputError for "cuda" without a CUDA GPU.

    Args:
        name: "cpu", "cuda" or "auto" (the GPU when there is one).

    Returns:
        (device, dtype): on a GPU bfloat16 where it is supported, else float16; float32 on the CPU.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available (use --device auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    # Half precision on GPU: bf16 where supported (no overflow), else fp16. Full precision on CPU.
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    return device, dtype


@dataclass
class Member:
    """One checkpoint of a stage, ready to run: its tokenizer, how it joins a question and a paragraph, its forward,
    and the window settings it runs with."""

    path: Path
    tokenizer: object
    template: PairTemplate
    forward: object
    settings: WindowSettings


def load_members(
    paths: list[str], stage: Stage, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> list[Member]:
    """Loads each checkpoint of a stage (an ensemble when there are several), with its own window settings
    (checkpoints.window_settings), as eager or exported (--export) scorers on `device`.

    Args:
        paths: the checkpoint folders.
        stage: PARAGRAPH_SELECTION or SPAN_SELECTION.
        args: parse_arguments' arguments (the window flags and --export).
        device, dtype: where and in what precision the models run (choose_device).

    Returns:
        One Member per checkpoint, in order.
    """
    given = {name: getattr(args, name) for name in WindowSettings.__dataclass_fields__}
    members = []
    for path in paths:
        settings = window_settings(path, checkpoint_config(path, stage), given)
        tokenizer, model = load_checkpoint(path, stage, settings.max_seq_length)
        # Paragraph selection cuts a paragraph to fit one sequence: no stride.
        stride = settings.doc_stride if stage is SPAN_SELECTION else 0
        problem = check_window_fits(tokenizer, settings.max_seq_length, settings.max_question_length, stride)
        if problem:
            raise InputError(f"{path}: {problem}")
        if args.export != "none" and has_sparse_attention(model):
            raise InputError(
                f"{path}: --export {args.export}: a {model.config.model_type} model's attention follows the length of "
                "each batch, which an export would fix at one length: use --export none"
            )
        keep_block_sparse_attention(model)
        model = model.to(device=device, dtype=dtype)
        if stage is SPAN_SELECTION:
            module = SpanScorer(model, question_end_token(model, tokenizer)).eval()
        else:
            module = PairScorer(model).eval()
        if args.export != "none":
            module = exported_forward(module, args.export, path, device, dtype, settings.max_seq_length)
        members.append(Member(Path(path), tokenizer, PairTemplate.of(tokenizer), module, settings))
    return members


def check_finite(member: Member, stage: Stage, bad: int, total: int) -> None:
    """Refuses to answer from scores that are not numbers: NaN scores would pick the first candidate of every
    question, and NaN or infinite logits a span at random, with plausible metrics.

    Args:
        member: the checkpoint that gave the scores.
        stage: its stage (named in the message).
        bad: how many of its sequences had a score that is not finite.
        total: how many sequences it scored.

    Raises:
        InputError: when `bad` is not 0, naming the checkpoint and both counts.
    """
    if bad:
        raise InputError(
            f"{member.path}: the {stage.role} model gave scores that are not finite (NaN or infinite) for {bad} of "
            f"{total} sequences: its weights are broken, or half precision overflowed (try --device cpu)"
        )
