"""Two-stage inference: pick each test question's paragraph, find the answer in it, and write pred.csv.

    python inference.py --context_file context.json --test_file test.json --output_file pred.csv \
        [--mc_model DIR [DIR ...]] [--qa_model DIR [DIR ...]] [--top_k_paragraphs K] [--analysis_dir DIR] \
        [--export {none,torchscript,torch_export}] [--batch_size 32] [--device {auto,cpu,cuda}]

    python inference.py --end_to_end --qa_model DIR [DIR ...] --context_file ... --test_file ... --output_file ...

Both stages reuse the training preprocessing and post-processing of utils_qa.py; decoding.py chooses the answer from
the models' scores (joint paragraph x span decoding with --top_k_paragraphs, ensembles with several directories after
--mc_model / --qa_model). When the questions carry labels ("relevant" and "answer", as valid.json does), the
end-to-end metrics are logged and written to <output_file>.metrics.json, and --analysis_dir gets an error analysis
(analysis.py).

With --end_to_end there is no paragraph selection: the span-selection model reads each question with all its candidate
paragraphs joined in file order (adl_data.join_candidates, as run_qa.py --context_mode candidates does), and each
answer is mapped back to its paragraph and offsets in it, so the CSV, the metrics and the analysis are the same.

Every distinct paragraph is tokenized once per tokenizer and each (question, paragraph) sequence is assembled from the
pieces. Sequences go through the model a chunk at a time (SEQUENCES_PER_CHUNK), so memory stays bounded however many
questions and windows there are (with the background threads the first chunks are smaller, so that the model starts at
once); within a chunk they are sorted by length and each batch is padded to its own longest. A multiple-choice model
scores each pair on its own (the softmax over candidates does not change which one is highest), so stage 1 needs no
candidate padding either. On a GPU, a background thread prepares the next batches and another post-processes the
finished ones while the device computes.

Output files are checked before any model runs and written at the end through a temporary file: a failed run leaves
no partial output (adl_data.write_atomically has the rules for links, devices and pipes).
"""

import collections
import inspect
import itertools
import json
import logging
import os
import queue
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
)

import analysis
from adl_data import (
    ArgumentParser,
    InputError,
    join_candidates,
    load_context,
    load_questions,
    non_negative_int,
    positive_int,
    prepare_output_path,
    run_main,
    write_json,
    write_predictions_csv,
)
from decoding import (
    SpanCandidates,
    decode,
    merge_span_candidates,
    paragraph_log_probs,
    top_paragraphs,
)
from utils_qa import (
    DOC_STRIDE,
    MAX_ANSWER_LENGTH,
    MAX_QUESTION_LENGTH,
    MAX_SEQ_LENGTH,
    N_BEST_SIZE,
    PairTemplate,
    WindowSpans,
    best_spans_of_windows,
    best_spans_on_device,
    candidate_separator_ids,
    character_spans,
    check_model_reads,
    check_window_fits,
    join_tokens,
    keep_block_sparse_attention,
    merge_character_spans,
    question_end_token,
    question_global_attention,
    question_token_ids,
    question_windows,
    token_runs,
    tokenize_texts,
    tokenizer_fingerprint,
)

logger = logging.getLogger("inference")

ROOT = Path(__file__).resolve().parent
DEFAULT_MC_MODEL = ROOT / "models" / "paragraph-selection"
DEFAULT_QA_MODEL = ROOT / "models" / "span-selection"
DEMO_MARKER = "DEMO_MODEL.md"
# Chosen by measurement (docs/inference.md, "Joint decoding"): the paragraphs whose spans compete for the answer.
TOP_K_PARAGRAPHS = 1
# Sequences (pairs or windows) prepared, run and post-processed together: bounds memory to a few tens of MB.
SEQUENCES_PER_CHUNK = 1024
# With --overlap, the first chunk is this many batches, and each next one twice the last, up to SEQUENCES_PER_CHUNK:
# the device starts after a few batches are prepared instead of a thousand sequences, and the next chunk is prepared
# while it runs. Without it, small chunks would only cost padding (length sorting within fewer sequences).
FIRST_CHUNK_BATCHES = 2


