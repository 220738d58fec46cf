"""download.sh in a fresh copy of the project, each test from an empty models/: the offline demo models, a failed
download, an archive missing a stage, and published .tar.gz and .zip archives whose weights must be the ones installed.

The demo models are trained once (`offline_download`, from an empty models/); the other tests that need them start
with models/ holding only that build, which download.sh links instead of training again.
"""

import csv
import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest
from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from conftest import ROOT, SAMPLES, read_json, run_script

STAGES = {"paragraph-selection": AutoModelForMultipleChoice, "span-selection": AutoModelForQuestionAnswering}


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


@pytest.fixture
def clone(fresh_clone):
    """The fresh clone with an empty models/, whatever an earlier test left there."""
    shutil.rmtree(fresh_clone / "models", ignore_errors=True)
    return fresh_clone


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


def assert_demo_models_installed(clone):
    for stage in STAGES:
        link = clone / "models" / stage
        assert link.is_symlink() and str(link.readlink()) == f"demo/{stage}"
        assert (link / "DEMO_MODEL.md").exists() and (link / "model.safetensors").exists()
        assert (link / "config.json").exists() and (link / "tokenizer.json").exists()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def offline_download(fresh_clone, tmp_path_factory):
    """download.sh without MODEL_SOURCE from an empty models/ (builds the demo models); returns its result and a copy
    of the demo models it built."""
    shutil.rmtree(fresh_clone / "models", ignore_errors=True)
    result = bash(fresh_clone, "download.sh")
    built = tmp_path_factory.mktemp("demo-build") / "demo"
    if (fresh_clone / "models" / "demo").is_dir():
        shutil.copytree(fresh_clone / "models" / "demo", built, symlinks=True)
    return result, built


def test_offline_download_installs_demo_models_that_run_end_to_end(offline_download, clone, tmp_path):
    result, built = offline_download
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "MODEL_SOURCE is not set, so there is nothing to download" in result.stdout
    assert "Building DEMO models" in result.stdout and "Installed DEMO models" in result.stdout
    shutil.copytree(built, clone / "models" / "demo", symlinks=True)
    again = bash(clone, "download.sh")
    assert again.returncode == 0 and "DEMO models are already built" in again.stdout
    assert "Building" not in again.stdout
    assert_demo_models_installed(clone)
    result = check_submission(clone, tmp_path)
    assert "is a DEMO model" in result.stderr


def make_checkpoints(tiny_base, root, stages=tuple(STAGES)):
    """Randomly initialised checkpoints of the given stages under root/, as a student would publish them."""
    config = AutoConfig.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    for stage in stages:
        STAGES[stage].from_config(config).save_pretrained(root / stage)
        tokenizer.save_pretrained(root / stage)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder served over HTTP on localhost; yields (folder, base URL)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_failed_downloads_fall_back_to_the_demo_models(offline_download, clone, tiny_base, served, tmp_path):
    # No models installed; the demo models already built (they are only linked, not trained again).
    shutil.copytree(offline_download[1], clone / "models" / "demo", symlinks=True)
    result = bash(clone, "download.sh", MODEL_SOURCE="http://127.0.0.1:9/models.tar.gz")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "could not download http://127.0.0.1:9/models.tar.gz (no network, or a wrong MODEL_SOURCE)" in result.stdout
    assert_demo_models_installed(clone)

    # An archive that downloads but lacks a stage installs nothing of it: the demo models stay.
    folder, url = served
    staging = make_checkpoints(tiny_base, tmp_path / "staging" / "my-models", stages=["paragraph-selection"])
    with tarfile.open(folder / "one-stage.tar.gz", "w:gz") as archive:
        archive.add(staging, arcname="my-models")
    result = bash(clone, "download.sh", MODEL_SOURCE=f"{url}/one-stage.tar.gz")
    assert result.returncode == 0
    assert f"{url}/one-stage.tar.gz has no span-selection/ folder with a config.json" in result.stderr
    assert "could not download" in result.stdout
    assert_demo_models_installed(clone)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_published_archive_installs_its_own_weights(clone, tiny_base, served, tmp_path, kind):
    folder, url = served
    staging = make_checkpoints(tiny_base, tmp_path / "staging" / "my-models")
    archive_path = folder / f"models-{kind}.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive_path, "w") as archive:
            for path in staging.rglob("*"):
                archive.write(path, "my-models/" + str(path.relative_to(staging)))
    else:
        with tarfile.open(archive_path, "w:gz") as archive:
            archive.add(staging, arcname="my-models")
    source = f"{url}/{archive_path.name}"

    result = bash(clone, "download.sh", MODEL_SOURCE=source)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"Installed models/paragraph-selection and models/span-selection from {source}" in result.stdout
    for stage in STAGES:
        installed = clone / "models" / stage
        assert installed.is_dir() and not installed.is_symlink() and not (installed / "DEMO_MODEL.md").exists()
        assert sha256(installed / "model.safetensors") == sha256(staging / stage / "model.safetensors")
    assert not (clone / "models" / "demo").exists()
    if kind == "tar.gz":
        result = check_submission(clone, tmp_path)
        assert "DEMO" not in result.stderr

    # Without a source (or without network), the real checkpoints stay; no demo replaces them.
    again = bash(clone, "download.sh")
    assert again.returncode == 0 and "Keeping the checkpoints already in models/" in again.stdout
    for stage in STAGES:
        assert sha256(clone / "models" / stage / "model.safetensors") == sha256(staging / stage / "model.safetensors")
