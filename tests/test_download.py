"""download.sh in a fresh copy of the project: offline demo models, then a published archive, each followed by run.sh."""

import csv
import functools
import http.server
import subprocess
import sys
import tarfile
import threading

import pytest
from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from conftest import ROOT, SAMPLES, read_json, run_script


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """The committed files of the project, as `git clone` gives them, without models/ or a virtual environment."""
    clone = tmp_path_factory.mktemp("fresh") / "project"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    # Run the working tree's files, committed or not, so the test checks the code under test.
    for name in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split():
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((ROOT / name).read_bytes())
    return clone


def bash(clone, script, *args, **env):
    return run_script(clone / script, *args, cwd=clone, env={"PYTHON": sys.executable, "MODEL_SOURCE": "", **env},
                      check=False, timeout=900)


def check_submission(clone, tmp_path):
    output = tmp_path / "pred.csv"
    result = bash(clone, "run.sh", SAMPLES / "context.json", SAMPLES / "test.json", output)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(output, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert [row[0] for row in rows[1:]] == [q["id"] for q in read_json(SAMPLES / "test.json")]
    return result


def test_offline_download_installs_demo_models_that_run_end_to_end(fresh_clone, tmp_path):
    result = bash(fresh_clone, "download.sh")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "MODEL_SOURCE is not set, so there is nothing to download" in result.stdout
    assert "Installed DEMO models" in result.stdout
    for stage in ("paragraph-selection", "span-selection"):
        link = fresh_clone / "models" / stage
        assert link.is_symlink() and str(link.readlink()) == f"demo/{stage}"
        assert (link / "DEMO_MODEL.md").exists() and (link / "model.safetensors").exists()
    result = check_submission(fresh_clone, tmp_path)
    assert "is a DEMO model" in result.stderr

    again = bash(fresh_clone, "download.sh")
    assert again.returncode == 0 and "DEMO models are already installed" in again.stdout


def test_unreachable_source_says_so_and_falls_back_to_the_demo_models(fresh_clone):
    result = bash(fresh_clone, "download.sh", MODEL_SOURCE="http://127.0.0.1:9/models.tar.gz")
    assert result.returncode == 0
    assert "could not download http://127.0.0.1:9/models.tar.gz (no network, or a wrong MODEL_SOURCE)" in result.stdout
    assert (fresh_clone / "models" / "paragraph-selection" / "DEMO_MODEL.md").exists()


@pytest.fixture
def published_archive(tiny_base, tmp_path):
    """A .tar.gz of two checkpoints, as a student would publish it, served over HTTP on localhost."""
    config = AutoConfig.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    staging = tmp_path / "staging" / "my-models"
    for stage, model_class in [("paragraph-selection", AutoModelForMultipleChoice),
                               ("span-selection", AutoModelForQuestionAnswering)]:
        model_class.from_config(config).save_pretrained(staging / stage)
        tokenizer.save_pretrained(staging / stage)
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "models.tar.gz", "w:gz") as archive:
        archive.add(staging, arcname="my-models")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models.tar.gz"
    server.shutdown()


def test_published_archive_replaces_the_demo_models(fresh_clone, published_archive, tmp_path):
    result = bash(fresh_clone, "download.sh", MODEL_SOURCE=published_archive)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"Installed models/paragraph-selection and models/span-selection from {published_archive}" in result.stdout
    for stage in ("paragraph-selection", "span-selection"):
        installed = fresh_clone / "models" / stage
        assert installed.is_dir() and not installed.is_symlink() and not (installed / "DEMO_MODEL.md").exists()
    assert not (fresh_clone / "models" / "demo").exists()
    result = check_submission(fresh_clone, tmp_path)
    assert "DEMO" not in result.stderr

    # Without a source (or without network), the real checkpoints stay; no demo replaces them.
    again = bash(fresh_clone, "download.sh")
    assert again.returncode == 0 and "Keeping the checkpoints already in models/" in again.stdout
    assert not (fresh_clone / "models" / "paragraph-selection").is_symlink()
