"""The models as inference runs them: scorers that give plain tensors (eagerly), and their exports (TorchScript,
torch.export), cached in <checkpoint>/exported/ and reused while the weights and settings stay the same."""

import json
import logging
import os
import time
import warnings
from pathlib import Path

import torch

from cli import one_line
from long_context import question_global_attention
from spans import best_spans_on_device

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


class SpanDecoder(torch.nn.Module):
    """A question-answering model followed by span decoding (utils_qa.best_spans_on_device), both on the device: each
    window's n best spans (start tokens, end tokens, scores) and its log partition come back, not its logits."""

    def __init__(self, model, max_answer_length, n_best_size, question_end_token=None):
        super().__init__()
        self.scorer = SpanScorer(model, question_end_token)
        self.max_answer_length, self.n_best_size = max_answer_length, n_best_size

    def forward(self, input_ids, attention_mask, token_type_ids, context_start, context_end):
        start_logits, end_logits = self.scorer(input_ids, attention_mask, token_type_ids)
        return best_spans_on_device(
            start_logits, end_logits, context_start, context_end, self.max_answer_length, self.n_best_size
        )


class JoinedSpanDecoder(SpanDecoder):
    """A SpanDecoder for windows over joined candidates (--end_to_end): it also takes each token's run of paragraph
    tokens (utils_qa.token_runs, -1 for the question, the separators and padding), so that no span crosses a
    separator on the device either."""

    def forward(self, input_ids, attention_mask, token_type_ids, context_start, context_end, runs):
        start_logits, end_logits = self.scorer(input_ids, attention_mask, token_type_ids)
        return best_spans_on_device(
            start_logits, end_logits, context_start, context_end, self.max_answer_length, self.n_best_size, runs
        )


def _example_inputs(module, device):
    """A small batch to trace or export with; one row is padded so that the attention mask is really used (and, for
    a SpanDecoder, the rows' paragraph bounds; for a JoinedSpanDecoder, their runs of paragraph tokens, two in the
    first row)."""
    input_ids = torch.randint(5, 100, (2, 16), device=device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    inputs = (input_ids, attention_mask, torch.zeros_like(input_ids))
    if isinstance(module, SpanDecoder):
        inputs += (torch.tensor([3, 2], device=device), torch.tensor([15, 9], device=device))
    if isinstance(module, JoinedSpanDecoder):
        runs = torch.full((2, 16), -1, device=device)
        runs[0, 3:8], runs[0, 9:15], runs[1, 2:9] = 0, 1, 0
        inputs += (runs,)
    return inputs


def _export_stamp(checkpoint, device, dtype, settings):
    weights = sorted(checkpoint.glob("*.safetensors"))
    return {
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
        "torch": torch.__version__,
        "device": device.type,
        "dtype": str(dtype),
        **settings,
    }


def _export(module, kind, device, max_seq_length):
    example = _example_inputs(module, device)
    with warnings.catch_warnings():
        # Tracing warns about Python values it records as constants and about TorchScript's deprecation; both are
        # expected: the predictions of the exported model are compared with eager ones in the tests.
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            return torch.jit.trace(module, example, check_trace=False)
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=max(max_seq_length, 17))
        dynamic = [{0: batch, 1: length} if tensor.dim() == 2 else {0: batch} for tensor in example]
        return torch.export.export(module, example, dynamic_shapes=dynamic)


def exported_forward(module, kind, checkpoint, device, dtype, max_seq_length):
    """The exported version of `module`, cached in <checkpoint>/exported/ and reused while the weights, torch
    version, device, dtype, longest sequence (and a SpanDecoder's settings) stay the same."""
    checkpoint = Path(checkpoint)
    suffix = "pt" if kind == "torchscript" else "pt2"
    cache = (
        checkpoint / "exported" / f"{type(module).__name__}-{kind}-{device.type}-{str(dtype).split('.')[-1]}.{suffix}"
    )
    stamp_path = cache.with_suffix(".json")
    settings = {"max_seq_length": max_seq_length}
    if isinstance(module, SpanDecoder):
        settings.update(max_answer_length=module.max_answer_length, n_best_size=module.n_best_size)
    stamp = _export_stamp(checkpoint, device, dtype, settings)
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
    try:
        cache.parent.mkdir(exist_ok=True)
        # Written beside and renamed, stamp last: an interrupted run leaves no cache that looks complete.
        partial = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp{cache.suffix}")
        if kind == "torchscript":
            exported.save(str(partial))
        else:
            torch.export.save(exported, str(partial))
        os.replace(partial, cache)
        stamp_path.write_text(json.dumps(stamp))
    except OSError as error:
        logger.warning(f"Could not cache the export in {cache.parent} ({error.strerror}); it is used uncached")
    return exported if kind == "torchscript" else exported.module()


def _read_stamp(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
