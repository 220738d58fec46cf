"""Fixtures: the sample data shipped in samples/, a tiny character-level BERT tokenizer and config built from it, and
helpers to write ADL files and run the scripts as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
sys.path.insert(0, str(ROOT))


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path, value):
    Path(path).write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sample_context():
    return read_json(SAMPLES / "context.json")


@pytest.fixture(scope="session")
def sample_train():
    return read_json(SAMPLES / "train.json")


@pytest.fixture(scope="session")
def sample_valid():
    return read_json(SAMPLES / "valid.json")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A 2-layer, hidden-64 BERT config and a character tokenizer covering all CJK ideographs (no weights)."""
    from make_tiny_model import make_tiny_model

    output_dir = tmp_path_factory.mktemp("tiny-base")
    return Path(make_tiny_model(output_dir, texts=[read_json(SAMPLES / "context.json")], all_cjk=True))


@pytest.fixture(scope="session")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def call_failing(main, argv, monkeypatch, capsys):
    """Runs an entry point in this process, as run_main does for a user, with the command line `argv`; it must exit.
    Returns (exit code, last line on stderr)."""
    from cli import run_main

    monkeypatch.setattr(sys, "argv", list(map(str, argv)))
    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    lines = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, lines[-1] if lines else ""


def run_script(*args, cwd=None, env=None, check=True, timeout=600):
    """Runs a project script (python file or shell script) as a user would, returning the CompletedProcess."""
    command = [sys.executable, *map(str, args)] if str(args[0]).endswith(".py") else ["bash", *map(str, args)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    result = subprocess.run(
        command, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return result


def save_random_models(base, folders, scale=0.2):
    """Saves, for each (folder, model class) of `folders`, a model of `base`'s config with random weights drawn from a
    normal of std `scale` (larger than BERT's initialisation, so that scores differ clearly between candidates and
    spans) and `base`'s tokenizer. Draws from torch's global generator: seed it first for fixed weights."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    config, tokenizer = AutoConfig.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    for folder, model_class in folders:
        model = model_class.from_config(config)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, scale)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


# --- Intent classification and slot tagging (run_intent.py, run_slot.py): small English data made here ------------

SLOT_VALUES = {
    "people": [["two"], ["three", "people"], ["five", "of", "us"], ["4"]],
    "time": [["7", "pm"], ["noon"], ["10:30am"]],
    "date": [["tomorrow"], ["next", "friday"], ["august", "seventh"]],
    "first_name": [["maria"], ["kenji"], ["lauderdale"]],
    "last_name": [["smith"], ["nakamura"]],
}
SLOT_TEMPLATES = [
    "i want a table for {people} at {time}",
    "book it for {date} please",
    "the reservation is under {first_name} {last_name}",
    "can we come {date} at {time} with {people}",
    "do you have a table by the window",
]
INTENT_TEMPLATES = {
    "book_table": ["i want a table for {people}", "can you book a table at {time}"],
    "cancel_reservation": ["cancel my booking for {date}", "please cancel the table under {first_name}"],
    "greeting": ["hello there", "good morning {first_name}"],
    "weather": ["will it rain {date}", "what is the weather at {time}"],
}


def _fill(template, index):
    """The words and BIO tags of a template, its slots filled with the values at `index` (cycling)."""
    tokens, tags = [], []
    for word in template.split():
        if word.startswith("{"):
            slot = word[1:-1]
            value = SLOT_VALUES[slot][index % len(SLOT_VALUES[slot])]
            tokens += value
            tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(value) - 1)
        else:
            tokens.append(word)
            tags.append("O")
    return tokens, tags


def slot_records(count, prefix, start=0):
    """`count` slot records {"tokens", "tags", "id"}: each template in turn, with values varying."""
    records = []
    for index in range(start, start + count):
        tokens, tags = _fill(SLOT_TEMPLATES[index % len(SLOT_TEMPLATES)], index // len(SLOT_TEMPLATES))
        records.append({"tokens": tokens, "tags": tags, "id": f"{prefix}-{index}"})
    return records


def intent_records(count, prefix, start=0):
    """`count` intent records {"text", "intent", "id"}, the intents in turn."""
    intents = sorted(INTENT_TEMPLATES)
    records = []
    for index in range(start, start + count):
        intent = intents[index % len(intents)]
        templates = INTENT_TEMPLATES[intent]
        tokens, _ = _fill(templates[index // len(intents) % len(templates)], index // len(intents))
        records.append({"text": " ".join(tokens), "intent": intent, "id": f"{prefix}-{index}"})
    return records


@pytest.fixture(scope="session")
def tiny_english_base(tmp_path_factory):
    """A 2-layer, hidden-64 BERT config and an uncased word-piece tokenizer: characters, plus the 40 most frequent
    words of the synthetic training utterances as whole tokens (the others are cut into characters)."""
    from make_tiny_model import make_tiny_model

    texts = [slot_records(60, "train"), intent_records(60, "train")]
    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny-english"), texts=texts, words=40))