def parse_arguments(argv=None):
    parser = ArgumentParser(description="Two-stage Chinese QA inference: writes id,answer rows to a CSV.")
    parser.add_argument("--context_file", required=True, help="context.json: the list of all paragraphs.")
    parser.add_argument("--test_file", required=True, help="test.json: the questions with their candidate paragraphs.")
    parser.add_argument("--output_file", required=True, help="Where to write the CSV (parent folders are created).")
    parser.add_argument(
        "--mc_model",
        nargs="+",
        metavar="DIR",
        help="Paragraph-selection checkpoint directory; several make an ensemble (their probabilities averaged). "
        f"Default: {DEFAULT_MC_MODEL}.",
    )
    parser.add_argument(
        "--qa_model",
        nargs="+",
        default=[str(DEFAULT_QA_MODEL)],
        metavar="DIR",
        help="Span-selection checkpoint directory; several make an ensemble (merged per character span).",
    )
    parser.add_argument(
        "--top_k_paragraphs",
        type=positive_int,
        default=TOP_K_PARAGRAPHS,
        metavar="K",
        help="Search the answer in each question's K most probable paragraphs, scoring log P(paragraph) + "
        f"log P(span | paragraph); 1 is the plain two-stage pipeline (default: {TOP_K_PARAGRAPHS}).",
    )
    parser.add_argument(
        "--end_to_end",
        action="store_true",
        help="No paragraph selection: --qa_model reads each question with all its candidate paragraphs joined "
        "(a model trained with run_qa.py --context_mode candidates; docs/end-to-end.md).",
    )
    parser.add_argument(
        "--analysis_dir",
        help="Labelled questions only: write errors.jsonl and summary.md (the answers sorted into right, wrong "
        "paragraph, wrong span, partial overlap) to this folder.",
    )
    parser.add_argument(
        "--export",
        choices=["none", "torchscript", "torch_export"],
        default="none",
        help="Run exported models (cached in <checkpoint>/exported/ and reused) instead of eager PyTorch.",
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=32, help="Sequences (pairs or windows) per forward pass."
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: the GPU if there is one."
    )
    parser.add_argument(
        "--decode_on_device",
        action="store_true",
        help="Pick each window's --n_best_size best spans inside the (exported) model, on the GPU, so that a few "
        "numbers per window come back instead of two rows of logits; the same answers as decoding on the CPU.",
    )
    parser.add_argument(
        "--overlap",
        choices=["auto", "on", "off"],
        default="auto",
        help="Prepare the next batches and post-process the finished ones in background threads while the model "
        "runs (auto: on a GPU, where it hides the CPU work; on a CPU the threads only compete for the same cores).",
    )
    parser.add_argument("--max_seq_length", type=positive_int, default=MAX_SEQ_LENGTH, help="Tokens per sequence.")
    parser.add_argument(
        "--doc_stride", type=non_negative_int, default=DOC_STRIDE, help="Tokens shared by consecutive windows."
    )
    parser.add_argument(
        "--max_question_length", type=positive_int, default=MAX_QUESTION_LENGTH, help="Longer questions are cut."
    )
    parser.add_argument(
        "--n_best_size", type=positive_int, default=N_BEST_SIZE, help="Candidate spans kept per paragraph and model."
    )
    parser.add_argument(
        "--max_answer_length", type=positive_int, default=MAX_ANSWER_LENGTH, help="Longest answer, in tokens."
    )
    args = parser.parse_args(argv)
    if args.end_to_end and args.mc_model:
        parser.error("--end_to_end reads every candidate with the --qa_model alone: drop --mc_model")
    if args.end_to_end and args.top_k_paragraphs != TOP_K_PARAGRAPHS:
        parser.error("--end_to_end reads every candidate: --top_k_paragraphs is for the two stages")
    if args.mc_model is None and not args.end_to_end:
        args.mc_model = [str(DEFAULT_MC_MODEL)]
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints


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


@dataclass
class Stage:
    """What a stage needs of its checkpoints: the model class, the scorer wrapping it, and how to name it."""

    role: str
    auto_model_class: type
    scorer_class: type
    architecture_suffix: str


PARAGRAPH_SELECTION = Stage("paragraph-selection", AutoModelForMultipleChoice, PairScorer, "ForMultipleChoice")
SPAN_SELECTION = Stage("span-selection", AutoModelForQuestionAnswering, SpanScorer, "ForQuestionAnswering")


def choose_device(name):
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


