"""Reading and validating the ADL HW1 data files, and writing the submission CSV.

Every script reads its inputs through this module, so a malformed file gets the same one-line message (file, record,
field) whichever script meets it first. The formats (see README.md):

- context.json: a JSON list of paragraph strings, referred to by index.
- train.json / valid.json: a list of {"id", "question", "paragraphs": [int, ...], "relevant": int,
  "answer": {"text", "start"}}; `start` is a character offset into context[relevant].
- test.json: the same without "relevant" and "answer".
"""

import csv
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


class InputError(Exception):
    """A problem with something the user gave us (a data file, a model directory, an output path, a flag).

    The message is one line that names the file, the record and the field; entry points print it without a traceback.
    """


def run_main(main):
    """Runs an entry point; an InputError ends it with one line on stderr and exit status 1, not a traceback."""
    try:
        main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def read_json(path):
    """Parses a UTF-8 JSON file, turning every way it can be unreadable into an InputError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSON file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
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


def load_context(path):
    """Returns the list of paragraphs of context.json."""
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
    return paragraphs


def load_questions(path, context, need_relevant=False, need_answer=False):
    """Returns the validated question records of a train/valid/test file.

    `need_relevant` requires the "relevant" field (paragraph selection labels, or span selection on the gold
    paragraph); `need_answer` requires "relevant" and "answer". Fields a use does not need are not read, so a
    valid.json works as a test file. An answer whose `start` is off is repaired, with a warning, when its text occurs
    exactly once in the paragraph; otherwise it is an error.

    Each record returned is a new dict with exactly the fields that were asked for.
    """
    need_relevant = need_relevant or need_answer
    records = read_json(path)
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of questions, found {_json_type(records)}")
    if not records:
        raise InputError(f"{path}: contains no questions")

    questions = []
    first_index_of_id = {}
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, found {_json_type(record)}")
        question_id = required_field(record, "id", str, where)
        where = f"{path}: record {index} (id {question_id!r})"
        if not question_id.strip():
            raise InputError(f"{where}: field 'id': is empty")
        if question_id in first_index_of_id:
            raise InputError(f"{where}: field 'id': duplicate of record {first_index_of_id[question_id]}")
        first_index_of_id[question_id] = index

        question = required_field(record, "question", str, where)
        if not question.strip():
            raise InputError(f"{where}: field 'question': is empty")

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


def _checked_answer(record, paragraph, where):
    answer = required_field(record, "answer", dict, where)
    text = required_field(answer, "text", str, f"{where}: field 'answer'")
    start = required_field(answer, "start", int, f"{where}: field 'answer'")
    if not text.strip():
        raise InputError(f"{where}: field 'answer.text': is empty")
    located, occurrences = locate_answer(paragraph, text, start)
    if located == start:
        return {"text": text, "start": start}
    if located is not None:
        logger.warning(
            "%s: field 'answer.start': %r is not at %d; repaired to %d, its only occurrence in the paragraph",
            where,
            text,
            start,
            located,
        )
        return {"text": text, "start": located}
    if not occurrences:
        raise InputError(f"{where}: field 'answer.text': {text!r} does not occur in paragraph {record['relevant']}")
    raise InputError(
        f"{where}: field 'answer.start': {text!r} is not at {start} and occurs {len(occurrences)} times "
        f"in paragraph {record['relevant']} (at {occurrences[:5]}), so it cannot be repaired"
    )


def locate_answer(paragraph, text, start):
    """Where the answer `text`, said to start at `start`, is in `paragraph`: returns (start or None, occurrences).

    The start is `start` itself when the text is there, else the text's only occurrence (a repair); None when the text
    occurs nowhere or several times (no way to tell which one is meant). `occurrences` lists every offset of the text
    when `start` was wrong (empty when it was right or the text is absent). Callers decide what a failure means:
    load_questions raises InputError, convert_squad.py drops the question and counts it.
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


def required_field(record, name, expected_type, where):
    """record[name], checked to be of `expected_type`; an InputError naming `where` and the field otherwise."""
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
            f"{where}: paragraph index {value} is out of range (the context file has {len(context)} paragraphs)"
        )


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def to_multiple_choice_examples(questions, context):
    """Columns of paragraph-selection examples: question, candidates (the paragraph texts) and, when the records
    carry "relevant", label (its position among the candidates)."""
    columns = {
        "question": [q["question"] for q in questions],
        "candidates": [[context[p] for p in q["paragraphs"]] for q in questions],
    }
    if questions and "relevant" in questions[0]:
        columns["label"] = [q["paragraphs"].index(q["relevant"]) for q in questions]
    return columns


def to_squad_examples(questions, context):
    """Columns of SQuAD-style examples (id, question, context, answers) for span selection, the context being the
    paragraph in "relevant" (gold or predicted). `answers` is included when the records carry an answer."""
    columns = {
        "id": [q["id"] for q in questions],
        "question": [q["question"] for q in questions],
        "context": [context[q["relevant"]] for q in questions],
    }
    if questions and "answer" in questions[0]:
        columns["answers"] = [
            {"text": [q["answer"]["text"]], "answer_start": [q["answer"]["start"]]} for q in questions
        ]
    return columns


def prepare_output_path(path):
    """Checks early that `path` can be written (creating missing parent folders) and returns it as a Path.

    Run before any model work, so a typo in the output path costs seconds, not a whole inference run.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: output path is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path}: cannot create the output folder ({error.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{path}: cannot write to folder {path.parent} (permission denied)")
    return path


def write_atomically(path, write):
    """Calls write(file) on a temporary file beside `path`, then renames it over `path`.

    A crash or a kill midway leaves no partial output: either the old file or the complete new one.
    """
    path = prepare_output_path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            write(file)
        # mkstemp makes the file private (0600); give it the permissions of any new file.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def _current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_predictions_csv(path, ids, answers):
    """Writes the submission: header `id,answer`, one row per id in the given order, CSV-quoted where needed."""

    def write(file):
        writer = csv.writer(file, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["id", "answer"])
        writer.writerows((question_id, answers[question_id]) for question_id in ids)

    return write_atomically(path, write)


def write_json(path, value):
    """Writes readable UTF-8 JSON (Chinese as characters, not \\u escapes), atomically."""
    return write_atomically(path, lambda file: json.dump(value, file, ensure_ascii=False, indent=2))
