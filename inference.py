"""Two-stage inference: pick each test question's paragraph, find the answer in it, and write pred.csv.

    python inference.py --context_file context.json --test_file test.json --output_file pred.csv \
        [--mc_model models/paragraph-selection] [--qa_model models/span-selection] \
        [--export {none,torchscript,torch_export}] [--batch_size 32] [--device {auto,cpu,cuda}]

Both stages reuse the training preprocessing and post-processing of utils_qa.py. To spend little compute on
padding, every question-paragraph pair (stage 1) and every window (stage 2) is a sequence of its own: sequences are
sorted by length and each batch is padded to its own longest. A multiple-choice model scores each pair on its own
(the softmax over candidates does not change which one is highest), so stage 1 needs no candidate padding either.

The CSV is written to a temporary file and renamed at the end: a failed run leaves no partial pred.csv.
"""

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from adl_data import (
    InputError,
    load_context,
    load_questions,
    prepare_output_path,
    run_main,
    to_multiple_choice_examples,
    to_squad_examples,
    write_predictions_csv,
)
from utils_qa import (
    DOC_STRIDE,
    MAX_ANSWER_LENGTH,
    MAX_QUESTION_LENGTH,
    MAX_SEQ_LENGTH,
    N_BEST_SIZE,
    check_window_fits,
    postprocess_qa_predictions,
    prepare_multiple_choice_features,
    prepare_validation_features,
)

logger = logging.getLogger("inference")

ROOT = Path(__file__).resolve().parent
DEFAULT_MC_MODEL = ROOT / "models" / "paragraph-selection"
DEFAULT_QA_MODEL = ROOT / "models" / "span-selection"
DEMO_MARKER = "DEMO_MODEL.md"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description="Two-stage Chinese QA inference: writes id,answer rows to a CSV.")
    parser.add_argument("--context_file", required=True, help="context.json: the list of all paragraphs.")
    parser.add_argument("--test_file", required=True, help="test.json: the questions with their candidate paragraphs.")
    parser.add_argument("--output_file", required=True, help="Where to write the CSV (parent folders are created).")
    parser.add_argument("--mc_model", default=str(DEFAULT_MC_MODEL), help="Paragraph-selection checkpoint directory.")
    parser.add_argument("--qa_model", default=str(DEFAULT_QA_MODEL), help="Span-selection checkpoint directory.")
    parser.add_argument(
        "--export",
        choices=["none", "torchscript", "torch_export"],
        default="none",
        help="Run exported models (cached in <checkpoint>/exported/ and reused) instead of eager PyTorch.",
    )
    parser.add_argument("--batch_size", type=int, default=32, help="Sequences (pairs or windows) per forward pass.")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: the GPU if there is one."
    )
    parser.add_argument("--max_seq_length", type=int, default=MAX_SEQ_LENGTH, help="Tokens per sequence.")
    parser.add_argument("--doc_stride", type=int, default=DOC_STRIDE, help="Tokens shared by consecutive windows.")
    parser.add_argument(
        "--max_question_length", type=int, default=MAX_QUESTION_LENGTH, help="Longer questions are cut."
    )
    parser.add_argument("--n_best_size", type=int, default=N_BEST_SIZE, help="Candidate spans kept per question.")
    parser.add_argument("--max_answer_length", type=int, default=MAX_ANSWER_LENGTH, help="Longest answer, in tokens.")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Models


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
    """A question-answering model with plain tensor outputs: (batch, length) -> (start logits, end logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=False
        )[:2]


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


def load_checkpoint(path, auto_model_class, role):
    """Loads a fine-tuned checkpoint directory with its tokenizer; a missing or broken one is an InputError."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: {role} model directory not found (run `bash download.sh` first, or pass its path)")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: {role} model directory is incomplete: no config.json")
    if not any(path.glob("*.safetensors")):
        raise InputError(f"{path}: {role} model directory is incomplete: no *.safetensors weights")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = auto_model_class.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot load the {role} model ({' '.join(str(error).split())})") from None
    if not tokenizer.is_fast:
        raise InputError(f"{path}: the {role} tokenizer must be a fast tokenizer (character offsets)")
    if (path / DEMO_MARKER).exists():
        logger.warning(
            f"{path} is a DEMO model, trained from scratch on a small sample: its answers are close to random. "
            "Set MODEL_SOURCE in download.sh to your fine-tuned checkpoints."
        )
    logger.info(f"Loaded the {role} model from {path} ({model.num_parameters():,} parameters)")
    return tokenizer, model.eval()


