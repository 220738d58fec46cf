"""train.sh's flags after --, each given to the stages whose script takes it: `--seed 7` to both stages,
`--doc_stride 96` to span selection only, and a flag that no stage takes (a typo) refused in one line before any
training.

    python route_flags.py SCRIPT [SCRIPT ...] -- FLAGS...

prints one line per SCRIPT: the FLAGS it takes, quoted for the shell (train.sh reads them back with eval).
"""

import importlib
import shlex
import sys
from pathlib import Path

from cli import InputError, run_main
from training import TrainingArgumentParser


def flag_groups(arguments: list[str]) -> list[list[str]]:
    """A command line's flags, each with the values that follow it: ["--seed", "7", "--bf16"] -> [["--seed", "7"],
    ["--bf16"]]. A flag is a word that starts with "--"; anything else is a value of the flag before it."""
    groups = []
    for word in arguments:
        if word.startswith("--") or not groups:
            groups.append([word])
        else:
            groups[-1].append(word)
    return groups


def accepted_flags(argument_classes, arguments: list[str]) -> tuple[list[str], list[str]]:
    """Splits a command line into the flags (with their values) that a script taking `argument_classes` accepts and
    the names of those it does not.

    Args:
        argument_classes: the script's argument dataclasses (its ARGUMENT_CLASSES).
        arguments: the command line.

    Returns:
        (the accepted words, in order; the flags not accepted).
    """
    parser = TrainingArgumentParser(argument_classes)
    known = {option for action in parser._actions for option in action.option_strings}
    accepted, refused = [], []
    for group in flag_groups(arguments):
        name = group[0].split("=", 1)[0]
        if name in known:
            accepted += group
        else:
            refused.append(name)
    return accepted, refused


def route_flags(scripts: list[str], arguments: list[str]) -> list[list[str]]:
    """The flags of `arguments` that each script accepts (train.sh's flags after --, given to every stage that takes
    them); an InputError for a flag that none of them takes.

    Args:
        scripts: the training scripts, e.g. ["run_swag.py", "run_qa.py"].
        arguments: the command line.

    Returns:
        One list of words per script.
    """
    routed, refused_by = [], {}
    for script in scripts:
        module = importlib.import_module(Path(script).stem)
        accepted, refused = accepted_flags(module.ARGUMENT_CLASSES, arguments)
        routed.append(accepted)
        for name in refused:
            refused_by.setdefault(name, []).append(script)
    for name, refusing in refused_by.items():
        if len(refusing) == len(scripts):
            raise InputError(
                f"{name}: no stage takes this flag ({', '.join(scripts)}; see python {scripts[-1]} --help)"
            )
    return routed


def main(argv=None):
    """python route_flags.py SCRIPT [SCRIPT ...] -- FLAGS...: prints, one line per SCRIPT, the FLAGS it takes,
    quoted for the shell (train.sh reads them back with eval)."""
    argv = sys.argv[1:] if argv is None else argv
    separator = argv.index("--") if "--" in argv else 0
    if separator == 0:
        raise InputError("usage: python route_flags.py SCRIPT [SCRIPT ...] -- FLAGS...")
    for words in route_flags(argv[:separator], argv[separator + 1 :]):
        print(shlex.join(words))


if __name__ == "__main__":
    run_main(main)
