"""The documentation cannot drift from the code: every `python <script>.py ... --flag` and `bash <script>.sh ...
--flag` in README.md and docs/*.md names a flag that the script really accepts, read from its own argument parser,
and every relative link and image exists (with its #anchor, when it has one)."""

import argparse
import re
import runpy
import shlex
import sys
import unicodedata
from functools import cache

import pytest

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Scripts that take the Trainer's flags: what follows `--` in a train.sh command goes to them.
TRAINING_SCRIPTS = {
    "qa": ["run_swag.py", "run_qa.py"],
    "intent-slot": ["run_intent.py", "run_slot.py"],
}


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


@cache
def python_flags(script):
    """The option strings of a Python script's argument parser, captured when the script parses its command line
    (its module is run as __main__ with --help; parsing stops before anything runs)."""
    original = argparse.ArgumentParser.parse_known_args

    def capture(parser, *args, **kwargs):
        raise _Captured(parser)

    argparse.ArgumentParser.parse_known_args = capture
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), "--help"]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except _Captured as captured:
        return frozenset(captured.parser._option_string_actions)
    finally:
        argparse.ArgumentParser.parse_known_args = original
        sys.argv, sys.path[:] = saved_argv, saved_path
    raise AssertionError(f"{script} did not parse a command line")


@cache
def shell_flags(script):
    """The flags a shell script's own argument loop accepts: the --options of its `case` patterns."""
    flags = set()
    for line in script.read_text(encoding="utf-8").splitlines():
        pattern = re.match(r"\s*(--[\w-]+(?:\s*\|\s*-{1,2}[\w-]+)*)\s*\)", line)
        if pattern:
            flags.update(re.findall(r"--[\w-]+", pattern.group(1)))
    return frozenset(flags)


def commands(text):
    """(line number, command) of every shell command in fenced code blocks and inline code spans; fenced lines
    ending in a backslash are joined with the next."""
    found = []
    in_block, block_language, pending, pending_line = False, "", "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            in_block, block_language = not in_block, fence.group(1)
            continue
        if in_block:
            if block_language not in ("", "bash", "sh", "shell", "console"):
                continue
            if not pending:
                pending_line = number
            pending += line.rstrip("\\").rstrip() + " "
            if not line.rstrip().endswith("\\"):
                found.append((pending_line, pending.strip()))
                pending = ""
        else:
            found += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return found


def script_invocations(command):
    """(script path, its arguments) for each project script the command runs, e.g. `python run_qa.py ...`,
    `torchrun ... run_qa.py ...`, `bash train.sh ...`."""
    command = re.sub(r"\s#.*$", "", command)
    try:
        tokens = shlex.split(command)
    except ValueError:  # an unbalanced quote in prose
        return []
    invocations, current = [], None
    for token in tokens:
        if token in ("|", "&&", ";", "||"):
            current = None
            continue
        candidate = ROOT / token
        if re.fullmatch(r"[\w./-]+\.(py|sh)", token) and candidate.is_file() and candidate.resolve().is_relative_to(ROOT):
            current = (candidate, [])
            invocations.append(current)
        elif current is not None:
            current[1].append(token)
    return invocations


def flags_of(arguments):
    """The --flags among a command's arguments, with those inside quoted values (train.sh's --paragraph_flags "...")
    returned apart: (flags, {flag holding the value: flags inside it})."""
    flags, nested = [], {}
    for position, token in enumerate(arguments):
        token = token.strip("[]")
        if " " in token:
            inner = [t.strip("[]") for t in token.split() if t.startswith("--")]
            if position and arguments[position - 1].startswith("--"):
                nested[arguments[position - 1]] = inner
            continue
        if re.fullmatch(r"--[A-Za-z][\w-]*(=.*)?", token):
            flags.append(token.split("=")[0])
    return flags, nested


def task_of(arguments):
    return arguments[arguments.index("--task") + 1] if "--task" in arguments[:-1] else "qa"


def unknown_flags(script, arguments):
    """The flags of one invocation that its script does not accept."""
    if script.suffix == ".py":
        flags, _ = flags_of(arguments)
        return [flag for flag in flags if flag not in python_flags(script)]
    own = arguments[: arguments.index("--")] if "--" in arguments else arguments
    passed = arguments[arguments.index("--") + 1 :] if "--" in arguments else []
    flags, nested = flags_of(own)
    unknown = [flag for flag in flags if flag not in shell_flags(script)]
    trainers = [ROOT / name for name in TRAINING_SCRIPTS.get(task_of(own), [])]
    for flag in flags_of(passed)[0] + [f for inner in nested.values() for f in inner]:
        if trainers and not any(flag in python_flags(trainer) for trainer in trainers):
            unknown.append(flag)
    return unknown


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_flag_the_documentation_shows_is_accepted_by_its_script(document):
    problems = []
    for line, command in commands(document.read_text(encoding="utf-8")):
        for script, arguments in script_invocations(command):
            problems += [f"{document.name}:{line}: {script.name} has no {flag}" for flag in unknown_flags(script, arguments)]
    assert problems == []


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*", "", heading.strip().lower())
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


@cache
def anchors(document):
    found, counts = set(), {}
    in_block = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        heading = re.match(r"(#+)\s+(.*)", line)
        if heading and not in_block:
            anchor = github_anchor(heading.group(2))
            counts[anchor] = counts.get(anchor, -1) + 1
            found.add(anchor if counts[anchor] == 0 else f"{anchor}-{counts[anchor]}")
    return frozenset(found)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_and_image_exists(document):
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            problems.append(f"{document.name}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{document.name}: {target}: no heading with that anchor")
    assert problems == []


def test_the_documentation_check_catches_a_renamed_flag_and_a_broken_link(tmp_path):
    """The checks above fail on what they are for: a flag the script does not have, a link to nothing."""
    renamed = "```bash\npython inference.py --context_file c --test_file t --output_file o --top_k_paragraph 2\n```\n"
    problems = [flag for _, command in commands(renamed) for script, arguments in script_invocations(command)
                for flag in unknown_flags(script, arguments)]
    assert problems == ["--top_k_paragraph"]
    through_train_sh = "`bash train.sh --data_dir d --models m -- --seeed 7` and `bash train.sh --model x`"
    problems = [flag for _, command in commands(through_train_sh) for script, arguments in script_invocations(command)
                for flag in unknown_flags(script, arguments)]
    assert problems == ["--seeed", "--model"]
    page = ROOT / "docs" / "inference.md"
    assert "joint-decoding---top_k_paragraphs" in anchors(page) and "no-such-section" not in anchors(page)
