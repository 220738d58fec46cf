"""Reading and validating the data files (ADL HW1 questions and paragraphs, intent and slot utterances), and the
examples the training scripts make of them (multiple-choice columns, SQuAD-style columns, joined candidates).

Every script reads its inputs through this module, so a malformed file gets the same one-line message (file, record,
field) whichever script meets it first. The formats (see README.md):

- context.json: a JSON list of paragraph strings, referred to by index.
- train.json / valid.json: a list of {"id", "question", "paragraphs": [int, ...], "relevant": int,
  "answer": {"text", "start"}}; `start` is a character offset into context[relevant].
- test.json: the same without "relevant" and "answer".

and for the intent classification / slot tagging task (run_intent.py, run_slot.py; see docs/intent-slot.md):

- intent files: a list of {"text", "intent", "id"}; test files without "intent".
- slot files: a list of {"tokens": [str, ...], "tags": [str, ...], "id"}, one BIO tag per token (O, B-TYPE, I-TYPE);
  test files without "tags".
"""

import json
import logging
import os
import random
import re
import stat
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import InputError, short_number

logger = logging.getLogger(__name__)

# The largest data file read (the real context.json is about 10 MB): a device such as /dev/zero, or a mistaken path to
# a huge file, is refused instead of exhausting memory.
MAX_INPUT_BYTES = 2**30


