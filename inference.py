"""Two-stage inference: pick each test question's paragraph, find the answer in it, and write pred.csv.

    python inference.py --context_file context.json --test_file test.json --output_file pred.csv \
        [--mc_model DIR [DIR ...]] [--qa_model DIR [DIR ...]] [--top_k_paragraphs K] [--analysis_dir DIR] \
        [--export {none,torchscript,torch_export}] [--batch_size 32] [--device {auto,cpu,cuda}]

    python inference.py --end_to_end --qa_model DIR [DIR ...] --context_file ... --test_file ... --output_file ...

Both stages reuse the training preprocessing and post-processing (tokens.py, features.py, spans.py); decoding.py
chooses the answer from the models' scores (joint paragraph x span decoding with --top_k_paragraphs, ensembles with
several directories after --mc_model / --qa_model). members.py loads each checkpoint, which runs with the window
settings it was trained with (checkpoints.window_settings) unless a flag says otherwise; with no model named on the
command line (as run.sh runs it), models/inference.json may say what to run (submission.py). When the questions
carry labels ("relevant" and "answer", as valid.json does), the answer metrics (what the leaderboard measures) are
logged and written to <output_file>.metrics.json, and --analysis_dir gets an error analysis (analysis.py).

With --end_to_end (the default for span models trained with run_qa.py --context_mode candidates) there is no
paragraph selection: the span-selection model reads each question with all its candidate paragraphs joined in file
order (adl_data.join_candidates, as in training), and each answer is mapped back to its paragraph and offsets in it,
so the CSV, the metrics and the analysis are the same.

Every distinct paragraph is tokenized once per tokenizer and each (question, paragraph) sequence is assembled from the
pieces. Sequences go through the model a chunk at a time (batching.py), so memory stays bounded however many
questions and windows there are; within a chunk they are sorted by length and each batch is padded to its own
longest. A multiple-choice model scores each pair on its own (the softmax over candidates does not change which one
is highest), so paragraph selection needs no candidate padding either. On a GPU, a background thread prepares the
next batches and another post-processes the finished ones while the device computes. Scores that are not finite
numbers are refused, with the checkpoint and the number of sequences named.

Every output is checked before any model loads and all are written together at the end (outputs.py): a failed run
leaves none, and no output lands on a data file, inside a model folder or on another output.
"""

import argparse
import collections
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

import analysis
from adl_data import load_context, load_questions
from batching import SEQUENCES_PER_CHUNK, StageStats, run_model
from checkpoints import PARAGRAPH_SELECTION, SPAN_SELECTION, checkpoint_config, trained_settings
from cli import (
    ArgumentParser,
    InputError,
    bounded_int,
    non_negative_int,
    positive_int,
    run_main,
)
from decoding import (
    SpanCandidates,
    decode,
    merge_span_candidates,
    paragraph_log_probs,
    spans_of_each_paragraph,
    top_paragraphs,
)
from features import DOC_STRIDE, MAX_QUESTION_LENGTH, MAX_SEQ_LENGTH, question_windows
from members import Member, check_finite, choose_device, load_members
from outputs import OutputPlan, csv_writer, json_writer
from spans import (
    MAX_ANSWER_LENGTH,
    MAX_N_BEST_SIZE,
    N_BEST_SIZE,
    best_spans_of_windows,
    character_offsets,
    character_spans,
    merge_character_spans,
)
from submission import read_settings
from tokens import CandidateTokens, ParagraphTokens, question_token_ids

logger = logging.getLogger("inference")