def _one_line(error):
    return " ".join(str(error).split())[:300]


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
        raise InputError(f"{path}: cannot read the {role} model's config.json ({_one_line(error)})") from None
    architectures = config.architectures or []
    if architectures and not any(name.endswith(stage.architecture_suffix) for name in architectures):
        raise InputError(
            f"{path}: a {', '.join(architectures)} checkpoint, not a {role} model (*{stage.architecture_suffix}): "
            "are --mc_model and --qa_model swapped?"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as error:  # tokenizer files of any shape the user gave us
        raise InputError(f"{path}: cannot load the {role} tokenizer ({_one_line(error)})") from None
    if not tokenizer.is_fast:
        raise InputError(f"{path}: the {role} tokenizer must be a fast tokenizer (character offsets)")
    problem = check_model_reads(config, tokenizer, max_seq_length)
    if problem:
        raise InputError(f"{path}: {role} model: {problem}")
    try:
        model, loading = stage.auto_model_class.from_pretrained(path, config=config, output_loading_info=True)
    except Exception as error:  # truncated or mismatched weights files
        raise InputError(f"{path}: cannot load the {role} weights ({_one_line(error)})") from None
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
            logger.warning(f"Could not load {cache} ({_one_line(error)}); exporting again")

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


@dataclass
class Member:
    """One checkpoint of a stage, ready to run: its tokenizer, how it joins a question and a paragraph, its forward."""

    path: Path
    tokenizer: object
    template: PairTemplate
    forward: object


def has_sparse_attention(model):
    """Longformer (sliding windows and global attention) or BigBird (blocks, or full attention for short batches)."""
    takes_global_attention = "global_attention_mask" in inspect.signature(model.forward).parameters
    return takes_global_attention or getattr(model.config, "attention_type", None) == "block_sparse"


def load_members(paths, stage, args, device, dtype):
    members = []
    for path in paths:
        tokenizer, model = load_checkpoint(path, stage, args.max_seq_length)
        problem = check_window_fits(tokenizer, args.max_seq_length, args.max_question_length, args.doc_stride)
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
            end_token = question_end_token(model, tokenizer)
            if args.decode_on_device:
                decoder_class = JoinedSpanDecoder if args.end_to_end else SpanDecoder
                module = decoder_class(model, args.max_answer_length, args.n_best_size, end_token).eval()
            else:
                module = SpanScorer(model, end_token).eval()
        else:
            module = stage.scorer_class(model).eval()
        if args.export != "none":
            module = exported_forward(module, args.export, path, device, dtype, args.max_seq_length)
        members.append(Member(Path(path), tokenizer, PairTemplate.of(tokenizer), module))
    return members


# ---------------------------------------------------------------------------------------------------------------------
# Tokens and batches


class ParagraphTokens:
    """Each paragraph tokenized once per tokenizer, shared by every model (of either stage) with that tokenizer."""

    def __init__(self, context):
        self.context = context
        self.tokens = {}  # (tokenizer fingerprint, paragraph index) -> TokenizedText

    def of(self, tokenizer, paragraph_indices):
        fingerprint = tokenizer_fingerprint(tokenizer)
        missing = [p for p in dict.fromkeys(paragraph_indices) if (fingerprint, p) not in self.tokens]
        for p, tokens in zip(missing, tokenize_texts([self.context[p] for p in missing], tokenizer)):
            self.tokens[(fingerprint, p)] = tokens
        return {p: self.tokens[(fingerprint, p)] for p in paragraph_indices}


class CandidateTokens(ParagraphTokens):
    """ParagraphTokens of the context's paragraphs followed by one text per question: its candidates joined in file
    order (adl_data.join_candidates), whose tokens are assembled from the paragraphs' own (utils_qa.join_tokens).
    Text len(context) + q is question q's; `joined[q]` maps its offsets back to paragraphs."""

    def __init__(self, context, questions):
        self.joined = [join_candidates(q["paragraphs"], context) for q in questions]
        self.first_joined = len(context)
        super().__init__(list(context) + [joined.text for joined in self.joined])

    def of(self, tokenizer, paragraph_indices):
        own = [i for i in paragraph_indices if i < self.first_joined]
        joined = {i: self.joined[i - self.first_joined] for i in paragraph_indices if i >= self.first_joined}
        tokens = super().of(tokenizer, own + [p for j in joined.values() for p in j.paragraphs])
        separator_ids = candidate_separator_ids(tokenizer)
        for i, j in joined.items():
            tokens[i] = join_tokens([tokens[p] for p in j.paragraphs], separator_ids, j.starts)
        return {i: tokens[i] for i in paragraph_indices}


@dataclass
class StageStats:
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


def padded_batches(sequences, pad_token_id, batch_size):
    """Yields (positions, input tensors) over `sequences` ((input_ids, token_type_ids or None, extras) triples),
    longest first, each batch padded to its own longest sequence. The extras of the sequences follow as one tensor
    each: integers (a window's paragraph bounds, for a SpanDecoder) as (batch,), arrays of one integer per token (the
    runs of paragraph tokens, for a JoinedSpanDecoder) as (batch, length), padded with -1."""
    lengths = np.array([len(input_ids) for input_ids, _, _ in sequences])
    order = np.argsort(-lengths, kind="stable")
    for batch_start in range(0, len(order), batch_size):
        positions = order[batch_start : batch_start + batch_size]
        width = int(lengths[positions[0]])
        input_ids = np.full((len(positions), width), pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(positions), width), dtype=np.int64)
        token_type_ids = np.zeros((len(positions), width), dtype=np.int64)
        for row, position in enumerate(positions):
            ids, types, _ = sequences[position]
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
            if types is not None:
                token_type_ids[row, : len(ids)] = types
        extras = []
        for column in zip(*(sequences[position][2] for position in positions)):
            if np.ndim(column[0]) == 0:
                extras.append(np.array(column, dtype=np.int64))
            else:
                per_token = np.full((len(positions), width), -1, dtype=np.int64)
                for row, values in enumerate(column):
                    per_token[row, : len(values)] = values
                extras.append(per_token)
        tensors = [input_ids, attention_mask, token_type_ids, *extras]
        yield positions, [torch.from_numpy(np.ascontiguousarray(array)) for array in tensors]


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