def read_input_bytes(path) -> bytes:
    """The bytes of an input file: a regular file, or a named pipe (FIFO, e.g. bash's `<(...)`, read once), of at most
    MAX_INPUT_BYTES; every other case (missing, a folder, a device such as /dev/zero) is an InputError.

    Args:
        path: the file the user named.

    Returns:
        Its contents.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: is a directory, expected a JSON file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise InputError(f"{path}: not a regular file (a device or a socket), expected a JSON file")
        with open(path, "rb") as file:
            raw = file.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"{path}: more than {MAX_INPUT_BYTES:,} bytes, the most an input file may have")
    return raw


def read_json(path: str | Path) -> Any:
    """Parses a UTF-8 JSON file (read_input_bytes), turning every way it can be unreadable into an InputError.

    Args:
        path: the file the user named.

    Returns:
        The parsed value.
    """
    path = Path(path)
    raw = read_input_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 (invalid byte 0x{raw[error.start]:02x} at byte {error.start})") from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise InputError(f"{path}: not valid input (JSON nested too deeply)") from None
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise InputError(f"{path}: not valid input ({error})") from None


def load_context(path: str | Path) -> list[str]:
    """The paragraphs of context.json, checked: a non-empty list of strings, none of them blank (check_characters).

    Args:
        path: context.json.

    Returns:
        The paragraphs, in file order (the records refer to them by index).
    """
    paragraphs = read_json(path)
    if not isinstance(paragraphs, list):
        raise InputError(f"{path}: expected a JSON list of paragraph strings, found {_json_type(paragraphs)}")
    if not paragraphs:
        raise InputError(f"{path}: contains no paragraphs")
    for index, paragraph in enumerate(paragraphs):
        if not isinstance(paragraph, str):
            raise InputError(f"{path}: paragraph {index}: expected a string, found {_json_type(paragraph)}")
        if not paragraph.strip():
            raise InputError(f"{path}: paragraph {index}: is empty")
        check_characters(paragraph, f"{path}: paragraph {index}")
    return paragraphs


_UNWRITABLE = re.compile("[\ud800-\udfff\x00]")


def check_characters(text: str, where: str) -> None:
    """Refuses the characters no writer or reader of the outputs handles: lone UTF-16 surrogates (JSON escapes such
    as \\ud800 that are not a pair; they cannot be written as UTF-8) and NUL (U+0000).

    Args:
        text: a text read from an input file.
        where: the file, record and field, for the message.
    """
    found = _UNWRITABLE.search(text)
    if found:
        raise InputError(f"{where}: character {found.start()} is {ascii(found.group())}, which no text can hold")


def load_questions(
    path: str | Path,
    context: list[str],
    need_relevant: bool = False,
    need_answer: bool = False,
    labels_if_present: bool = False,
) -> list[dict]:
    """The validated question records of a train/valid/test file.

    Fields a use does not need are not read, so a valid.json works as a test file. An answer whose `start` is off is
    repaired, with a warning, when its text occurs exactly once in the paragraph; otherwise it is an error.

    Args:
        path: the question file.
        context: the paragraphs (load_context) that the records' indices refer to.
        need_relevant: require the "relevant" field (paragraph selection labels, or span selection on the gold
            paragraph).
        need_answer: require "relevant" and "answer".
        labels_if_present: read and check "relevant" and "answer" when every record has both (a labelled file, for
            end-to-end evaluation), and ignore them otherwise.

    Returns:
        One new dict per record, with exactly the fields that were asked for: "id", "question", "paragraphs", and
        "relevant" and "answer" ({"text", "start"}) when needed.
    """
    records = _read_list(path, "questions")
    if labels_if_present and all(isinstance(r, dict) and "relevant" in r and "answer" in r for r in records):
        need_answer = True
    need_relevant = need_relevant or need_answer
    questions = []
    for question_id, record, where in _records_with_ids(path, records):
        question = required_field(record, "question", str, where)
        if not question.strip():
            raise InputError(f"{where}: field 'question': is empty")
        check_characters(question, f"{where}: field 'question'")

        paragraph_ids = required_field(record, "paragraphs", list, where)
        if not paragraph_ids:
            raise InputError(f"{where}: field 'paragraphs': is empty, expected at least one paragraph index")
        for position, paragraph_id in enumerate(paragraph_ids):
            _check_paragraph_index(paragraph_id, context, f"{where}: field 'paragraphs'[{position}]")
        clean = {"id": question_id, "question": question, "paragraphs": list(paragraph_ids)}

        if need_relevant:
            relevant = required_field(record, "relevant", int, where)
            _check_paragraph_index(relevant, context, f"{where}: field 'relevant'")
            if relevant not in paragraph_ids:
                raise InputError(
                    f"{where}: field 'relevant': paragraph {relevant} is not among 'paragraphs' {paragraph_ids}"
                )
            clean["relevant"] = relevant

        if need_answer:
            clean["answer"] = _checked_answer(record, context[clean["relevant"]], where)
        questions.append(clean)
    return questions


def _read_list(path, kind):
    """The records of a JSON file that must hold a non-empty list; `kind` names them ("questions")."""
    records = read_json(path)
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of {kind}, found {_json_type(records)}")
    if not records:
        raise InputError(f"{path}: contains no {kind}")
    return records


def _records_with_ids(path, records):
    """Yields (id, record, where) for each record of a list of objects with unique, non-empty string ids; `where`
    names the file, the record's index and its id for messages."""
    first_index_of_id = {}
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, found {_json_type(record)}")
        record_id = required_field(record, "id", str, where)
        where = f"{path}: record {index} (id {record_id!r})"
        if not record_id.strip():
            raise InputError(f"{where}: field 'id': is empty")
        check_characters(record_id, f"{where}: field 'id'")
        if record_id in first_index_of_id:
            raise InputError(f"{where}: field 'id': duplicate of record {first_index_of_id[record_id]}")
        first_index_of_id[record_id] = index
        yield record_id, record, where


def load_intent_utterances(path: str | Path, need_intent: bool = False) -> list[dict[str, str]]:
    """The validated records of an intent file.

    A text without any visible character is an error: there is nothing to classify.

    Args:
        path: the intent file.
        need_intent: require each record's "intent" (a training or validation file).

    Returns:
        One new {"id", "text"} dict per record, with "intent" when `need_intent`.
    """
    utterances = []
    for utterance_id, record, where in _records_with_ids(path, _read_list(path, "utterances")):
        text = required_field(record, "text", str, where)
        if not text.strip():
            raise InputError(f"{where}: field 'text': is empty")
        check_characters(text, f"{where}: field 'text'")
        clean = {"id": utterance_id, "text": text}
        if need_intent:
            intent = required_field(record, "intent", str, where)
            if not intent.strip():
                raise InputError(f"{where}: field 'intent': is empty")
            clean["intent"] = intent
        utterances.append(clean)
    return utterances


