"""download.sh in a fresh copy of the project: the offline demo models, its rules for what models/ holds (a checkpoint
of the user's is never replaced; a source that cannot be fetched changes nothing), published .tar.gz and .zip archives
and Hub repositories whose weights must be the ones installed, and inference.json with the folders it names.

The demo models are trained once (`offline_download`, from an empty models/); the other tests that need them start
with models/ holding that build, which download.sh links instead of training again. Archives are served over HTTP
on localhost, Hub repositories by a small stand-in for the Hub's API (HF_ENDPOINT).
"""

import csv
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile

import pytest
from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from conftest import ROOT, SAMPLES, read_json, run_script, write_json

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


def test_offline_download_installs_demo_models_that_answer_the_test_set(offline_download, clone, tmp_path):
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
    """Randomly initialised checkpoints under root/, as a student would publish them: each of `stages` is a stage
    name, or (folder name, stage name) for another folder of that stage (an ensemble's second model)."""
    config = AutoConfig.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    for entry in stages:
        folder, stage = (entry, entry) if isinstance(entry, str) else entry
        STAGES[stage].from_config(config).save_pretrained(root / folder)
        tokenizer.save_pretrained(root / folder)
    return root


def snapshot(folder):
    """Every entry under folder, links not followed: {relative path: ("link", target), file bytes or "dir"}; None
    when there is no folder."""
    if not folder.exists() and not folder.is_symlink():
        return None
    entries = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            entries[name] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[name] = "dir"
        else:
            entries[name] = path.read_bytes()
    return entries


def stderr_lines(result):
    return result.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder served over HTTP on localhost; yields (folder, base URL)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def publish(served, name, staging, kind="tar.gz"):
    """staging/'s content as the archive `name` on the server, wrapped in one folder as `tar -C` users often do;
    returns its URL."""
    folder, url = served
    if kind == "zip":
        with zipfile.ZipFile(folder / name, "w") as archive:
            for path in staging.rglob("*"):
                archive.write(path, "my-models/" + str(path.relative_to(staging)))
    else:
        with tarfile.open(folder / name, "w:gz") as archive:
            archive.add(staging, arcname="my-models")
    return f"{url}/{name}"


def with_demo_build(clone, offline_download):
    """models/ holding only the demo models already built (download.sh links them instead of training)."""
    shutil.copytree(offline_download[1], clone / "models" / "demo", symlinks=True)


# ---------------------------------------------------------------------------------------------------------------------
# A source that cannot be fetched, or lacks what it must have: one line, models/ exactly as it was


@pytest.fixture(scope="module")
def unusable_sources(tiny_base, served, tmp_path_factory):
    """{what is wrong: (MODEL_SOURCE, the line download.sh must print)}."""
    root = tmp_path_factory.mktemp("unusable")
    one_stage = publish(served, "one-stage.tar.gz", make_checkpoints(tiny_base, root / "one", ["paragraph-selection"]))
    (served[0] / "page.tar.gz").write_text("<html>a file host's download page</html>")
    missing = make_checkpoints(tiny_base, root / "missing")
    write_json(missing / "inference.json", {"mc_model": ["paragraph-selection", "seed2"]})
    malformed = make_checkpoints(tiny_base, root / "malformed")
    write_json(malformed / "inference.json", {"qa_model": "span-selection"})
    url = served[1]
    return {
        "unreachable": ("http://127.0.0.1:9/models.tar.gz", "download.sh: could not download "
                        "http://127.0.0.1:9/models.tar.gz (no network, or a wrong MODEL_SOURCE): curl: (7) Failed to "
                        "connect to 127.0.0.1 port 9"),
        "not found": (f"{url}/nothing.tar.gz", f"download.sh: could not download {url}/nothing.tar.gz (no network, "
                      "or a wrong MODEL_SOURCE): curl: (22) The requested URL returned error: 404"),
        "hub offline": ("someone/adl-hw1-qa", "download.sh: could not download someone/adl-hw1-qa from the Hugging "
                        "Face Hub (HF_HUB_OFFLINE=1 forbids it): LocalEntryNotFoundError: "),
        "a stage missing": (one_stage, f"download.sh: {one_stage} has no span-selection/ folder with a config.json"),
        "not an archive": (f"{url}/page.tar.gz", f"download.sh: {url}/page.tar.gz is not a .tar.gz or .zip archive: "
                           "tar: This does not look like a tar archive"),
        "a folder inference.json names missing": (
            publish(served, "missing.tar.gz", missing),
            f"download.sh: {url}/missing.tar.gz has no seed2/ folder with a config.json, which its inference.json names"),
        "malformed inference.json": (
            publish(served, "malformed.tar.gz", malformed),
            f"download.sh: {url}/malformed.tar.gz: inference.json: 'qa_model': expected a non-empty list of folder "
            f"names in {url}/malformed.tar.gz"),
    }  # fmt: skip