def run_model(keyed_sequences, forward, pad_token_id, args, device, stats, consume, overlap, per_token=True):
    """Runs `forward` over `keyed_sequences` ((key, input_ids, token_type_ids, extra integers) tuples, any number) and
    calls consume(keys, outputs) once per batch, in order; outputs holds per sequence a tuple of its rows of the
    forward's outputs: a scalar score, or arrays trimmed to the sequence's length when `per_token` (logits), or the
    whole row (a SpanDecoder's n best spans). Sequences are taken a chunk at a time (chunk_sizes), sorted by length
    within the chunk, and each batch is padded to its own longest.

    With `overlap`, preparing the batches (assembling and padding) and consuming the outputs run in two threads beside
    the forward passes, so that on a GPU the CPU work hides behind the device's: the preparing thread may run a whole
    chunk ahead, so that it builds the next chunk while the device runs the last one."""

    def prepared_batches():
        sequences = iter(keyed_sequences)
        for size in chunk_sizes(args.batch_size, overlap):
            start = time.perf_counter()
            chunk = list(itertools.islice(sequences, size))
            if not chunk:
                return
            lengths = [len(input_ids) for _, input_ids, _, _ in chunk]
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
                tuple(result[row, :length] if per_token and result.ndim == 2 else result[row] for result in results)
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


# ---------------------------------------------------------------------------------------------------------------------
# The two stages


# Questions tokenized together, with their paragraphs: large enough for the tokenizer's batch calls to pay off, small
# enough that, with --overlap, the first batches reach the device at once.
QUESTIONS_PER_GROUP = 64


def tokenized_groups(entries, paragraph_tokens, member, args, stats):
    """Tokenizes `entries` ((question text, paragraph indices) pairs) a group of QUESTIONS_PER_GROUP at a time; yields
    for each entry (its position, its question's token ids, {paragraph index: TokenizedText} of its group)."""
    for group_start in range(0, len(entries), QUESTIONS_PER_GROUP):
        start = time.perf_counter()
        group = entries[group_start : group_start + QUESTIONS_PER_GROUP]
        question_ids = question_token_ids(
            [question for question, _ in group], member.tokenizer, args.max_question_length
        )
        tokens = paragraph_tokens.of(member.tokenizer, [p for _, paragraphs in group for p in paragraphs])
        stats.add_time("tokenize", time.perf_counter() - start)
        for offset, ids in enumerate(question_ids):
            yield group_start + offset, ids, tokens