def load_slot_utterances(path: str | Path, need_tags: bool = False) -> list[dict]:
    """The validated records of a slot file.

    `tokens` is the utterance cut into words, and gets one predicted tag per word. A single blank word ("" occurs in
    the course data) is kept: it is a word of the utterance like any other. An utterance without any visible
    character is an error. `tags` must have one BIO tag (O, B-TYPE or I-TYPE) per token.

    Args:
        path: the slot file.
        need_tags: require each record's "tags" (a training or validation file).

    Returns:
        One new {"id", "tokens"} dict per record, with "tags" when `need_tags`.
    """
    utterances = []
    for utterance_id, record, where in _records_with_ids(path, _read_list(path, "utterances")):
        tokens = required_field(record, "tokens", list, where)
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise InputError(f"{where}: field 'tokens'[{position}]: expected a string, found {_json_type(token)}")
            check_characters(token, f"{where}: field 'tokens'[{position}]")
        if not any(token.strip() for token in tokens):
            raise InputError(f"{where}: field 'tokens': is empty" + (f" ({len(tokens)} blank words)" if tokens else ""))
        clean = {"id": utterance_id, "tokens": list(tokens)}
        if need_tags:
            tags = required_field(record, "tags", list, where)
            if len(tags) != len(tokens):
                raise InputError(
                    f"{where}: field 'tags': {len(tags)} tags for {len(tokens)} tokens (one tag per token)"
                )
            for position, tag in enumerate(tags):
                if not isinstance(tag, str):
                    raise InputError(f"{where}: field 'tags'[{position}]: expected a string, found {_json_type(tag)}")
                if not _is_bio_tag(tag):
                    raise InputError(
                        f"{where}: field 'tags'[{position}]: {tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)"
                    )
            clean["tags"] = list(tags)
        utterances.append(clean)
    return utterances


def _is_bio_tag(tag):
    return tag == "O" or (tag[:2] in ("B-", "I-") and bool(tag[2:].strip()))


def check_known_labels(
    path: str | Path, records: list[dict], field: str, label_names: Iterable[str], label_source: str
) -> None:
    """Raises an InputError naming the first record of `path` whose `field` (a label, or a list of them) holds a label
    outside `label_names`, the labels a model predicts.

    Args:
        path: the file the records come from (for the message).
        records: those load_*_utterances returned for `path`, or their first N: record i is the file's record i.
        field: the field that holds a record's label or its list of labels ("intent", "tags").
        label_names: the labels the model predicts.
        label_source: where they come from, for the message: a training file or a model.
    """
    known = set(label_names)
    for index, record in enumerate(records):
        value = record[field]
        for position, label in enumerate(value if isinstance(value, list) else [value]):
            if label not in known:
                where = f"field '{field}'[{position}]" if isinstance(value, list) else f"field '{field}'"
                raise InputError(
                    f"{path}: record {index} (id {record['id']!r}): {where}: {label!r} is not among the "
                    f"{len(known)} labels of {label_source}, so no model trained on it can predict it"
                )