ROOT = Path(__file__).resolve().parent
MODELS = ROOT / "models"
DEFAULT_MC_MODEL = MODELS / "paragraph-selection"
DEFAULT_QA_MODEL = MODELS / "span-selection"
# Chosen by measurement (docs/inference.md, "Joint decoding"): the paragraphs whose spans compete for the answer.
TOP_K_PARAGRAPHS = 1


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the defaults of models/inference.json (submission.py) when it names no model.

    Args:
        argv: the command line without the program name; None reads sys.argv.

    Returns:
        The arguments: `qa_model` is always a list of folders; `mc_model`, `top_k_paragraphs` and `end_to_end` are
        None when neither the command line nor models/inference.json (read when no model is named) gives them.
    """
    parser = ArgumentParser(description="Two-stage Chinese QA inference: writes id,answer rows to a CSV.")
    parser.add_argument("--context_file", required=True, help="context.json: the list of all paragraphs.")
    parser.add_argument("--test_file", required=True, help="test.json: the questions with their candidate paragraphs.")
    parser.add_argument("--output_file", required=True, help="Where to write the CSV (parent folders are created).")
    parser.add_argument(
        "--mc_model",
        nargs="+",
        metavar="DIR",
        help="Paragraph-selection checkpoint directory; several make an ensemble (their probabilities averaged). "
        f"Default: {DEFAULT_MC_MODEL}, or what models/inference.json names.",
    )
    parser.add_argument(
        "--qa_model",
        nargs="+",
        metavar="DIR",
        help="Span-selection checkpoint directory; several make an ensemble (merged per character span). "
        f"Default: {DEFAULT_QA_MODEL}, or what models/inference.json names.",
    )
    parser.add_argument(
        "--top_k_paragraphs",
        type=positive_int,
        metavar="K",
        help="Search the answer in each question's K most probable paragraphs, scoring log P(paragraph) + "
        f"log P(span | paragraph); 1 is the plain two-stage pipeline (default: {TOP_K_PARAGRAPHS}).",
    )
    parser.add_argument(
        "--end_to_end",
        action=argparse.BooleanOptionalAction,
        help="No paragraph selection: --qa_model reads each question with all its candidate paragraphs joined "
        "(a model trained with run_qa.py --context_mode candidates; docs/end-to-end.md). Default: as the span "
        "models were trained; --no-end_to_end runs the two stages whatever they were trained on.",
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
        "--batch_size",
        type=bounded_int(1, SEQUENCES_PER_CHUNK),
        default=32,
        help=f"Sequences (pairs or windows) per forward pass (at most {SEQUENCES_PER_CHUNK}).",
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: the GPU if there is one."
    )
    parser.add_argument(
        "--overlap",
        choices=["auto", "on", "off"],
        default="auto",
        help="Prepare the next batches and post-process the finished ones in background threads while the model "
        "runs (auto: on a GPU, where it hides the CPU work; on a CPU the threads only compete for the same cores).",
    )
    window_help = "Default: what each checkpoint was trained with ({}, for one saved without its settings)."
    parser.add_argument(
        "--max_seq_length", type=positive_int, help="Tokens per sequence. " + window_help.format(MAX_SEQ_LENGTH)
    )
    parser.add_argument(
        "--doc_stride",
        type=non_negative_int,
        help="Tokens shared by consecutive windows. " + window_help.format(DOC_STRIDE),
    )
    parser.add_argument(
        "--max_question_length",
        type=positive_int,
        help="Longer questions are cut. " + window_help.format(MAX_QUESTION_LENGTH),
    )
    parser.add_argument(
        "--n_best_size",
        type=bounded_int(1, MAX_N_BEST_SIZE),
        default=N_BEST_SIZE,
        help=f"Candidate spans kept per paragraph and model (at most {MAX_N_BEST_SIZE}).",
    )
    parser.add_argument(
        "--max_answer_length",
        type=positive_int,
        default=MAX_ANSWER_LENGTH,
        help="Longest answer, in tokens (a window's paragraph part is the most there can be).",
    )
    args = parser.parse_args(argv)
    if args.mc_model is None and args.qa_model is None:
        apply_submission_settings(args, read_settings(MODELS))
    if args.end_to_end and args.mc_model:
        parser.error("--end_to_end reads every candidate with the --qa_model alone: drop --mc_model")
    if args.end_to_end and args.top_k_paragraphs not in (None, 1):
        parser.error("--end_to_end reads every candidate: --top_k_paragraphs is for the two stages")
    if args.qa_model is None:
        args.qa_model = [str(DEFAULT_QA_MODEL)]
    return args


def apply_submission_settings(args, settings):
    """Fills what the command line left out from models/inference.json (submission.read_settings)."""
    if settings is None:
        return
    for key in ("mc_model", "qa_model"):
        if key in settings:
            setattr(args, key, [str(MODELS / folder) for folder in settings[key]])
    for key in ("top_k_paragraphs", "end_to_end"):
        if key in settings and getattr(args, key) is None:
            setattr(args, key, settings[key])
    logger.info(f"Running what {MODELS / 'inference.json'} says: {settings}")


def run_end_to_end(args, span_configs) -> bool:
    """Whether to read each question with its candidates joined (--end_to_end): as the flag says, else as the span
    models were trained (run_qa.py --context_mode), unless --mc_model asks for paragraph selection."""
    modes = {path: trained_settings(config).get("context_mode", "relevant") for path, config in span_configs.items()}
    if args.end_to_end is None:
        if len(set(modes.values())) > 1:
            described = ", ".join(f"{path} {mode}" for path, mode in modes.items())
            raise InputError(
                f"the span-selection models were trained on different contexts ({described}): pass --end_to_end or "
                "--no-end_to_end"
            )
        end_to_end = set(modes.values()) == {"candidates"} and args.mc_model is None
        if end_to_end:
            logger.info("The span-selection models were trained on joined candidates: running end to end")
        return end_to_end
    wanted = "candidates" if args.end_to_end else "relevant"
    for path, mode in modes.items():
        if mode != wanted and trained_settings(span_configs[path]):
            logger.warning(
                f"{path} was trained with --context_mode {mode} but runs with {wanted} "
                f"({'--end_to_end' if args.end_to_end else 'paragraph selection'})"
            )
    return args.end_to_end


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
            [question for question, _ in group], member.tokenizer, member.settings.max_question_length
        )
        tokens = paragraph_tokens.of(member.tokenizer, [p for _, paragraphs in group for p in paragraphs])
        stats.add_time("tokenize", time.perf_counter() - start)
        for offset, ids in enumerate(question_ids):
            yield group_start + offset, ids, tokens


def score_paragraphs(questions, paragraph_tokens, member, args, device, stats, overlap):
    """Paragraph selection with one model: the score of each candidate paragraph of each question (a list of
    arrays)."""

    def pairs():
        # Tokenized a group of questions at a time, in the thread that prepares the batches (with --overlap).
        entries = [(q["question"], q["paragraphs"]) for q in questions]
        for q, question_ids, tokens in tokenized_groups(entries, paragraph_tokens, member, args, stats):
            room = member.template.room(question_ids, member.settings.max_seq_length)
            for c, paragraph in enumerate(questions[q]["paragraphs"]):
                input_ids, token_type_ids, _ = member.template.assemble(question_ids, tokens[paragraph].ids[:room])
                yield (q, c), input_ids, token_type_ids

    scores = [np.zeros(len(q["paragraphs"])) for q in questions]
    not_finite = [0]

    def consume(keys, outputs):
        for (q, c), (score,) in zip(keys, outputs):
            scores[q][c] = score
            not_finite[0] += not np.isfinite(score)

    run_model(pairs(), member.forward, member.tokenizer.pad_token_id, args, device, stats, consume, overlap)
    check_finite(member, PARAGRAPH_SELECTION, not_finite[0], sum(len(q["paragraphs"]) for q in questions))
    return scores


def find_spans(
    questions: list[dict],
    requests: list[tuple[int, int]],
    paragraph_tokens: ParagraphTokens,
    member: Member,
    args: argparse.Namespace,
    device: torch.device,
    stats: StageStats,
    overlap: bool,
) -> list[SpanCandidates]:
    """Span selection with one model: the SpanCandidates of each (question position, paragraph index) request: the
    n_best_size best character spans of the paragraph with log P(span | question, paragraph). Scores that are not
    finite are an InputError (check_finite).

    Args:
        questions: the questions (adl_data.load_questions).
        requests: (position in `questions`, index of the text in `paragraph_tokens`) pairs.
        paragraph_tokens: the texts' tokens (CandidateTokens for joined candidates).
        member: the span-selection model.
        args: parse_arguments' arguments (--batch_size, --n_best_size, --max_answer_length).
        device: where the model runs.
        stats: the stage's StageStats, which get the counts and times.
        overlap: whether to prepare and post-process batches in background threads (batching.run_model).

    Returns:
        One SpanCandidates per request, in order (empty when the paragraph has no valid span).
    """
    settings = member.settings
    windows = {}  # the Window of each sequence in flight: its characters are needed after the forward pass

    def sequences():
        entries = [(questions[q]["question"], [p]) for q, p in requests]
        for r, question_ids, tokens in tokenized_groups(entries, paragraph_tokens, member, args, stats):
            paragraph = tokens[requests[r][1]]
            for w, window in enumerate(
                question_windows(question_ids, paragraph, member.template, settings.max_seq_length, settings.doc_stride)
            ):
                windows[(r, w)] = window
                yield (r, w), window.input_ids, window.token_type_ids

    # Per request, its best spans so far (merged after each chunk, so memory does not grow with the windows) and
    # the log-sum-exp of the scores of all its valid spans.
    best_of_request = [None] * len(requests)
    log_partition = np.full(len(requests), -np.inf)
    windows_run, not_finite = [0], [0]

    def consume(keys, outputs):
        char_starts, char_ends = [], []
        for key in keys:
            starts, ends = character_offsets(windows.pop(key))
            char_starts.append(starts)
            char_ends.append(ends)
        windows_run[0] += len(keys)
        not_finite[0] += sum(not (np.isfinite(starts).all() and np.isfinite(ends).all()) for starts, ends in outputs)
        if not_finite[0]:
            return  # refused after the stage (check_finite), counting every window
        best = best_spans_of_windows(
            [start_logits for start_logits, _ in outputs],
            [end_logits for _, end_logits in outputs],
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

    run_model(sequences(), member.forward, member.tokenizer.pad_token_id, args, device, stats, consume, overlap)
    check_finite(member, SPAN_SELECTION, not_finite[0], windows_run[0])

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
    """What inference.py predicted for a question file: each question's answer and n-best, the paragraphs chosen and
    answered from, the stages' counts and times, and the answer metrics of labelled questions."""

    answers: dict  # question id -> answer text, in test order
    answer_paragraphs: list  # the paragraph (index into context) each answer comes from, None when there is no answer
    selected_paragraphs: list  # the most probable paragraph of each question under paragraph selection alone
    nbest: list  # the decoding.Answer list of each question, best first
    stages: tuple  # StageStats of paragraph selection and span selection
    load_seconds: float  # reading the checkpoints from disk (and exporting them)
    metrics: dict | None  # the answer metrics, when the questions carry labels


