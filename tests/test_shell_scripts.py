"""run.sh, train.sh and download.sh as shell scripts, in copies of the project: what they share (preflight.sh: the
project found through symlinks, the interpreter checked in one line) and run.sh's arguments."""

import csv
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

from conftest import ROOT, SAMPLES, read_json, run_script, save_random_models, write_json

SCRIPTS = ["run.sh", "train.sh", "download.sh"]


def copy_project(destination):
    """The project's tracked files (what `git ls-files` lists: a fresh clone holds them) copied to destination."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            (destination / name).write_bytes((ROOT / name).read_bytes())
    return destination


def stderr_lines(result):
    return result.stderr.strip().splitlines()


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


@pytest.fixture(scope="module")
def project(tiny_base, tmp_path_factory):
    """A copy of the project with random-weight checkpoints of both stages in models/ (the user's own)."""
    copy = copy_project(tmp_path_factory.mktemp("project") / "project")
    torch.manual_seed(0)
    save_random_models(tiny_base, [(copy / "models" / "paragraph-selection", AutoModelForMultipleChoice),
                                   (copy / "models" / "span-selection", AutoModelForQuestionAnswering)])
    return copy


@pytest.fixture(scope="module")
def small_test(tmp_path_factory):
    return write_json(tmp_path_factory.mktemp("small") / "test.json", read_json(SAMPLES / "test.json")[:4])


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A virtual environment without numpy, torch or transformers."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def bash(script, *args, cwd, **env):
    return run_script(script, *args, cwd=cwd, env={"PYTHON": sys.executable, "MODEL_SOURCE": "", **env}, check=False)


# ---------------------------------------------------------------------------------------------------------------------
# run.sh's arguments


def test_run_sh_through_a_symlink_runs_the_project(project, small_test, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.sh").symlink_to(project / "run.sh")
    result = bash(elsewhere / "run.sh", SAMPLES / "context.json", small_test, "pred.csv", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row[0] for row in read_csv(elsewhere / "pred.csv")] == ["id"] + [q["id"] for q in read_json(small_test)]
    assert f"Loaded the paragraph-selection model from {project}/models/paragraph-selection" in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["pred.csv", "run.sh"]


def test_run_sh_takes_paths_that_start_with_a_dash(project, small_test, tmp_path):
    (tmp_path / "-context.json").write_bytes((SAMPLES / "context.json").read_bytes())
    (tmp_path / "-test.json").write_bytes(small_test.read_bytes())
    result = bash(project / "run.sh", "-context.json", "-test.json", "-pred.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row[0] for row in read_csv(tmp_path / "-pred.csv")] == ["id"] + [q["id"] for q in read_json(small_test)]


@pytest.mark.parametrize("position,name", [(1, "CONTEXT_JSON"), (2, "TEST_JSON"), (3, "OUTPUT_CSV")])
def test_run_sh_refuses_an_empty_argument_before_anything_runs(project, small_test, tmp_path, position, name):
    arguments = [str(SAMPLES / "context.json"), str(small_test), str(tmp_path / "pred.csv")]
    arguments[position - 1] = ""
    result = bash(project / "run.sh", *arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert stderr_lines(result) == [f"run.sh: {name} (argument {position}) is empty"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------------
# preflight.sh: the interpreter, and the project through symlinks


def preflight_arguments(script, tmp_path):
    """Arguments under which each script would otherwise get to work (demo models to build, for download.sh)."""
    return {
        "run.sh": [SAMPLES / "context.json", SAMPLES / "test.json", tmp_path / "pred.csv"],
        "train.sh": ["--data_dir", SAMPLES, "--models", "bert-base-chinese", "--output_root", tmp_path / "outputs"],
        "download.sh": [],
    }[script]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("interpreter", ["bare", "missing"])
def test_an_interpreter_without_the_requirements_is_named_in_one_line(script, interpreter, bare_python, tmp_path):
    project = copy_project(tmp_path / "project")
    python = bare_python if interpreter == "bare" else tmp_path / "no-such-python"
    result = bash(project / script, *preflight_arguments(script, tmp_path), cwd=tmp_path, PYTHON=str(python))
    assert result.returncode == 1
    if interpreter == "bare":
        message = f"{python} cannot import numpy, torch, transformers: install requirements.txt (README.md, Install)"
    else:
        message = f"{python}: no such interpreter (set PYTHON, or make .venv as README.md says)"
    assert stderr_lines(result) == [f"{script}: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no pred.csv, no outputs/
    assert not (project / "models").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_uses_the_project_venv_found_through_a_symlink(script, bare_python, tmp_path):
    """Without PYTHON, the project's .venv/bin/python, even when the script is called through a link elsewhere."""
    project = copy_project(tmp_path / "project")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / script).symlink_to(project / script)
    result = bash(elsewhere / script, *preflight_arguments(script, tmp_path), cwd=elsewhere, PYTHON="")
    assert result.returncode == 1
    assert stderr_lines(result) == [f"{script}: {project}/.venv/bin/python cannot import numpy, torch, transformers: "
                                    "install requirements.txt (README.md, Install)"]
    assert sorted(p.name for p in elsewhere.iterdir()) == [script]
