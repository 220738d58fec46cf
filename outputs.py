"""The files a script writes: checked before any work, written together at the end, never over what the user owns.

Every script plans its outputs through an OutputPlan (or, for one file, write_atomically), so one set of rules holds
for all of them (docs/output-files.md states them for users):

1. An output is never one of the run's inputs: not a data file it reads (the same file, also through a link or a
   hard link), not inside a model folder it reads (a checkpoint, a training run's --model_name_or_path), and not
   another output of the same run.
2. Everything is checked when the plan is made, before any model loads: a path ending in "/", an existing folder, a
   folder that cannot be written (read-only, full, /proc), a name longer than the file system allows. Missing parent
   folders are created only when the outputs are written.
3. All outputs of a run land together or none does: each is written to a temporary file beside it first, and only
   when all are complete are they renamed over their destinations. A failure, Ctrl-C or SIGTERM before that leaves
   the old files as they were and no temporary file behind.
4. A symbolic link is written through (the file it points to gets the output; the link stays). A pipe, a character
   device (/dev/stdout, /dev/null) or another file that is not a regular file cannot be replaced, so it is written
   into directly, after the regular files are complete and before they are renamed.
5. New files get the usual permissions (0666 minus the umask); a replaced file keeps its own.
6. JSON is strict (no NaN or Infinity, which strict readers refuse), UTF-8, Chinese as characters.
"""

import csv
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TextIO

from cli import InputError

# Temporary and probe files get short names of their own, so that an output whose name is at the file system's limit
# can still be written beside one.
TEMPORARY_PREFIX = ".tmp-"


