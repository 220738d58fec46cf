"""Batches: sequences (question-paragraph pairs or windows) run through a model a chunk at a time, sorted by length and
padded per batch, so that memory stays bounded however many there are; with background threads, the CPU work of the
next batches and of the finished ones overlaps the device's."""

import argparse
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

# Sequences (pairs or windows) prepared, run and post-processed together: bounds memory to a few tens of MB.
SEQUENCES_PER_CHUNK = 1024
# With --overlap, the first chunk is this many batches, and each next one twice the last, up to SEQUENCES_PER_CHUNK:
# the device starts after a few batches are prepared instead of a thousand sequences, and the next chunk is prepared
# while it runs. Without it, small chunks would only cost padding (length sorting within fewer sequences).
FIRST_CHUNK_BATCHES = 2


@dataclass
class StageStats:
    """The counts and times of one stage of inference, which run_model and inference.py add to and inference.py logs:
    the sequences run, their tokens and the padding tokens added, and the seconds spent in each step by name
    ("tokenize", "prepare", "model", "post-process", "total")."""

    name: str
    sequences: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: dict = field(default_factory=dict)

    @property
    def padding_fraction(self):
        return self.padded_tokens / max(1, self.tokens + self.padded_tokens)

    def add_time(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def padded_batches(sequences, pad_token_id: int, batch_size: int):
    """Yields (positions, [input_ids, attention_mask, token_type_ids] tensors) over `sequences` ((input_ids,
    token_type_ids or None) pairs), longest first, each batch padded to its own longest sequence."""
    lengths = np.array([len(input_ids) for input_ids, _ in sequences])
    order = np.argsort(-lengths, kind="stable")
    for batch_start in range(0, len(order), batch_size):
        positions = order[batch_start : batch_start + batch_size]
        width = int(lengths[positions[0]])
        input_ids = np.full((len(positions), width), pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(positions), width), dtype=np.int64)
        token_type_ids = np.zeros((len(positions), width), dtype=np.int64)
        for row, position in enumerate(positions):
            ids, types = sequences[position]
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
            if types is not None:
                token_type_ids[row, : len(ids)] = types
        yield positions, [torch.from_numpy(array) for array in (input_ids, attention_mask, token_type_ids)]


def _in_background(iterator, depth):
    """Runs `iterator` in a thread, up to `depth` items ahead of the consumer; its exceptions are raised here."""
    items = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as error:
            items.put(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def chunk_sizes(batch_size, overlap):
    """The number of sequences of each chunk: SEQUENCES_PER_CHUNK, or with `overlap` FIRST_CHUNK_BATCHES batches,
    then twice the last, up to SEQUENCES_PER_CHUNK."""
    size = min(SEQUENCES_PER_CHUNK, FIRST_CHUNK_BATCHES * batch_size) if overlap else SEQUENCES_PER_CHUNK
    while True:
        yield size
        size = min(SEQUENCES_PER_CHUNK, 2 * size)


def run_model(
    keyed_sequences: Iterable[tuple[object, np.ndarray, np.ndarray | None]],
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Sequence[torch.Tensor]],
    pad_token_id: int,
    args: argparse.Namespace,
    device: torch.device,
    stats: StageStats,
    consume: Callable[[list[object], list[tuple[np.ndarray, ...]]], None],
    overlap: bool,
) -> None:
    """Runs `forward` over `keyed_sequences` and calls consume(keys, outputs) once per batch, in order. Sequences are
    taken a chunk at a time (chunk_sizes), sorted by length within the chunk, and each batch is padded to its own
    longest.

    With `overlap`, preparing the batches (assembling and padding) and consuming the outputs run in two threads beside
    the forward passes, so that on a GPU the CPU work hides behind the device's: the preparing thread may run a whole
    chunk ahead, so that it builds the next chunk while the device runs the last one, and the first chunks are small
    so that the device starts at once (benchmarks/speed_mechanisms.py: a plain prefetch of the next batches is slower
    than none, as each chunk is prepared whole before its first batch).

    Args:
        keyed_sequences: (key, input_ids, token_type_ids or None) tuples, any number (a generator).
        forward: the model (exports.PairScorer or SpanScorer, or their exports): input tensors -> output tensors.
        pad_token_id: the tokenizer's padding token.
        args: with `batch_size`, sequences per forward pass.
        device: where the model runs.
        stats: the StageStats that get the counts and times.
        consume: called with the keys of a batch and, per sequence, a tuple of its rows of the outputs: a score, or
            logits trimmed to the sequence's length.
        overlap: whether to use the background threads.
    """

    def prepared_batches():
        sequences = iter(keyed_sequences)
        for size in chunk_sizes(args.batch_size, overlap):
            start = time.perf_counter()
            chunk = list(itertools.islice(sequences, size))
            if not chunk:
                return
            lengths = [len(input_ids) for _, input_ids, _ in chunk]
            batches = padded_batches([sequence[1:] for sequence in chunk], pad_token_id, args.batch_size)
            stats.add_time("prepare", time.perf_counter() - start)
            while True:
                start = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                positions, tensors = batch
                if device.type == "cuda":
                    tensors = [tensor.pin_memory() for tensor in tensors]
                stats.add_time("prepare", time.perf_counter() - start)
                yield [chunk[p][0] for p in positions], [lengths[p] for p in positions], tensors

    def consume_timed(keys, outputs):
        start = time.perf_counter()
        consume(keys, outputs)
        stats.add_time("post-process", time.perf_counter() - start)

    ahead = -(-SEQUENCES_PER_CHUNK // args.batch_size) + 1  # batches: a whole chunk
    batches = _in_background(prepared_batches(), depth=ahead) if overlap else prepared_batches()
    with (
        torch.inference_mode(),
        ThreadPoolExecutor(max_workers=1) as consumer,
        tqdm(desc=stats.name, unit="seq", leave=False, disable=None) as progress,
    ):
        pending = []
        for keys, lengths, tensors in batches:
            start = time.perf_counter()
            inputs = [tensor.to(device, non_blocking=True) for tensor in tensors]
            results = [
                (output.float() if output.is_floating_point() else output).cpu().numpy() for output in forward(*inputs)
            ]
            outputs = [
                tuple(result[row, :length] if result.ndim == 2 else result[row] for result in results)
                for row, length in enumerate(lengths)
            ]
            stats.add_time("model", time.perf_counter() - start)
            stats.sequences += len(keys)
            stats.tokens += sum(lengths)
            stats.padded_tokens += len(keys) * tensors[0].shape[1] - sum(lengths)
            progress.update(len(keys))
            if overlap:
                pending.append(consumer.submit(consume_timed, keys, outputs))
                while len(pending) > 4:
                    pending.pop(0).result()
            else:
                consume_timed(keys, outputs)
        for future in pending:
            future.result()
