"""The models as inference runs them: scorers that give plain tensors (eagerly), and their exports (TorchScript,
torch.export), cached in <checkpoint>/exported/ and reused while the weights and settings stay the same."""

import io
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

from cli import one_line
from long_context import question_global_attention

logger = logging.getLogger(__name__)


class PairScorer(torch.nn.Module):
    """A multiple-choice model applied to single (question, paragraph) sequences: (batch, length) -> (batch,) scores."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        logits = self.model(
            input_ids=input_ids[:, None],
            attention_mask=attention_mask[:, None],
            token_type_ids=token_type_ids[:, None],
            return_dict=False,
        )[0]
        return (logits[:, 0],)


class SpanScorer(torch.nn.Module):
    """A question-answering model with plain tensor outputs: (batch, length) -> (start logits, end logits).

    A model that takes global attention (Longformer) gets it on the question, as in training (run_qa.py)."""

    def __init__(self, model, question_end_token=None):
        super().__init__()
        self.model = model
        self.question_end_token = question_end_token

    def forward(self, input_ids, attention_mask, token_type_ids):
        global_attention = {}
        if self.question_end_token is not None:
            global_attention["global_attention_mask"] = question_global_attention(input_ids, self.question_end_token)
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=False,
            **global_attention,
        )[:2]


def _example_inputs(device):
    """A small batch to trace or export with; one row is padded so that the attention mask is really used."""
    input_ids = torch.randint(5, 100, (2, 16), device=device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    return input_ids, attention_mask, torch.zeros_like(input_ids)


def _export_stamp(checkpoint, device, dtype, max_seq_length):
    weights = sorted(checkpoint.glob("*.safetensors"))
    return {
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
        "torch": torch.__version__,
        "device": device.type,
        "dtype": str(dtype),
        "max_seq_length": max_seq_length,
    }


def _export(module, kind, device, max_seq_length):
    example = _example_inputs(device)
    with warnings.catch_warnings():
        # Tracing warns about Python values it records as constants and about TorchScript's deprecation; both are
        # expected: the predictions of the exported model are compared with eager ones in the tests.
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            return torch.jit.trace(module, example, check_trace=False)
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=max(max_seq_length, 17))
        dynamic = [{0: batch, 1: length} if tensor.dim() == 2 else {0: batch} for tensor in example]
        return torch.export.export(module, example, dynamic_shapes=dynamic)


def exported_forward(
    module: PairScorer | SpanScorer,
    kind: str,
    checkpoint: str | Path,
    device: torch.device,
    dtype: torch.dtype,
    max_seq_length: int,
) -> torch.nn.Module:
    """The exported version of a scorer, cached in <checkpoint>/exported/ and reused while the weights, torch version,
    device, dtype and longest sequence stay the same.

    The cache is a convenience, never a reason to fail: the export is serialised in memory first (torch's own file
    writer aborts the whole process on a full disk), then written beside its destination and renamed, the stamp
    last; when that cannot be done (a full disk, a read-only checkpoint) nothing partial is left and the export runs
    uncached, with a warning. A cache file damaged since is exported again.

    Args:
        module: a PairScorer or SpanScorer on `device`.
        kind: "torchscript" or "torch_export".
        checkpoint: the checkpoint folder.
        device, dtype: where and in what precision it runs.
        max_seq_length: the longest sequence it will be given.

    Returns:
        A module with the scorer's inputs and outputs (a TorchScript module, or the torch.export program's module).
    """
    checkpoint = Path(checkpoint)
    suffix = "pt" if kind == "torchscript" else "pt2"
    cache = (
        checkpoint / "exported" / f"{type(module).__name__}-{kind}-{device.type}-{str(dtype).split('.')[-1]}.{suffix}"
    )
    stamp_path = cache.with_suffix(".json")
    stamp = _export_stamp(checkpoint, device, dtype, max_seq_length)
    if cache.exists() and stamp_path.exists() and _read_stamp(stamp_path) == stamp:
        logger.info(f"Reusing the {kind} export {cache}")
        try:
            if kind == "torchscript":
                return torch.jit.load(str(cache), map_location=device)
            return torch.export.load(str(cache)).module()
        except Exception as error:  # a cache file damaged after it was written: export again
            logger.warning(f"Could not load {cache} ({one_line(error)}); exporting again")

    start = time.perf_counter()
    exported = _export(module, kind, device, max_seq_length)
    logger.info(f"Exported {checkpoint} with {kind} in {time.perf_counter() - start:.1f} s")
    buffer = io.BytesIO()
    if kind == "torchscript":
        torch.jit.save(exported, buffer)
    else:
        torch.export.save(exported, buffer)
    try:
        cache.parent.mkdir(exist_ok=True)
        _write_beside(cache, buffer.getvalue())
        _write_beside(stamp_path, json.dumps(stamp).encode())
    except OSError as error:
        logger.warning(f"Could not cache the export in {cache.parent} ({error.strerror}); it runs uncached")
    return exported if kind == "torchscript" else exported.module()


def _write_beside(path, data):
    """Writes `data` to a temporary file beside `path` and renames it over `path`; removes it when that fails."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _read_stamp(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