def _example_inputs(device):
    """A small batch to trace or export with; one row is padded so that the attention mask is really used."""
    input_ids = torch.randint(5, 100, (2, 16), device=device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    return input_ids, attention_mask, torch.zeros_like(input_ids)


def _export_stamp(checkpoint, device, dtype):
    weights = sorted(checkpoint.glob("*.safetensors"))
    return {
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
        "torch": torch.__version__,
        "device": device.type,
        "dtype": str(dtype),
    }


def _export(module, kind, device):
    example = _example_inputs(device)
    with warnings.catch_warnings():
        # Tracing warns about Python values it records as constants and about TorchScript's deprecation; both are
        # expected: the predictions of the exported model are compared with eager ones in the tests.
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            return torch.jit.trace(module, example, check_trace=False)
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=MAX_SEQ_LENGTH)
        dynamic = {name: {0: batch, 1: length} for name in INPUT_NAMES}
        return torch.export.export(module, example, dynamic_shapes=dynamic)


def exported_forward(module, kind, checkpoint, device, dtype):
    """The exported version of `module`, cached in <checkpoint>/exported/ and reused while the weights, torch
    version, device and dtype stay the same."""
    checkpoint = Path(checkpoint)
    suffix = "pt" if kind == "torchscript" else "pt2"
    cache = (
        checkpoint / "exported" / f"{type(module).__name__}-{kind}-{device.type}-{str(dtype).split('.')[-1]}.{suffix}"
    )
    stamp_path = cache.with_suffix(".json")
    stamp = _export_stamp(checkpoint, device, dtype)
    if cache.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        logger.info(f"Reusing the {kind} export {cache}")
        if kind == "torchscript":
            return torch.jit.load(str(cache), map_location=device)
        return torch.export.load(str(cache)).module()

    start = time.perf_counter()
    exported = _export(module, kind, device)
    logger.info(f"Exported {checkpoint} with {kind} in {time.perf_counter() - start:.1f} s")
    try:
        cache.parent.mkdir(exist_ok=True)
        if kind == "torchscript":
            exported.save(str(cache))
        else:
            torch.export.save(exported, str(cache))
        stamp_path.write_text(json.dumps(stamp))
    except OSError as error:
        logger.warning(f"Could not cache the export in {cache.parent} ({error.strerror}); it is used uncached")
    return exported if kind == "torchscript" else exported.module()


