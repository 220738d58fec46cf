"""Converts SQuAD-format reading comprehension data (DRCD, CMRC 2018, ...) to the ADL format, as extra training data.

    python convert_squad.py DRCD_training.json --output_dir data/drcd
    python convert_squad.py DRCD_training.json --output_dir data/hw-plus-drcd --merge_into data \
        --exclude data/valid.json data/test.json

Input: SQuAD v1-style JSON, {"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
"answer_start"}]}]}]}]}. Output: DIR/context.json and DIR/train.json, ready for run_swag.py and run_qa.py.

- Each question gets --num_candidates candidate paragraphs: its own one, at a random position (--seed), and hard
  negatives: the paragraphs of the inputs most similar to the question by character-bigram TF-IDF (scikit-learn),
  leaving out every paragraph that contains the answer text. Negatives come from the inputs only, not from the
  --merge_into context, so that the candidates of a question never differ by corpus (script, style), a cue that
  would give the answer away. Identical paragraphs are stored once.
- A question with several answers (the dev sets list one per annotator) keeps the first as its `answer`.
- An answer not at its `answer_start` is repaired when its text occurs exactly once in the paragraph (the check of
  adl_data.load_questions); otherwise the question is dropped. Unanswerable questions (no answer, as in SQuAD 2.0) and
  empty texts are dropped too. The report counts every repair and drop, per input file.
- Every context, id, question and (first) answer text is checked like every loader checks its texts
  (adl_data.check_characters: no NUL, no lone UTF-16 surrogate) before anything is written: one line names the file,
  data[a].paragraphs[p](.qas[q]), the field and the character.
- --merge_into DIR appends the converted data to a copy of DIR/context.json and DIR/train.json, written to
  --output_dir, which may not be DIR itself (no output of a run is ever one of its inputs): their paragraphs keep their
  indices, so DIR's valid.json and test.json stay valid with the new context.json, and a paragraph already there is
  not stored again.
- --exclude FILE ... drops the questions whose text, normalised as the QA metrics normalise answers (full-width =
  half-width, case, spaces and punctuation ignored: metrics.normalize_answer), is a question of an ADL file FILE,
  e.g. the homework's valid.json and test.json, so that no evaluation question is trained on.

context.json and train.json are checked before any work (neither may be an input of the run: a SQuAD file, a
--merge_into or --exclude file) and written together, or neither (outputs.py has the rules).
"""

import collections
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm.auto import tqdm

from adl_data import (
    check_characters,
    load_context,
    load_questions,
    locate_answer,
    read_json,
    required_field,
)
from cli import ArgumentParser, InputError, bounded_int, one_line, run_main
from metrics import normalize_answer
from outputs import OutputPlan, json_writer

NUM_CANDIDATES = 4
# A question's candidates are one multiple-choice example of N sequences: 1,000 of 512 tokens is already 512,000
# tokens per question, more than a GPU holds; the homework has 4.
MAX_CANDIDATES = 1000
# Questions scored against every paragraph at once: a (chunk, paragraphs) matrix of float64 (8 MB for 1,000 x 1,000).
SCORING_CHUNK = 1000

# What became of a question (the report's words).
AS_GIVEN = "answer at answer_start"
REPAIRED = "repaired"
EXCLUDED = "excluded (its question is in an --exclude file)"
NO_ANSWER = "dropped: no answer (unanswerable)"
EMPTY_TEXT = "dropped: empty question, answer or paragraph"
ANSWER_ABSENT = "dropped: answer text not in its paragraph"
ANSWER_AMBIGUOUS = "dropped: answer not at answer_start and found several times elsewhere in the paragraph"
TOO_FEW_NEGATIVES = "dropped: too few paragraphs without the answer text for the negatives"


@dataclass
class SquadQuestion:
    id: str
    question: str
    paragraph: int | None  # index into the corpus paragraphs; None for an empty paragraph
    answers: list
    source: str  # the input file, for the report