def score_paragraphs(questions, paragraph_tokens, member, args, device, stats, overlap):
    """Stage 1 with one model: the score of each candidate paragraph of each question (a list of arrays)."""

    def pairs():
        # Tokenized a group of questions at a time, in the thread that prepares the batches (with --overlap).
        entries = [(q["question"], q["paragraphs"]) for q in questions]
        for q, question_ids, tokens in tokenized_groups(entries, paragraph_tokens, member, args, stats):
            room = member.template.room(question_ids, args.max_seq_length)
            for c, paragraph in enumerate(questions[q]["paragraphs"]):
                input_ids, token_type_ids, _ = member.template.assemble(question_ids, tokens[paragraph].ids[:room])
                yield (q, c), input_ids, token_type_ids, ()

    scores = [np.zeros(len(q["paragraphs"])) for q in questions]

    def consume(keys, outputs):
        for (q, c), (score,) in zip(keys, outputs):
            scores[q][c] = score

    run_model(pairs(), member.forward, member.tokenizer.pad_token_id, args, device, stats, consume, overlap)
    return scores


def character_offsets(window):
    """(char_starts, char_ends) of every token of a window's sequence: -1 outside the paragraph, and on the separators
    of joined candidates."""
    starts = np.full(len(window.input_ids), -1, dtype=np.int64)
    ends = np.full(len(window.input_ids), -1, dtype=np.int64)
    starts[window.context_start : window.context_start + len(window.offsets)] = window.offsets[:, 0]
    ends[window.context_start : window.context_start + len(window.offsets)] = window.offsets[:, 1]
    return starts, ends


def find_spans(questions, requests, paragraph_tokens, member, args, device, stats, overlap):
    """Stage 2 with one model: the SpanCandidates of each (question position, paragraph index) request: the
    n_best_size best character spans of the paragraph with log P(span | question, paragraph)."""
    windows = {}  # the Window of each sequence in flight: its characters are needed after the forward pass

    def sequences():
        entries = [(questions[q]["question"], [p]) for q, p in requests]
        for r, question_ids, tokens in tokenized_groups(entries, paragraph_tokens, member, args, stats):
            paragraph = tokens[requests[r][1]]
            for w, window in enumerate(
                question_windows(question_ids, paragraph, member.template, args.max_seq_length, args.doc_stride)
            ):
                windows[(r, w)] = window
                extras = ()
                if args.decode_on_device:
                    extras = (window.context_start, window.context_start + len(window.offsets))
                    if args.end_to_end:  # a JoinedSpanDecoder
                        extras += (token_runs(character_offsets(window)[0]),)
                yield (r, w), window.input_ids, window.token_type_ids, extras

    # Per request, its best spans so far (merged after each chunk, so memory does not grow with the windows) and
    # the log-sum-exp of the scores of all its valid spans.
    best_of_request = [None] * len(requests)
    log_partition = np.full(len(requests), -np.inf)

    def consume(keys, outputs):
        char_starts, char_ends = [], []
        for key in keys:
            starts, ends = character_offsets(windows.pop(key))
            char_starts.append(starts)
            char_ends.append(ends)
        if args.decode_on_device:
            best = [
                WindowSpans(start_tokens[valid], end_tokens[valid], scores[valid], float(log_partition))
                for start_tokens, end_tokens, scores, log_partition in outputs
                for valid in [np.isfinite(scores)]
            ]
        else:
            best = best_spans_of_windows(
                [output[0] for output in outputs],
                [output[1] for output in outputs],
                char_starts,
                args.max_answer_length,
                args.n_best_size,
            )
        pieces = collections.defaultdict(list)
        for (r, _), spans, starts, ends in zip(keys, best, char_starts, char_ends):
            pieces[r].append(character_spans(spans, starts, ends)[:3])
            log_partition[r] = np.logaddexp(log_partition[r], spans.log_partition)
        for r, new in pieces.items():
            earlier = [best_of_request[r]] if best_of_request[r] is not None else []
            best_of_request[r] = merge_character_spans(earlier + new, args.n_best_size)

    run_model(
        sequences(),
        member.forward,
        member.tokenizer.pad_token_id,
        args,
        device,
        stats,
        consume,
        overlap,
        per_token=not args.decode_on_device,
    )

    results = []
    for best, partition in zip(best_of_request, log_partition):
        if best is None or len(best[0]) == 0:
            results.append(SpanCandidates.empty())
        else:
            starts, ends, scores = best
            results.append(SpanCandidates(starts, ends, scores.astype(np.float64) - partition))
    return results