def make_forward(model, scorer_class, export, checkpoint, device, dtype):
    module = scorer_class(model.to(device=device, dtype=dtype)).eval()
    if export == "none":
        return module
    return exported_forward(module, export, checkpoint, device, dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Batching


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


def padded_batches(encodings, pad_token_id, batch_size):
    """Yields (sequence indices, input tensors) over all sequences of `encodings` (dict of lists of token lists),
    longest first, each batch padded to its own longest sequence."""
    lengths = np.array([len(ids) for ids in encodings["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
    for batch_start in range(0, len(order), batch_size):
        indices = order[batch_start : batch_start + batch_size]
        width = int(lengths[indices[0]])
        tensors = []
        for name in INPUT_NAMES:
            array = np.full((len(indices), width), pad_values[name], dtype=np.int64)
            for row, index in enumerate(indices):
                values = encodings[name][index] if name in encodings else ()
                array[row, : len(values)] = values
            tensors.append(torch.from_numpy(array))
        yield indices, tensors


def run_sorted_batches(forward, encodings, pad_token_id, batch_size, device, stats):
    """Runs `forward` over all sequences of `encodings` in padded_batches. Returns, per sequence in the original
    order, each output trimmed to the sequence's length (or a scalar score)."""
    lengths = [len(ids) for ids in encodings["input_ids"]]
    results = [None] * len(lengths)
    stats.sequences += len(lengths)
    stats.tokens += sum(lengths)
    with torch.inference_mode(), tqdm(total=len(lengths), desc=stats.name, unit="seq", leave=False) as progress:
        for indices, tensors in padded_batches(encodings, pad_token_id, batch_size):
            width = tensors[0].shape[1]
            stats.padded_tokens += sum(width - lengths[index] for index in indices)
            inputs = [tensor.to(device, non_blocking=True) for tensor in tensors]
            outputs = [output.float().cpu().numpy() for output in forward(*inputs)]
            for row, index in enumerate(indices):
                results[index] = tuple(
                    output[row, : lengths[index]] if output.ndim == 2 else output[row] for output in outputs
                )
            progress.update(len(indices))
    return results


# ---------------------------------------------------------------------------------------------------------------------
# The two stages


def pair_encodings(questions, context, tokenizer, args):
    """Every (question, candidate paragraph) pair as a sequence of its own, question by question."""
    features = prepare_multiple_choice_features(
        to_multiple_choice_examples(questions, context),
        tokenizer,
        max_seq_length=args.max_seq_length,
        max_question_length=args.max_question_length,
    )
    return {name: [pair for question in features[name] for pair in question] for name in features if name != "labels"}


def window_encodings(questions, context, tokenizer, args):
    """The examples (id, question, paragraph) and the windows of the paragraph each question has as "relevant"."""
    examples = to_squad_examples(questions, context)
    features = prepare_validation_features(
        examples,
        tokenizer,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_question_length=args.max_question_length,
    )
    return examples, features


def select_paragraphs(questions, context, tokenizer, forward, args, device, stats):
    """Stage 1: the index (into context) of the highest-scoring candidate paragraph of each question."""
    start = time.perf_counter()
    pairs = pair_encodings(questions, context, tokenizer, args)
    stats.seconds["tokenize"] = time.perf_counter() - start

    start = time.perf_counter()
    scores = run_sorted_batches(forward, pairs, tokenizer.pad_token_id, args.batch_size, device, stats)
    stats.seconds["model"] = time.perf_counter() - start

    chosen, pair_index = [], 0
    for question in questions:
        count = len(question["paragraphs"])
        best = int(np.argmax([score[0] for score in scores[pair_index : pair_index + count]]))
        chosen.append(question["paragraphs"][best])
        pair_index += count
    return chosen


def find_answers(questions, context, tokenizer, forward, args, device, stats):
    """Stage 2: {question id: answer text}, the best span over all windows of each question's "relevant" paragraph."""
    start = time.perf_counter()
    examples, features = window_encodings(questions, context, tokenizer, args)
    stats.seconds["tokenize"] = time.perf_counter() - start

    start = time.perf_counter()
    logits = run_sorted_batches(forward, features, tokenizer.pad_token_id, args.batch_size, device, stats)
    stats.seconds["model"] = time.perf_counter() - start

    start = time.perf_counter()
    answers = postprocess_qa_predictions(
        examples,
        features,
        ([start_logits for start_logits, _ in logits], [end_logits for _, end_logits in logits]),
        n_best_size=args.n_best_size,
        max_answer_length=args.max_answer_length,
    )
    stats.seconds["post-process"] = time.perf_counter() - start
    return answers


@dataclass
class Prediction:
    answers: dict  # question id -> answer text, in test order
    paragraphs: list  # the chosen paragraph (index into context) of each question
    stages: tuple  # StageStats of paragraph selection and span selection
    load_seconds: float  # reading both checkpoints from disk


def predict(args):
    """Runs the whole pipeline and writes the CSV."""
    output_file = prepare_output_path(args.output_file)
    context = load_context(args.context_file)
    questions = load_questions(args.test_file, context)
    device, dtype = choose_device(args.device)
    start = time.perf_counter()
    mc_tokenizer, mc_model = load_checkpoint(args.mc_model, AutoModelForMultipleChoice, "paragraph-selection")
    qa_tokenizer, qa_model = load_checkpoint(args.qa_model, AutoModelForQuestionAnswering, "span-selection")
    load_seconds = time.perf_counter() - start
    for tokenizer in (mc_tokenizer, qa_tokenizer):
        problem = check_window_fits(tokenizer, args.max_seq_length, args.max_question_length, args.doc_stride)
        if problem:
            raise InputError(problem)
    logger.info(
        f"{len(questions)} questions from {args.test_file}, {len(context)} paragraphs; device {device}, {dtype}"
    )

    stage1, stage2 = StageStats("paragraph selection"), StageStats("span selection")
    start = time.perf_counter()
    mc_forward = make_forward(mc_model, PairScorer, args.export, args.mc_model, device, dtype)
    stage1.seconds["load/export"] = time.perf_counter() - start
    chosen = select_paragraphs(questions, context, mc_tokenizer, mc_forward, args, device, stage1)

    start = time.perf_counter()
    qa_forward = make_forward(qa_model, SpanScorer, args.export, args.qa_model, device, dtype)
    stage2.seconds["load/export"] = time.perf_counter() - start
    with_chosen = [{**question, "relevant": paragraph} for question, paragraph in zip(questions, chosen)]
    answers = find_answers(with_chosen, context, qa_tokenizer, qa_forward, args, device, stage2)

    write_predictions_csv(output_file, [q["id"] for q in questions], answers)
    return Prediction(answers, chosen, (stage1, stage2), load_seconds)


def log_summary(stages, total_seconds, output_file):
    for stats in stages:
        times = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stats.seconds.items())
        logger.info(
            f"{stats.name}: {stats.sequences} sequences, {stats.tokens:,} tokens, "
            f"{100 * stats.padding_fraction:.1f}% padding; {times}"
        )
    logger.info(f"Wrote {output_file} in {total_seconds:.1f} s")


def main(argv=None):
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO, stream=sys.stderr)
    # Our own log says what was loaded; the library's weight-loading bars and notes would only bury it.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args = parse_arguments(argv)
    start = time.perf_counter()
    prediction = predict(args)
    log_summary(prediction.stages, time.perf_counter() - start, args.output_file)
    return prediction.answers


if __name__ == "__main__":
    run_main(main)