def _checked_answer(record, paragraph, where):
    answer = required_field(record, "answer", dict, where)
    text = required_field(answer, "text", str, f"{where}: field 'answer'")
    start = required_field(answer, "start", int, f"{where}: field 'answer'")
    if not text.strip():
        raise InputError(f"{where}: field 'answer.text': is empty")
    check_characters(text, f"{where}: field 'answer.text'")
    located, occurrences = locate_answer(paragraph, text, start)
    if located == start:
        return {"text": text, "start": start}
    if located is not None:
        logger.warning(
            "%s: field 'answer.start': %r is not at %s; repaired to %d, its only occurrence in the paragraph",
            where,
            text,
            short_number(start),
            located,
        )
        return {"text": text, "start": located}
    if not occurrences:
        raise InputError(f"{where}: field 'answer.text': {text!r} does not occur in paragraph {record['relevant']}")
    raise InputError(
        f"{where}: field 'answer.start': {text!r} is not at {short_number(start)} and occurs {len(occurrences)} times "
        f"in paragraph {record['relevant']} (at {occurrences[:5]}), so it cannot be repaired"
    )


def locate_answer(paragraph: str, text: str, start: int) -> tuple[int | None, list[int]]:
    """Where the answer `text`, said to start at `start`, is in `paragraph`.

    The start is `start` itself when the text is there, else the text's only occurrence (a repair); None when the text
    occurs nowhere or several times (no way to tell which one is meant). Callers decide what a failure means:
    load_questions raises InputError, convert_squad.py drops the question and counts it.

    Args:
        paragraph: the paragraph's text.
        text: the answer's text.
        start: the character offset the data gives.

    Returns:
        (start or None, occurrences): `occurrences` lists every offset of the text when `start` was wrong (empty when
        it was right or the text is absent).
    """
    if start >= 0 and paragraph.startswith(text, start):
        return start, []
    occurrences = _find_all(paragraph, text)
    return (occurrences[0] if len(occurrences) == 1 else None), occurrences


def _find_all(text, sub):
    positions, position = [], text.find(sub)
    while position != -1:
        positions.append(position)
        position = text.find(sub, position + 1)
    return positions


def required_field(record: dict, name: str, expected_type: type, where: str) -> Any:
    """record[name], checked to be of `expected_type`; an InputError naming `where` and the field otherwise.

    Args:
        record: a JSON object of an input file.
        name: the field.
        expected_type: str, int, list or dict (a JSON true or false is not an int).
        where: the file and record, for the message.

    Returns:
        The field's value.
    """
    if name not in record:
        raise InputError(f"{where}: field '{name}': missing")
    value = record[name]
    # bool is an int subclass in Python; JSON true/false is never a valid index or offset.
    if not isinstance(value, expected_type) or (expected_type is int and isinstance(value, bool)):
        raise InputError(f"{where}: field '{name}': expected {_TYPE_NAMES[expected_type]}, found {_json_type(value)}")
    return value


def _check_paragraph_index(value, context, where):
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{where}: expected a paragraph index (integer), found {_json_type(value)}")
    if not 0 <= value < len(context):
        raise InputError(
            f"{where}: paragraph index {short_number(value)} is out of range (the context file has "
            f"{len(context)} paragraphs)"
        )


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({short_number(value)})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def to_multiple_choice_examples(questions: list[dict], context: list[str]) -> dict[str, list]:
    """Columns of paragraph-selection examples: question, candidates (the paragraph texts) and, when the records
    carry "relevant", label (its position among the candidates).

    Args:
        questions: load_questions' records.
        context: the paragraphs.

    Returns:
        {column: one value per question}.
    """
    columns = {
        "question": [q["question"] for q in questions],
        "candidates": [[context[p] for p in q["paragraphs"]] for q in questions],
    }
    if questions and "relevant" in questions[0]:
        columns["label"] = [q["paragraphs"].index(q["relevant"]) for q in questions]
    return columns


# Between the candidate paragraphs of a question joined into one text (end-to-end span selection). "|" is a token of
# its own in every BERT vocabulary (all printable ASCII) and in byte-level BPE ones; the line breaks around it keep the
# joined text readable in prediction files and become no token. Never "[SEP]": Longformer and BigBird find the question
# by their separator tokens.
CANDIDATE_SEPARATOR = "\n|\n"