def plan_outputs(args, labelled, model_paths):
    """Every file the run will write, checked before any model loads (outputs.OutputPlan): the CSV; for labelled
    questions the metrics beside it (unless the CSV goes to a pipe or device) and the analysis. None may be an input:
    the data files, or anything inside the model folders."""
    plan = OutputPlan(inputs=[args.context_file, args.test_file], input_folders=model_paths)
    paths = {"csv": plan.add(args.output_file)}
    if labelled and (paths["csv"].is_file() or not paths["csv"].exists()):
        paths["metrics"] = plan.add(f"{args.output_file}.metrics.json")
    if args.analysis_dir:
        for name in analysis.FILES:
            paths[name] = plan.add(Path(args.analysis_dir) / name)
    return plan, paths


def predict(args: argparse.Namespace) -> Prediction:
    """Runs the whole pipeline and writes the CSV (and the metrics and analysis of labelled questions), all of them
    together at the end.

    Args:
        args: parse_arguments' arguments.

    Returns:
        The prediction, with its metrics when the questions are labelled.
    """
    context = load_context(args.context_file)
    questions = load_questions(args.test_file, context, labels_if_present=True)
    labelled = "answer" in questions[0]
    if args.analysis_dir and not labelled:
        raise InputError(f"{args.test_file}: --analysis_dir needs labelled questions (with 'relevant' and 'answer')")
    span_configs = {path: checkpoint_config(path, SPAN_SELECTION) for path in args.qa_model}
    end_to_end = run_end_to_end(args, span_configs)
    paragraph_paths = [] if end_to_end else (args.mc_model or [str(DEFAULT_MC_MODEL)])
    if end_to_end and args.top_k_paragraphs not in (None, 1):
        raise InputError("the span-selection models run end to end: --top_k_paragraphs is for the two stages")
    top_k = args.top_k_paragraphs or TOP_K_PARAGRAPHS
    plan, paths = plan_outputs(args, labelled, paragraph_paths + args.qa_model)
    device, dtype = choose_device(args.device)
    overlap = args.overlap == "on" or (args.overlap == "auto" and device.type == "cuda")

    start = time.perf_counter()
    paragraph_members = load_members(paragraph_paths, PARAGRAPH_SELECTION, args, device, dtype)
    span_members = load_members(args.qa_model, SPAN_SELECTION, args, device, dtype)
    load_seconds = time.perf_counter() - start
    logger.info(
        f"{len(questions)} questions from {args.test_file}{' (labelled)' if labelled else ''}, {len(context)} "
        f"paragraphs; device {device}, {dtype}; {len(paragraph_members)} + {len(span_members)} models; "
        + ("all candidates joined (end to end)" if end_to_end else f"top {top_k} paragraph(s) decoded")
    )
    if end_to_end:
        nbest, stages = answers_end_to_end(questions, context, span_members, args, device, overlap)
        # No paragraph selection: the paragraph the model chooses is that of its answer.
        selected = [best[0].paragraph if best else q["paragraphs"][0] for q, best in zip(questions, nbest)]
    else:
        nbest, selected, stages = answers_in_two_stages(
            questions, context, paragraph_members, span_members, args, top_k, device, overlap
        )

    answers = {q["id"]: (best[0].text if best else "") for q, best in zip(questions, nbest)}
    prediction = Prediction(
        answers=answers,
        answer_paragraphs=[best[0].paragraph if best else None for best in nbest],
        selected_paragraphs=selected,
        nbest=nbest,
        stages=stages,
        load_seconds=load_seconds,
        metrics=None,
    )
    writers = {paths["csv"]: csv_writer([q["id"] for q in questions], answers)}
    if labelled:
        prediction.metrics = analysis.answer_metrics(questions, prediction)
        if "metrics" in paths:
            writers[paths["metrics"]] = json_writer(prediction.metrics)
        if args.analysis_dir:
            for name, writer in analysis.analysis_writers(questions, context, prediction).items():
                writers[paths[name]] = writer
    plan.write(writers)
    return prediction