@pytest.mark.parametrize("problem", ["unreachable", "not found", "hub offline", "a stage missing", "not an archive",
                                     "a folder inference.json names missing", "malformed inference.json"])
def test_a_source_that_cannot_be_used_changes_nothing(problem, unusable_sources, offline_download, clone, tiny_base):
    source, message = unusable_sources[problem]
    # No models/ at all (a fresh clone) ...
    result = bash(clone, "download.sh", MODEL_SOURCE=source)
    assert result.returncode == 1
    assert len(stderr_lines(result)) == 1 and stderr_lines(result)[0].startswith(message), result.stderr
    assert not (clone / "models").exists()
    # ... or what a download may replace: demo links, a folder installed by an earlier download.
    with_demo_build(clone, offline_download)
    (clone / "models" / "paragraph-selection").symlink_to("demo/paragraph-selection")
    make_checkpoints(tiny_base, clone / "models", ["span-selection"])
    (clone / "models" / "span-selection" / "INSTALLED_BY_DOWNLOAD_SH").write_text("an earlier download\n")
    before = snapshot(clone / "models")
    result = bash(clone, "download.sh", MODEL_SOURCE=source)
    assert result.returncode == 1
    assert len(stderr_lines(result)) == 1 and stderr_lines(result)[0].startswith(message), result.stderr
    assert snapshot(clone / "models") == before


# ---------------------------------------------------------------------------------------------------------------------
# Without MODEL_SOURCE: the user's checkpoints are kept, demo models only for stages missing or already demo


def set_up(models, tiny_base, elsewhere, layout):
    """models/ as a user may have left it: {stage: "real", "demo", "partial", "file" or "link"}."""
    for stage, kind in layout.items():
        if kind == "real":
            make_checkpoints(tiny_base, models, [stage])
        elif kind == "demo":
            (models / stage).symlink_to(f"demo/{stage}")
        elif kind == "partial":  # weights and notes, no config.json
            (models / stage).mkdir()
            (models / stage / "model.safetensors").write_bytes(b"half of a checkpoint")
            (models / stage / "NOTES.md").write_text("copying the rest tomorrow\n")
        elif kind == "file":
            (models / stage).write_text("not a checkpoint\n")
        elif kind == "link":  # to the user's checkpoint elsewhere
            make_checkpoints(tiny_base, elsewhere, [stage])
            (models / stage).symlink_to(elsewhere / stage)


@pytest.mark.parametrize("layout,demo_stage", [
    ({"paragraph-selection": "real"}, "span-selection"),
    ({"paragraph-selection": "demo", "span-selection": "real"}, "paragraph-selection"),
    ({"paragraph-selection": "link"}, "span-selection"),
])  # fmt: skip
def test_without_a_source_the_users_checkpoints_stay_and_the_missing_stage_is_a_demo(
    layout, demo_stage, offline_download, clone, tiny_base, tmp_path
):
    with_demo_build(clone, offline_download)
    set_up(clone / "models", tiny_base, tmp_path / "elsewhere", layout)
    kept = next(stage for stage in STAGES if stage != demo_stage)
    before, elsewhere = snapshot(clone / "models" / kept), snapshot(tmp_path / "elsewhere")
    link = os.readlink(clone / "models" / kept) if (clone / "models" / kept).is_symlink() else None

    result = bash(clone, "download.sh")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Keeping the checkpoints already in models/: models/{kept}" in result.stdout
    assert "DEMO models are already built" in result.stdout
    assert (f"Installed DEMO models: models/{demo_stage} -> demo/{demo_stage} (answers close to random: set "
            "MODEL_SOURCE to install yours)") in result.stdout
    assert snapshot(clone / "models" / kept) == before and snapshot(tmp_path / "elsewhere") == elsewhere
    assert (os.readlink(clone / "models" / kept) if link else None) == link
    assert os.readlink(clone / "models" / demo_stage) == f"demo/{demo_stage}"
    assert (clone / "models" / demo_stage / "DEMO_MODEL.md").exists()
    assert sorted(p.name for p in (clone / "models").iterdir()) == ["demo", *sorted(STAGES)]