def parse_command_line(argv=None):
    parser = ArgumentParser(
        description="Convert SQuAD-format data (DRCD, CMRC 2018, ...) to ADL context.json + train.json.",
        epilog="Example: python convert_squad.py DRCD_training.json --output_dir data/hw-plus-drcd --merge_into data "
        "--exclude data/valid.json data/test.json",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT.json", help="SQuAD-format JSON files.")
    parser.add_argument(
        "--output_dir", required=True, type=Path, metavar="DIR", help="Where context.json and train.json are written."
    )
    parser.add_argument(
        "--num_candidates",
        type=bounded_int(1, MAX_CANDIDATES),
        default=NUM_CANDIDATES,
        metavar="N",
        help=f"Candidate paragraphs per question, the relevant one included, at most {MAX_CANDIDATES:,} "
        f"(default: {NUM_CANDIDATES}).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="Seed of the relevant paragraph's position (default: 0)."
    )
    parser.add_argument(
        "--merge_into",
        type=Path,
        metavar="DIR",
        help="An ADL folder whose context.json and train.json the converted data is appended to (they are read, "
        "not changed: --output_dir must be another folder).",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="ADL question files (e.g. valid.json test.json) whose questions must not be among the converted ones.",
    )
    return parser.parse_args(argv)


def read_squad_files(paths):
    """The paragraphs (each distinct text once) and the questions of SQuAD-format files, checking the fields that the
    conversion reads, and the characters of those it writes (adl_data.check_characters)."""
    paragraph_index, questions = {}, []  # paragraph text: its index in the corpus
    for path in paths:
        squad = read_json(path)
        if not isinstance(squad, dict):
            raise InputError(f'{path}: expected a SQuAD-format JSON object ({{"data": [...]}})')
        for a, article in enumerate(required_field(squad, "data", list, f"{path}")):
            where = f"{path}: data[{a}]"
            for p, paragraph in enumerate(required_field(_object(article, where), "paragraphs", list, where)):
                where = f"{path}: data[{a}].paragraphs[{p}]"
                context = required_field(_object(paragraph, where), "context", str, where)
                check_characters(context, f"{where}: field 'context'")
                corpus_index = paragraph_index.setdefault(context, len(paragraph_index)) if context.strip() else None
                for q, qa in enumerate(required_field(paragraph, "qas", list, where)):
                    questions.append(_read_squad_question(qa, f"{where}.qas[{q}]", corpus_index, str(path)))
    return list(paragraph_index), questions


def _read_squad_question(qa, where, corpus_index, source):
    question_id = required_field(_object(qa, where), "id", str, where)
    check_characters(question_id, f"{where}: field 'id'")
    where = f"{where} (id {question_id!r})"
    if not question_id.strip():
        raise InputError(f"{where}: field 'id': is empty")
    question = required_field(qa, "question", str, where)
    check_characters(question, f"{where}: field 'question'")
    answers = required_field(qa, "answers", list, where)
    if answers:
        # Only the first answer is used, so only it is checked.
        where = f"{where}: field 'answers'[0]"
        check_characters(required_field(_object(answers[0], where), "text", str, where), f"{where}: field 'text'")
        required_field(answers[0], "answer_start", int, where)
    return SquadQuestion(question_id, question, corpus_index, answers, source)


def _object(value, where):
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def read_question_texts(path):
    """The normalised question texts of an ADL question file (train/valid/test.json), for --exclude."""
    records = read_json(path)
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of questions (an ADL file such as valid.json)")
    texts = set()
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        texts.add(normalize_answer(required_field(_object(record, where), "question", str, where)))
    # A question of punctuation only normalises to "": it must not exclude every other such question.
    return texts - {""}


def check_unique_ids(questions, base_questions, base_file):
    """Every question id once, among the converted questions and the --merge_into train.json (`base_file`)."""
    first_source = {question["id"]: str(base_file) for question in base_questions}
    for question in questions:
        if question.id in first_source:
            raise InputError(
                f"{question.source}: question id {question.id!r}: also in {first_source[question.id]} "
                "(ids must be unique; was this file converted already?)"
            )
        first_source[question.id] = question.source


def checked_answer(question, paragraphs, excluded_questions):
    """The question's answer {"text", "start"} (None when it is not converted), and the outcome for the report:
    AS_GIVEN, REPAIRED (the text occurs once, elsewhere than answer_start), EXCLUDED or why it is dropped."""
    if normalize_answer(question.question) in excluded_questions:
        return None, EXCLUDED
    if not question.answers:
        return None, NO_ANSWER
    text, start = question.answers[0]["text"], question.answers[0]["answer_start"]
    if question.paragraph is None or not question.question.strip() or not text.strip():
        return None, EMPTY_TEXT
    located, occurrences = locate_answer(paragraphs[question.paragraph], text, start)
    if located is None:
        return None, ANSWER_AMBIGUOUS if occurrences else ANSWER_ABSENT
    return {"text": text, "start": located}, AS_GIVEN if located == start else REPAIRED


def fit_bigram_tfidf(paragraphs):
    """Character-bigram TF-IDF vectors of the paragraphs (rows of unit length), and the vectorizer for questions."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 2))
    return vectorizer, vectorizer.fit_transform(paragraphs)


def question_scores(vectorizer, paragraph_vectors, questions):
    """Cosine similarity of each question to each paragraph, chunk by chunk: yields (question, scores) pairs."""
    for begin in range(0, len(questions), SCORING_CHUNK):
        chunk = questions[begin : begin + SCORING_CHUNK]
        scores = (vectorizer.transform(chunk) @ paragraph_vectors.T).toarray()
        yield from zip(range(begin, begin + len(chunk)), scores)


def hard_negatives(paragraphs, questions, answers, count):
    """For each question (SquadQuestion) and its answer: the `count` paragraphs most similar to the question that do
    not contain the answer text, most similar first (ties in paragraph order), or None when fewer than `count` exist.
    An InputError, naming the questions' files, when the paragraphs cannot be ranked (TF-IDF finds no bigram)."""
    if count == 0 or not questions:
        return [[] for _ in questions]  # nothing to rank
    try:
        vectorizer, paragraph_vectors = fit_bigram_tfidf(paragraphs)
    except ValueError as error:  # scikit-learn's "empty vocabulary": every paragraph is a single character
        sources = ", ".join(dict.fromkeys(question.source for question in questions))
        raise InputError(
            f"{sources}: cannot find hard negatives: no paragraph of the inputs has two characters in a row, so "
            f"character-bigram TF-IDF cannot compare the {len(paragraphs)} paragraphs with the questions "
            f"(scikit-learn: {one_line(error, 80)}); use --num_candidates 1 (no negatives) or longer paragraphs"
        ) from None
    texts = [question.question for question in questions]
    negatives = []
    scored = question_scores(vectorizer, paragraph_vectors, texts)
    for index, scores in tqdm(scored, total=len(texts), desc="hard negatives", unit="question"):
        answer_text = answers[index]["text"]
        chosen = []
        for candidate in np.argsort(-scores, kind="stable"):
            if len(chosen) == count:
                break
            if answer_text not in paragraphs[candidate]:
                chosen.append(int(candidate))
        negatives.append(chosen if len(chosen) == count else None)
    return negatives


def tfidf_best_candidate_accuracy(context: list[str], questions: list[dict]) -> float:
    """How often the candidate most similar to its question by character-bigram TF-IDF is the relevant one.

    A measure of how hard the negatives are: 1/len(candidates) when TF-IDF cannot tell them apart, 1.0 when it always
    can. Vectors are fitted on the whole context.

    Args:
        context: the paragraphs.
        questions: labelled questions (with "paragraphs" and "relevant"), at least one.

    Returns:
        The share of questions, in [0, 1].
    """
    vectorizer, paragraph_vectors = fit_bigram_tfidf(context)
    texts = [question["question"] for question in questions]
    right = 0
    for index, scores in question_scores(vectorizer, paragraph_vectors, texts):
        candidates = questions[index]["paragraphs"]
        right += candidates[int(np.argmax(scores[candidates]))] == questions[index]["relevant"]
    return right / len(questions)


def merge_paragraphs(base_context, paragraphs):
    """`base_context` with the new paragraphs appended (those already in it are not added again), and the index of
    each new paragraph in the result. Base paragraphs keep their indices."""
    context = list(base_context)
    index_of = {}
    for index, paragraph in enumerate(context):
        index_of.setdefault(paragraph, index)
    for paragraph in paragraphs:
        if paragraph not in index_of:
            index_of[paragraph] = len(context)
            context.append(paragraph)
    return context, [index_of[paragraph] for paragraph in paragraphs]


def convert(
    questions,
    paragraphs,
    num_candidates,
    seed,
    excluded_questions=frozenset(),
    base_context=(),
    base_questions=(),
    base_file=None,
):
    """The ADL context and train records: `base_*` (read from --merge_into, train.json being `base_file`) followed by
    the converted questions; and the report, a Counter of outcomes ("read", "kept", REPAIRED, EXCLUDED, the drop
    reasons) per input file."""
    report = collections.defaultdict(collections.Counter)
    kept, answers = [], []
    for question in questions:
        answer, outcome = checked_answer(question, paragraphs, excluded_questions)
        report[question.source]["read"] += 1
        report[question.source][outcome] += 1
        if answer is not None:
            kept.append(question)
            answers.append(answer)
    # Only the questions that will be written: an excluded one may well be in the --merge_into train.json.
    check_unique_ids(kept, base_questions, base_file)

    context, index_in_context = merge_paragraphs(base_context, paragraphs)
    records = list(base_questions)
    rng = random.Random(seed)
    for question, answer, negatives in zip(
        kept, answers, hard_negatives(paragraphs, kept, answers, num_candidates - 1)
    ):
        if negatives is None:
            report[question.source][TOO_FEW_NEGATIVES] += 1
            continue
        report[question.source]["kept"] += 1
        candidates = [index_in_context[paragraph] for paragraph in negatives]
        relevant = index_in_context[question.paragraph]
        candidates.insert(rng.randrange(num_candidates), relevant)
        records.append(
            {
                "id": question.id,
                "question": question.question,
                "paragraphs": candidates,
                "relevant": relevant,
                "answer": answer,
            }
        )
    return context, records, report


def why_none_converted(report, num_candidates, paragraph_count):
    """Why no question was converted, from the report: each reason a question was dropped or excluded, with counts."""
    totals = sum(report.values(), collections.Counter())
    if not totals["read"]:
        return "the inputs hold no question"
    reasons = []
    for outcome, count in totals.items():
        if outcome.startswith("dropped"):
            reasons.append(f"{count} {outcome}")
        if outcome == TOO_FEW_NEGATIVES:
            reasons[-1] += (
                f" (--num_candidates {num_candidates} needs {num_candidates - 1} besides each question's own; the "
                f"inputs have {paragraph_count} paragraphs in all)"
            )
    if totals[EXCLUDED]:
        reasons.append(f"{totals[EXCLUDED]} {EXCLUDED}")
    return f"of {totals['read']} questions read, {'; '.join(reasons)}"


def report_lines(report):
    """One line per input file: questions read, kept (of which repaired), dropped and excluded, with the reasons."""
    lines = []
    for source, counts in report.items():
        dropped = sum(n for outcome, n in counts.items() if outcome.startswith("dropped"))
        line = (
            f"{source}: {counts['read']} questions read, {counts['kept']} kept ({counts[REPAIRED]} with a repaired "
            f"answer_start), {dropped} dropped, {counts[EXCLUDED]} excluded"
        )
        reasons = [
            f"{n} {outcome.removeprefix('dropped: ')}" for outcome, n in counts.items() if outcome.startswith("dropped")
        ]
        lines.append(line + (f" ({'; '.join(reasons)})" if reasons else ""))
    return lines


def _same_folder(first, second):
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist (yet)
        return os.path.realpath(first) == os.path.realpath(second)


def main(argv: list[str] | None = None) -> dict[str, collections.Counter]:
    """Converts the SQuAD files the command line names and writes context.json and train.json (the top of this
    module), printing one report line per input file.

    Args:
        argv: the command line without the program name; None reads sys.argv.

    Returns:
        The report: {input file: Counter of outcomes} (convert).
    """
    args = parse_command_line(argv)
    inputs = [*args.inputs, *args.exclude]
    base_context_file = base_file = None
    if args.merge_into is not None:
        base_context_file, base_file = args.merge_into / "context.json", args.merge_into / "train.json"
        inputs += [base_context_file, base_file]
        if _same_folder(args.output_dir, args.merge_into):
            raise InputError(
                f"--output_dir {args.output_dir}: is the --merge_into folder, whose context.json and train.json this "
                "run reads; no output may be an input: write the merged files to another folder"
            )
    # Checked before any work: an unwritable --output_dir, or an output that is an input, fails in seconds.
    plan = OutputPlan(inputs=inputs)
    context_path = plan.add(args.output_dir / "context.json")
    train_path = plan.add(args.output_dir / "train.json")

    base_context, base_questions = [], []
    if args.merge_into is not None:
        base_context = load_context(base_context_file)
        base_questions = load_questions(base_file, base_context, need_answer=True)
    excluded_questions = set()
    for path in args.exclude:
        excluded_questions |= read_question_texts(path)

    paragraphs, questions = read_squad_files(args.inputs)
    context, records, report = convert(
        questions,
        paragraphs,
        args.num_candidates,
        args.seed,
        excluded_questions,
        base_context,
        base_questions,
        base_file,
    )
    for line in report_lines(report):
        print(line)
    if len(records) == len(base_questions):
        why = why_none_converted(report, args.num_candidates, len(paragraphs))
        raise InputError(f"{', '.join(map(str, args.inputs))}: no question could be converted: {why}")

    plan.write({context_path: json_writer(context), train_path: json_writer(records)})
    added = len(context) - len(base_context)
    print(
        f"Wrote {context_path} ({len(context)} paragraphs, {added} new) and {train_path} ({len(records)} questions, "
        f"{len(records) - len(base_questions)} new)"
    )
    return report


if __name__ == "__main__":
    run_main(main)
