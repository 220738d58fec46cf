"""What every entry point shares: the error users can cause (InputError), one-line errors instead of tracebacks, the
command-line types with their bounds, and run_main, which ends a script with one line and the usual exit status.

Errors we cause are not InputErrors: they end in a traceback, loudly, as they should.
"""

import argparse
import signal
import sys
from collections.abc import Callable


class InputError(Exception):
    """A problem with something the user gave us (a data file, a model directory, an output path, a flag).

    The message is one line that names the file, the record and the field; entry points print it without a traceback.
    """


class OneLineErrors:
    """Mixed into an argparse parser: a bad command line gets one line (not the usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """The command-line parser of the scripts that do not take the Trainer's flags."""


def bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `minimum` to `maximum` (no upper bound when None).

    Args:
        minimum: the smallest value accepted.
        maximum: the largest value accepted, or None.

    Returns:
        A function that argparse calls on the flag's text.
    """

    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be at least {minimum}, got {value}" if minimum != 0 else f"must be 0 or more, got {value}"
            )
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {short_number(value)}")
        return value

    parse.__name__ = "integer"  # what argparse names in "invalid integer value"
    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)


def short_number(value: int | float) -> str:
    """A number as it fits in a one-line message: an integer of hundreds of digits is shown by its length.

    Args:
        value: the number.

    Returns:
        Its text when it has at most 20 characters, else its first 8 characters and its number of digits.
    """
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}... ({len(text.lstrip('-'))} digits)"


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters (a library's message can be a page long).

    Args:
        error: the exception.
        limit: the most characters kept.

    Returns:
        The message, each run of whitespace made one space, ending in "..." when cut.
    """
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Terminated(BaseException):
    """SIGTERM (a grading harness's timeout, `kill`), raised like Ctrl-C's KeyboardInterrupt so that the same clean-up
    runs: temporary output files are removed."""


def _raise_terminated(signal_number, frame):
    raise Terminated()


def run_main(main: Callable[[], object]) -> None:
    """Runs an entry point; an InputError ends it with one line on stderr and exit status 1, not a traceback.

    Ctrl-C and SIGTERM end it with one line too, and the shell's usual status (130, 143); the temporary files of
    outputs not yet complete are removed on the way out, so nothing partial is left.

    Args:
        main: the entry point, called without arguments.
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main()
    except InputError as error:
        _fail(f"error: {error}", 1)
    except KeyboardInterrupt:
        _fail("error: interrupted (Ctrl-C); no output was written", 130)
    except Terminated:
        _fail("error: terminated (SIGTERM); no output was written", 143)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(line, status):
    """Ends with `line` as the last line of stderr: progress bars cut short by the error are closed first, or they
    would draw themselves once more after it when the interpreter exits."""
    if "tqdm" in sys.modules:
        for bar in list(getattr(sys.modules["tqdm"].tqdm, "_instances", ())):
            bar.close()
    print(line, file=sys.stderr)
    sys.exit(status)
