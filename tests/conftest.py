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