@dataclass
class Prediction:
    answers: dict  # question id -> answer text, in test order
    paragraphs: list  # the paragraph (index into context) each answer comes from, None when there is no answer
    stage1_paragraphs: list  # the most probable paragraph of each question under paragraph selection alone
    nbest: list  # the decoding.Answer list of each question, best first
    stages: tuple  # StageStats of paragraph selection and span selection
    load_seconds: float  # reading the checkpoints from disk (and exporting them)
    metrics: dict | None  # end-to-end metrics, when the questions carry labels


def output_paths(args):
    """Every file the run will write, checked before any model runs: the CSV, the metrics beside it, the analysis."""
    inputs = [args.context_file, args.test_file]
    paths = {"csv": prepare_output_path(args.output_file, inputs)}
    if paths["csv"].is_file() or not paths["csv"].exists():
        paths["metrics"] = prepare_output_path(f"{args.output_file}.metrics.json", inputs)
    if args.analysis_dir:
        for name in analysis.FILES:
            paths[name] = prepare_output_path(Path(args.analysis_dir) / name, inputs)
    return paths


def predict(args):
    """Runs the whole pipeline and writes the CSV (and the metrics and analysis of labelled questions)."""
    paths = output_paths(args)
    context = load_context(args.context_file)
    questions = load_questions(args.test_file, context, labels_if_present=True)
    labelled = "answer" in questions[0]
    if args.analysis_dir and not labelled:
        raise InputError(f"{args.test_file}: --analysis_dir needs labelled questions (with 'relevant' and 'answer')")
    device, dtype = choose_device(args.device)
    overlap = args.overlap == "on" or (args.overlap == "auto" and device.type == "cuda")

    start = time.perf_counter()
    mc_members = [] if args.end_to_end else load_members(args.mc_model, PARAGRAPH_SELECTION, args, device, dtype)
    qa_members = load_members(args.qa_model, SPAN_SELECTION, args, device, dtype)
    load_seconds = time.perf_counter() - start
    logger.info(
        f"{len(questions)} questions from {args.test_file}{' (labelled)' if labelled else ''}, {len(context)} "
        f"paragraphs; device {device}, {dtype}; {len(mc_members)} + {len(qa_members)} models; "
        + (
            "all candidates joined (end to end)"
            if args.end_to_end
            else f"top {args.top_k_paragraphs} paragraph(s) decoded"
        )
    )
    if args.end_to_end:
        nbest, stages = answers_end_to_end(questions, context, qa_members, args, device, overlap)
        # No paragraph selection: the paragraph the model chooses is that of its answer.
        stage1_paragraphs = [best[0].paragraph if best else q["paragraphs"][0] for q, best in zip(questions, nbest)]
    else:
        nbest, stage1_paragraphs, stages = answers_in_two_stages(
            questions, context, mc_members, qa_members, args, device, overlap
        )

    answers = {q["id"]: (best[0].text if best else "") for q, best in zip(questions, nbest)}
    prediction = Prediction(
        answers=answers,
        paragraphs=[best[0].paragraph if best else None for best in nbest],
        stage1_paragraphs=stage1_paragraphs,
        nbest=nbest,
        stages=stages,
        load_seconds=load_seconds,
        metrics=None,
    )
    write_predictions_csv(paths["csv"], [q["id"] for q in questions], answers)
    if labelled:
        prediction.metrics = analysis.end_to_end_metrics(questions, prediction)
        if "metrics" in paths:
            write_json(paths["metrics"], prediction.metrics)
        if args.analysis_dir:
            analysis.write_analysis(questions, context, prediction, paths)
    return prediction