@pytest.mark.parametrize("layout,message", [
    ({"paragraph-selection": "partial", "span-selection": "real"},
     "download.sh: models/paragraph-selection has no config.json, so it is not a complete checkpoint: complete it or "
     "move it away (download.sh never changes your files)"),
    ({"paragraph-selection": "file"},
     "download.sh: models/paragraph-selection is a file, not a checkpoint folder: move it away (download.sh never "
     "changes your files)"),
])  # fmt: skip
def test_without_a_source_a_stage_of_the_users_that_is_not_a_checkpoint_is_refused(
    layout, message, offline_download, clone, tiny_base, tmp_path
):
    with_demo_build(clone, offline_download)
    set_up(clone / "models", tiny_base, tmp_path / "elsewhere", layout)
    before = snapshot(clone / "models")
    result = bash(clone, "download.sh")
    assert result.returncode == 1
    assert stderr_lines(result) == [message]
    assert snapshot(clone / "models") == before


def test_offline_download_keeps_the_checkpoints_of_a_download_through_a_link_elsewhere(clone, tiny_base, tmp_path):
    make_checkpoints(tiny_base, clone / "models")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "download.sh").symlink_to(clone / "download.sh")
    before = snapshot(clone / "models")
    result = run_script(tmp_path / "elsewhere" / "download.sh", cwd=tmp_path / "elsewhere", check=False,
                        env={"PYTHON": sys.executable, "MODEL_SOURCE": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("Keeping the checkpoints already in models/: models/paragraph-selection, models/span-selection"
            in result.stdout)
    assert snapshot(clone / "models") == before
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["download.sh"]


# ---------------------------------------------------------------------------------------------------------------------
# Published archives


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_published_archive_installs_its_own_weights(clone, tiny_base, served, tmp_path, kind):
    staging = make_checkpoints(tiny_base, tmp_path / "staging" / "my-models")
    source = publish(served, f"models-{kind}.{kind}", staging, kind)

    result = bash(clone, "download.sh", MODEL_SOURCE=source)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"Installed from {source}: models/paragraph-selection, models/span-selection" in result.stdout
    for stage in STAGES:
        installed = clone / "models" / stage
        assert installed.is_dir() and not installed.is_symlink() and not (installed / "DEMO_MODEL.md").exists()
        assert sha256(installed / "model.safetensors") == sha256(staging / stage / "model.safetensors")
        assert (installed / "INSTALLED_BY_DOWNLOAD_SH").read_text() == (
            f"Installed by download.sh from MODEL_SOURCE={source}; a later download.sh may replace this folder.\n")
    assert sorted(p.name for p in (clone / "models").iterdir()) == sorted(STAGES)  # no temporary folder left
    if kind == "tar.gz":
        result = check_submission(clone, tmp_path)
        assert "DEMO" not in result.stderr

    # Without a source, the installed checkpoints stay; no demo replaces them.
    again = bash(clone, "download.sh")
    assert again.returncode == 0
    assert "Keeping the checkpoints already in models/: models/paragraph-selection, models/span-selection" in again.stdout
    for stage in STAGES:
        assert sha256(clone / "models" / stage / "model.safetensors") == sha256(staging / stage / "model.safetensors")


def test_a_later_download_replaces_what_download_sh_installed_and_the_demo_links(
    offline_download, clone, tiny_base, served, tmp_path
):
    with_demo_build(clone, offline_download)
    (clone / "models" / "paragraph-selection").symlink_to("demo/paragraph-selection")
    first = publish(served, "first.tar.gz", make_checkpoints(tiny_base, tmp_path / "first"))
    assert bash(clone, "download.sh", MODEL_SOURCE=first).returncode == 0
    assert not (clone / "models" / "demo").exists()  # no stage links to the demo build any more

    second_staging = make_checkpoints(tiny_base, tmp_path / "second")
    second = publish(served, "second.tar.gz", second_staging)
    result = bash(clone, "download.sh", MODEL_SOURCE=second)
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in STAGES:
        installed = clone / "models" / stage
        assert sha256(installed / "model.safetensors") == sha256(second_staging / stage / "model.safetensors")
        assert second in (installed / "INSTALLED_BY_DOWNLOAD_SH").read_text()


@pytest.mark.parametrize("users", ["paragraph-selection", "inference.json"])
def test_a_download_never_replaces_the_users_own_files(users, clone, tiny_base, served, tmp_path):
    source = publish(served, "both.tar.gz", make_checkpoints(tiny_base, tmp_path / "published"))
    if users == "inference.json":
        (clone / "models").mkdir()
        write_json(clone / "models" / "inference.json", {"top_k_paragraphs": 3})
        message = (f"download.sh: models/inference.json is yours (not installed by download.sh) and would decide what "
                   f"run.sh runs instead of {source}: move it away, then run download.sh again")
    else:
        make_checkpoints(tiny_base, clone / "models", ["paragraph-selection"])
        message = (f"download.sh: models/paragraph-selection is yours (not installed by download.sh) and {source} "
                   "would replace it: move it away, then run download.sh again")
    before = snapshot(clone / "models")
    result = bash(clone, "download.sh", MODEL_SOURCE=source)
    assert result.returncode == 1
    assert stderr_lines(result) == [message]
    assert snapshot(clone / "models") == before


# ---------------------------------------------------------------------------------------------------------------------
# inference.json: what run.sh runs travels with models/

ENSEMBLE = {"mc_model": ["paragraph-selection", "paragraph-selection-seed2"], "qa_model": ["span-selection"],
            "top_k_paragraphs": 2}
ENSEMBLE_FOLDERS = ["paragraph-selection", ("paragraph-selection-seed2", "paragraph-selection"), "span-selection"]


def published_ensemble(tiny_base, root):
    """Checkpoints of a two-model paragraph-selection ensemble with joint decoding, and its inference.json."""
    make_checkpoints(tiny_base, root, ENSEMBLE_FOLDERS)
    write_json(root / "inference.json", ENSEMBLE)
    return root


def assert_ensemble_installed(clone, published, source, result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (f"Installed from {source}: models/paragraph-selection, models/paragraph-selection-seed2, "
            "models/span-selection, models/inference.json") in result.stdout
    models = clone / "models"
    assert sorted(p.name for p in models.iterdir()) == ["INSTALLED_BY_DOWNLOAD_SH", "inference.json",
                                                        "paragraph-selection", "paragraph-selection-seed2",
                                                        "span-selection"]
    assert (models / "inference.json").read_bytes() == (published / "inference.json").read_bytes()
    for folder in ("paragraph-selection", "paragraph-selection-seed2", "span-selection"):
        assert sha256(models / folder / "model.safetensors") == sha256(published / folder / "model.safetensors")
        assert not list((models / folder).glob("checkpoint-*"))


def test_an_archive_with_inference_json_installs_the_ensemble_that_run_sh_then_runs(
    clone, tiny_base, served, tmp_path
):
    published = published_ensemble(tiny_base, tmp_path / "published")
    source = publish(served, "ensemble.tar.gz", published)
    assert_ensemble_installed(clone, published, source, bash(clone, "download.sh", MODEL_SOURCE=source))

    result = check_submission(clone, tmp_path)
    assert (f"Running what {clone}/models/inference.json says: {{'mc_model': ['paragraph-selection', "
            "'paragraph-selection-seed2'], 'qa_model': ['span-selection'], 'top_k_paragraphs': 2}") in result.stderr
    assert f"Loaded the paragraph-selection model from {clone}/models/paragraph-selection-seed2" in result.stderr

    # A later source without inference.json: the installed one goes, run.sh runs the two stages again.
    plain = publish(served, "plain.tar.gz", make_checkpoints(tiny_base, tmp_path / "plain"))
    result = bash(clone, "download.sh", MODEL_SOURCE=plain)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (clone / "models" / "inference.json").exists()
    assert not (clone / "models" / "INSTALLED_BY_DOWNLOAD_SH").exists()
    assert ("models/paragraph-selection-seed2, installed by an earlier download, is no longer used: delete it to "
            "free the space") in result.stdout
    assert "Running what" not in check_submission(clone, tmp_path).stderr


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The part of the Hugging Face Hub's API that huggingface_hub's hf_hub_download and snapshot_download use, for
    repositories stored as folders under `root` (root/OWNER/NAME/files), at one fixed commit."""

    root = None
    commit = "0123456789abcdef0123456789abcdef01234567"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo = self.root.joinpath(*(parts[2:4] if api else parts[:2]))
        if not repo.is_dir():
            return self.reply(404, b"Repository not found", [("X-Error-Code", "RepoNotFound")])
        files = sorted(p for p in repo.rglob("*") if p.is_file())
        if api and parts[4] == "revision":  # repo_info
            body = {"id": "/".join(parts[2:4]), "sha": self.commit,
                    "siblings": [{"rfilename": str(p.relative_to(repo))} for p in files]}
        elif api:  # the tree of the commit
            body = [{"type": "file", "path": str(p.relative_to(repo)), "size": p.stat().st_size,
                     "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files]
        else:  # OWNER/NAME/resolve/REVISION/PATH: a file
            path = repo.joinpath(*parts[4:])
            if not path.is_file():
                return self.reply(404, b"Entry not found", [("X-Error-Code", "EntryNotFound"),
                                                            ("X-Repo-Commit", self.commit)])
            data = path.read_bytes()
            return self.reply(200, data, [("X-Repo-Commit", self.commit),
                                          ("ETag", f'"{hashlib.sha1(data).hexdigest()}"')])
        self.reply(200, json.dumps(body).encode(), [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(folder of the repositories, HF_ENDPOINT)."""
    root = tmp_path_factory.mktemp("hub")
    handler = type("Hub", (FakeHub,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_hub_repository_with_inference_json_installs_the_folders_it_names(clone, tiny_base, hub, tmp_path):
    root, endpoint = hub
    published = published_ensemble(tiny_base, root / "someone" / "ensemble")
    checkpoint = published / "paragraph-selection" / "checkpoint-500"
    checkpoint.mkdir()
    (checkpoint / "optimizer.pt").write_bytes(b"training state, not needed by run.sh")
    make_checkpoints(tiny_base, published, [("unrelated-experiment", "span-selection")])
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home")}

    result = bash(clone, "download.sh", MODEL_SOURCE="someone/ensemble", **env)
    assert_ensemble_installed(clone, published, "someone/ensemble", result)

    # No inference.json: the two stages. A repository that does not exist: one line, nothing changed.
    make_checkpoints(tiny_base, root / "someone" / "plain")
    result = bash(clone, "download.sh", MODEL_SOURCE="someone/plain", **env)
    assert result.returncode == 0 and "Installed from someone/plain: models/paragraph-selection, models/span-selection" in result.stdout
    assert not (clone / "models" / "inference.json").exists()
    before = snapshot(clone / "models")
    result = bash(clone, "download.sh", MODEL_SOURCE="someone/nothing", **env)
    assert result.returncode == 1 and len(stderr_lines(result)) == 1
    assert stderr_lines(result)[0].startswith("download.sh: could not download someone/nothing from the Hugging Face "
                                              "Hub (no network, or a wrong MODEL_SOURCE): RepositoryNotFoundError: ")
    assert snapshot(clone / "models") == before