def answers_in_two_stages(questions, context, paragraph_members, span_members, args, top_k, device, overlap):
    """Paragraph selection, then span selection in the `top_k` most probable paragraphs: the n-best answers of each
    question (decoding.decode), the paragraph each question's paragraph selection chose, and the StageStats."""
    paragraph_tokens = ParagraphTokens(context)
    paragraph_stats, span_stats = StageStats("paragraph selection"), StageStats("span selection")
    start = time.perf_counter()
    scores = [
        score_paragraphs(questions, paragraph_tokens, m, args, device, paragraph_stats, overlap)
        for m in paragraph_members
    ]
    log_probs = [paragraph_log_probs([member_scores[q] for member_scores in scores]) for q in range(len(questions))]
    decoded = [top_paragraphs(log_prob, top_k) for log_prob in log_probs]
    paragraph_stats.add_time("total", time.perf_counter() - start)

    start = time.perf_counter()
    requests = [(q, questions[q]["paragraphs"][c]) for q in range(len(questions)) for c in decoded[q]]
    spans = [
        find_spans(questions, requests, paragraph_tokens, m, args, device, span_stats, overlap) for m in span_members
    ]
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
    span_stats.add_time("total", time.perf_counter() - start)
    return nbest, [q["paragraphs"][d[0]] for q, d in zip(questions, decoded)], (paragraph_stats, span_stats)