def answers_in_two_stages(questions, context, mc_members, qa_members, args, device, overlap):
    """Paragraph selection, then span selection in the top --top_k_paragraphs paragraphs: the n-best answers of each
    question (decoding.decode), the paragraph each question's paragraph selection chose, and the StageStats."""
    paragraph_tokens = ParagraphTokens(context)
    stage1, stage2 = StageStats("paragraph selection"), StageStats("span selection")
    start = time.perf_counter()
    scores = [score_paragraphs(questions, paragraph_tokens, m, args, device, stage1, overlap) for m in mc_members]
    log_probs = [paragraph_log_probs([member_scores[q] for member_scores in scores]) for q in range(len(questions))]
    decoded = [top_paragraphs(log_prob, args.top_k_paragraphs) for log_prob in log_probs]
    stage1.add_time("total", time.perf_counter() - start)

    start = time.perf_counter()
    requests = [(q, questions[q]["paragraphs"][c]) for q in range(len(questions)) for c in decoded[q]]
    spans = [find_spans(questions, requests, paragraph_tokens, m, args, device, stage2, overlap) for m in qa_members]
    merged = [
        merge_span_candidates([member_spans[r] for member_spans in spans], args.n_best_size)
        for r in range(len(requests))
    ]
    nbest, r = [], 0
    for q, question in enumerate(questions):
        count = len(decoded[q])
        nbest.append(
            decode(
                [question["paragraphs"][c] for c in decoded[q]],
                [log_probs[q][c] for c in decoded[q]],
                merged[r : r + count],
                context,
                args.n_best_size,
            )
        )
        r += count
    stage2.add_time("total", time.perf_counter() - start)
    return nbest, [q["paragraphs"][d[0]] for q, d in zip(questions, decoded)], (stage1, stage2)


def answers_end_to_end(questions, context, qa_members, args, device, overlap):
    """Span selection over each question's candidates joined into one text (text len(context) + q of
    CandidateTokens): the n-best answers of each question, each mapped back to its paragraph, and the StageStats.

    An answer's score is log P(span | question, all candidates): every paragraph gets log P(p | q) = 0 in decode."""
    paragraph_tokens = CandidateTokens(context, questions)
    stats = StageStats("end-to-end span selection")
    start = time.perf_counter()
    requests = [(q, len(context) + q) for q in range(len(questions))]
    spans = [find_spans(questions, requests, paragraph_tokens, m, args, device, stats, overlap) for m in qa_members]
    nbest = []
    for q, joined in enumerate(paragraph_tokens.joined):
        merged = merge_span_candidates([member_spans[q] for member_spans in spans], args.n_best_size)
        paragraphs, candidates = spans_of_each_paragraph(merged, joined)
        nbest.append(decode(paragraphs, [0.0] * len(paragraphs), candidates, context, args.n_best_size))
    stats.add_time("total", time.perf_counter() - start)
    return nbest, (stats,)


def spans_of_each_paragraph(candidates, joined):
    """SpanCandidates over a joined text (adl_data.JoinedCandidates) split by paragraph: the paragraphs (indices into
    context.json, in the order joined) and the SpanCandidates of each, in its own offsets. No span crosses a
    separator (utils_qa.best_spans_of_windows)."""
    located = collections.defaultdict(list)  # paragraph -> [(offset, span index)]
    for index, (start, end) in enumerate(zip(candidates.starts.tolist(), candidates.ends.tolist())):
        paragraph, offset = joined.locate(start)
        if joined.locate(end - 1)[0] != paragraph:
            raise AssertionError(f"span [{start}, {end}) of a joined text crosses a separator")
        located[paragraph].append((offset, index))
    paragraphs = list(dict.fromkeys(joined.paragraphs))
    pieces = []
    for paragraph in paragraphs:
        offsets = np.array([offset for offset, _ in located[paragraph]], dtype=np.int64)
        mine = np.array([index for _, index in located[paragraph]], dtype=np.int64)
        lengths = candidates.ends[mine] - candidates.starts[mine]
        pieces.append(SpanCandidates(offsets, offsets + lengths, candidates.log_probs[mine]))
    return paragraphs, pieces


def log_summary(prediction, total_seconds, output_file):
    for stats in prediction.stages:
        times = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stats.seconds.items())
        logger.info(
            f"{stats.name}: {stats.sequences} sequences, {stats.tokens:,} tokens, "
            f"{100 * stats.padding_fraction:.1f}% padding; {times}"
        )
    if prediction.metrics:
        logger.info(analysis.metrics_line(prediction.metrics))
    logger.info(f"Wrote {output_file} in {total_seconds:.1f} s")


def main(argv=None):
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO, stream=sys.stderr)
    # Our own log says what was loaded; the library's weight-loading bars and notes would only bury it.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args = parse_arguments(argv)
    start = time.perf_counter()
    prediction = predict(args)
    log_summary(prediction, time.perf_counter() - start, args.output_file)
    return prediction.answers


if __name__ == "__main__":
    run_main(main)