def _same_file(stat_result, path) -> bool:
    try:
        return os.path.samestat(stat_result, os.stat(path))
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _name_limit(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_output_path(path, inputs=(), input_folders=()) -> Path:
    """Checks, before any work, that `path` may be written (the rules at the top of this module), and returns where
    the output will go: the file a link points to, or the path as given for a pipe or device.

    Args:
        path: the output path as the user gave it.
        inputs: the files the run reads.
        input_folders: the folders the run reads whole (model checkpoints): no output may lie inside one.

    Returns:
        The destination path.

    Raises:
        InputError: naming the path and the rule it breaks.
    """
    given = str(path)
    if not given:
        raise InputError("the output path is empty")
    if given.endswith(("/", os.sep)):
        raise InputError(f"{given}: output path ends in '/', so it names a folder; give a file name")
    try:
        existing = os.stat(given)  # through links
    except OSError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise InputError(f"{given}: output path is a directory")
    destination = Path(os.path.realpath(given))
    for input_path in inputs:
        if (existing is not None and _same_file(existing, input_path)) or os.path.realpath(input_path) == str(
            destination
        ):
            raise InputError(f"{given}: output path is the input file {input_path}; writing it would destroy it")
    for folder in input_folders:
        if _inside(str(destination), os.path.realpath(folder)):
            raise InputError(
                f"{given}: output path is inside the model folder {folder}, which this run reads: write elsewhere"
            )
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        return Path(given)  # /dev/stdout resolves to a pipe's name, which cannot be opened: keep the path given
    folder = destination.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{given}: cannot create the output folder ({folder} is a file)")
    limit = _name_limit(folder)
    too_long = [part for part in destination.relative_to(folder).parts if len(os.fsencode(part)) > limit]
    if too_long:
        raise InputError(
            f"{given}: the name {too_long[0][:40]}... is {len(os.fsencode(too_long[0]))} bytes, more than the "
            f"{limit} bytes the file system allows"
        )
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{given}: cannot write to folder {folder} ({error.strerror})") from None
    return destination


def check_output_folder(
    folder: str | Path, inputs: Iterable[str | Path] = (), input_folders: Iterable[str | Path] = ()
) -> Path:
    """Checks, before any work, that a run may write into `folder` (a training --output_dir, where the Trainer writes
    the model, its checkpoints, metrics and predictions): it is a folder or can be created, it can be written, it is
    neither inside nor around a model folder the run reads (the Trainer would write over the model, or delete it when
    it rotates its checkpoints), and no input file lies inside it. Creates nothing.

    Args:
        folder: the folder as the user gave it.
        inputs: the files the run reads.
        input_folders: the model folders the run reads.

    Returns:
        The folder's absolute path.
    """
    path = Path(os.path.abspath(folder))
    if path.exists() and not path.is_dir():
        raise InputError(f"{folder}: --output_dir is a file, not a directory")
    real = os.path.realpath(path)
    for model_folder in input_folders:
        model_real = os.path.realpath(model_folder)
        if _inside(real, model_real) or _inside(model_real, real):
            where = "the same folder as" if real == model_real else "inside" if _inside(real, model_real) else "around"
            raise InputError(
                f"{folder}: --output_dir is {where} the model folder {model_folder} that this run reads: the run would "
                "write over it; use another --output_dir"
            )
    for input_path in inputs:
        if _inside(os.path.realpath(input_path), real):
            raise InputError(
                f"{folder}: --output_dir holds the input file {input_path}, which the run could write over; "
                "use another --output_dir"
            )
    existing = path
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError()
        handle, probe = tempfile.mkstemp(dir=existing, prefix=TEMPORARY_PREFIX, suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError:
        raise InputError(
            f"{folder}: --output_dir cannot be created or written ({existing} is not a writable folder)"
        ) from None
    limit = _name_limit(existing)
    too_long = [part for part in path.relative_to(existing).parts if len(os.fsencode(part)) > limit]
    if too_long:
        raise InputError(
            f"{folder}: the name {too_long[0][:40]}... is longer than the {limit} bytes the file system allows"
        )
    return path


class OutputPlan:
    """The files one run writes: each checked when it is added (before any model loads), all written together.

    plan = OutputPlan(inputs=[context_file, test_file], input_folders=model_folders)
    csv_path = plan.add(args.output_file)
    ...                                   # the run
    plan.write({csv_path: csv_writer(ids, answers)})
    """

    def __init__(self, inputs=(), input_folders=()):
        self.inputs = [str(path) for path in inputs]
        self.input_folders = [str(path) for path in input_folders]
        self.destinations = {}  # destination -> the path as given

    def add(self, path) -> Path:
        """Checks one more output (check_output_path, and that it is no other output of the run).

        Args:
            path: the output path as the user gave it.

        Returns:
            The destination to pass to write().
        """
        destination = check_output_path(path, self.inputs, self.input_folders)
        for other, other_given in self.destinations.items():
            if other == destination or (destination.exists() and _same_file(os.stat(destination), other)):
                raise InputError(f"{path}: the same file as the output {other_given}: one would overwrite the other")
        self.destinations[destination] = str(path)
        return destination

    def write(self, writers: dict) -> None:
        """Writes the outputs together (rule 3): each writer(file) gets an open text file (UTF-8, no newline
        translation), or a binary one for a writer made by `binary`, for its destination (one add() returned).

        Every regular output is written to a temporary file first; pipes and devices are written into once those are
        complete; then the temporary files are renamed over their destinations. A rename that fails or is
        interrupted (Ctrl-C between two renames) undoes those already done, each old file put back from a hard link
        made before it was replaced.

        Args:
            writers: {destination: writer}.

        Raises:
            InputError: an output could not be written (a full disk, a closed pipe); nothing was replaced.
        """
        unplanned = [str(path) for path in writers if path not in self.destinations]
        if unplanned:
            raise ValueError(f"outputs written without being planned: {unplanned}")
        regular = {path: write for path, write in writers.items() if not path.exists() or path.is_file()}
        special = {path: write for path, write in writers.items() if path not in regular}
        temporaries, created_folders, landed = {}, [], []  # landed: (destination, hard link to its old file or None)
        current = None
        try:
            for path, write in regular.items():
                current = path
                created_folders += _make_parents(path.parent)
                handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=".part")
                temporaries[path] = temporary
                with _open(handle, write) as file:
                    write(file)
                # mkstemp makes the file private (0600): give it the permissions of any new file, or the old file's.
                mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_current_umask()
                os.chmod(temporary, mode)
            for path, write in special.items():
                current = path
                with _open(path, write) as file:
                    write(file)
            for path, temporary in temporaries.items():
                current = path
                backup = f"{temporary}.old" if path.exists() else None
                if backup is not None:
                    _keep_old(path, backup)
                landed.append((path, backup))
                os.replace(temporary, path)
            created_folders.clear()
        except BaseException as error:
            for path, backup in reversed(landed):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    _remove(path)
            landed.clear()
            if isinstance(error, OSError):
                raise InputError(f"{self.destinations[current]}: cannot write ({error.strerror or error})") from None
            raise
        finally:
            for temporary in temporaries.values():
                _remove(temporary)
            for _, backup in landed:
                if backup is not None:
                    _remove(backup)
            for folder in reversed(created_folders):
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _keep_old(path, backup):
    """A second name for the old file, to put it back: a hard link, or a copy where the file system has none."""
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def binary(write: Callable[[BinaryIO], object]) -> Callable[[BinaryIO], object]:
    """Marks a writer as one that writes bytes (a PNG figure): OutputPlan.write then opens its file in binary mode.

    Args:
        write: called with the open binary file.

    Returns:
        `write` itself, marked.
    """
    write.binary = True
    return write


def _open(file, write):
    if getattr(write, "binary", False):
        return open(file, "wb")
    return open(file, "w", encoding="utf-8", newline="")


def _make_parents(folder: Path) -> list:
    """Creates `folder` and its missing parents; returns those it created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path, write, inputs=(), input_folders=()) -> Path:
    """Writes one output by the rules above: write(file) on a temporary file, renamed over `path` when complete.

    Args:
        path: the output path as the user gave it.
        write: called with the open text file.
        inputs, input_folders: what the run reads (check_output_path).

    Returns:
        The destination written.
    """
    plan = OutputPlan(inputs, input_folders)
    destination = plan.add(path)
    plan.write({destination: write})
    return destination


def csv_field(text: str) -> str:
    """One CSV field, quoted (RFC 4180: quotes doubled) whenever a reader could split it or trim it: a comma, a
    quote, a line break of any kind (\\r, \\n, \\u2028, \\x85...) or spaces at either end. Other fields stay
    bare, so that a simple reader still sees plain ids and answers."""
    if "," in text or '"' in text or text != text.strip() or len(text.splitlines()) > 1:
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_writer(ids: list[str], answers: dict[str, str], column: str = "answer") -> Callable[[TextIO], None]:
    """The writer of a submission: header `id,<column>`, one row per id in the given order, lines ending in \\n, each
    field quoted by csv_field where needed. Read it back with csv.reader, or with pandas as
    `pd.read_csv(path, dtype=str, keep_default_na=False)` (else an answer "NA", "null" or "" becomes NaN).

    Args:
        ids: the row ids, in order.
        answers: {id: text}.
        column: the name of the second column.

    Returns:
        A writer for OutputPlan.write.
    """

    def write(file):
        file.write(f"id,{column}\n")
        for row_id in ids:
            file.write(f"{csv_field(row_id)},{csv_field(answers[row_id])}\n")

    return write


def table_writer(header: list[str], rows: list[list]) -> Callable[[TextIO], None]:
    """The writer of a plain CSV table (csv.writer's quoting), e.g. plot_curves.py's results.csv.

    Args:
        header: the column names.
        rows: the rows, each one value per column.

    Returns:
        A writer for OutputPlan.write.
    """

    def write(file):
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    return write


def json_text(value, indent=None) -> str:
    """Strict JSON text: Chinese as characters, and a ValueError (our bug, not the user's) for NaN or Infinity."""
    return json.dumps(value, ensure_ascii=False, indent=indent, allow_nan=False)


def json_writer(value: object) -> Callable[[TextIO], object]:
    """The writer of readable, strict JSON (json_text, indented).

    Args:
        value: what to write: dicts, lists, strings, numbers, booleans and None.

    Returns:
        A writer for OutputPlan.write.
    """
    return lambda file: file.write(json_text(value, indent=2))


def json_lines_writer(records: list[dict]) -> Callable[[TextIO], object]:
    """The writer of JSON Lines: one strict JSON object per line.

    Args:
        records: the objects, in order.

    Returns:
        A writer for OutputPlan.write.
    """
    return lambda file: file.writelines(json_text(record) + "\n" for record in records)


def write_predictions_csv(
    path: str | Path, ids: list[str], answers: dict[str, str], column: str = "answer", inputs: Iterable[str | Path] = ()
) -> Path:
    """Writes a submission CSV (csv_writer) to `path` by the rules above.

    Args:
        path: the output path as the user gave it.
        ids, answers, column: as csv_writer takes them.
        inputs: the files the run reads (check_output_path).

    Returns:
        The destination written.
    """
    return write_atomically(path, csv_writer(ids, answers, column), inputs)


def write_json(path: str | Path, value: object, inputs: Iterable[str | Path] = ()) -> Path:
    """Writes strict, readable UTF-8 JSON (json_writer) to `path` by the rules above.

    Args:
        path: the output path as the user gave it.
        value: what to write (json_writer).
        inputs: the files the run reads (check_output_path).

    Returns:
        The destination written.
    """
    return write_atomically(path, json_writer(value), inputs)