def answers_end_to_end(questions, context, span_members, args, device, overlap):
    """Span selection over each question's candidates joined into one text (text len(context) + q of
    CandidateTokens): the n-best answers of each question, each mapped back to its paragraph, and the StageStats.

    An answer's score is log P(span | question, all candidates): every paragraph gets log P(p | q) = 0 in decode."""
    paragraph_tokens = CandidateTokens(context, questions)
    stats = StageStats("end-to-end span selection")
    start = time.perf_counter()
    requests = [(q, len(context) + q) for q in range(len(questions))]
    spans = [find_spans(questions, requests, paragraph_tokens, m, args, device, stats, overlap) for m in span_members]
    nbest = []
    for q, joined in enumerate(paragraph_tokens.joined):
        merged = merge_span_candidates([member_spans[q] for member_spans in spans], args.n_best_size)
        paragraphs, candidates = spans_of_each_paragraph(merged, joined)
        nbest.append(decode(paragraphs, [0.0] * len(paragraphs), candidates, context, args.n_best_size))
    stats.add_time("total", time.perf_counter() - start)
    return nbest, (stats,)


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


def main(argv: list[str] | None = None) -> dict[str, str]:
    """Runs inference.py: predict, then a summary in the log (stages, metrics, time).

    Args:
        argv: the command line without the program name; None reads sys.argv.

    Returns:
        {question id: answer text}, in the order of the questions.
    """
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