@dataclass(frozen=True)
class JoinedCandidates:
    """A question's candidate paragraphs joined into one text, CANDIDATE_SEPARATOR between consecutive ones."""

    text: str
    paragraphs: tuple  # the paragraphs' indices into context.json, in the order joined
    starts: tuple  # the character offset of each paragraph in `text`

    def locate(self, offset):
        """(index into context.json, offset in that paragraph) of a character offset of the joined text; ValueError
        for an offset inside a separator or outside the text."""
        position = bisect_right(self.starts, offset) - 1
        if position < 0 or offset >= self._end(position):
            raise ValueError(f"character {offset} of the joined text is in no paragraph")
        return self.paragraphs[position], offset - self.starts[position]

    def _end(self, position):
        if position + 1 < len(self.starts):
            return self.starts[position + 1] - len(CANDIDATE_SEPARATOR)
        return len(self.text)


def join_candidates(paragraphs: list[int], context: list[str]) -> JoinedCandidates:
    """The JoinedCandidates of the paragraphs in the order given. Training, evaluation (run_qa.py --context_mode
    candidates) and inference.py --end_to_end read a question's candidates through it.

    Args:
        paragraphs: indices into `context`, in the order to join them.
        context: the paragraphs.

    Returns:
        Their texts, CANDIDATE_SEPARATOR between consecutive ones, with where each starts.
    """
    starts, position = [], 0
    for paragraph in paragraphs:
        starts.append(position)
        position += len(context[paragraph]) + len(CANDIDATE_SEPARATOR)
    text = CANDIDATE_SEPARATOR.join(context[paragraph] for paragraph in paragraphs)
    return JoinedCandidates(text, tuple(paragraphs), tuple(starts))


def to_squad_examples(
    questions: list[dict], context: list[str], context_mode: str = "relevant", shuffle_seed: int | None = None
) -> dict[str, list]:
    """Columns of SQuAD-style examples (id, question, context, answers) for span selection. `answers` is included
    when the records carry an answer.

    The context of a question, by `context_mode`:
    - "relevant": the paragraph in "relevant" (gold or predicted);
    - "candidates": all its candidate paragraphs joined (join_candidates), in file order, or with `shuffle_seed` in an
      order shuffled per question (the same for a given seed and question id), so that a model trained on them cannot
      learn where the relevant one usually is. The examples then also carry `candidates`, the paragraph texts in the
      order joined, and `candidate_starts`, where each starts in the context (for tokens.join_tokens).

    Args:
        questions: load_questions' records.
        context: the paragraphs.
        context_mode: "relevant" or "candidates" (above); any other is a ValueError.
        shuffle_seed: with "candidates", the seed of each question's order of candidates; None keeps file order.

    Returns:
        {column: one value per question}; `answers` holds {"text": [text], "answer_start": [offset in the context]}.
    """
    columns = {"id": [q["id"] for q in questions], "question": [q["question"] for q in questions]}
    if context_mode == "relevant":
        columns["context"] = [context[q["relevant"]] for q in questions]
        answer_starts = [q["answer"]["start"] for q in questions if "answer" in q]
    elif context_mode == "candidates":
        joined = []
        for q in questions:
            order = list(q["paragraphs"])
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}:{q['id']}").shuffle(order)
            joined.append(join_candidates(order, context))
        columns["context"] = [j.text for j in joined]
        columns["candidates"] = [[context[p] for p in j.paragraphs] for j in joined]
        columns["candidate_starts"] = [list(j.starts) for j in joined]
        answer_starts = [
            j.starts[j.paragraphs.index(q["relevant"])] + q["answer"]["start"]
            for q, j in zip(questions, joined)
            if "answer" in q
        ]
    else:
        raise ValueError(f"unknown context_mode {context_mode!r}")
    if questions and "answer" in questions[0]:
        columns["answers"] = [
            {"text": [q["answer"]["text"]], "answer_start": [start]} for q, start in zip(questions, answer_starts)
        ]
    return columns
