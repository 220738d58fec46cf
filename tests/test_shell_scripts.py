"""run.sh, train.sh and download.sh as shell scripts, in copies of the project: what they share (preflight.sh: the
project found through symlinks, the interpreter checked in one line), run.sh's arguments, and train.sh's flags after
`--`, its dry run of every stage before any training, and its reruns."""

import csv
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

from cli import InputError
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


# ---------------------------------------------------------------------------------------------------------------------
# train.sh: flags after --, the dry run of every stage, finished stages, blank values

QUICK = ["--max_steps", "1", "--eval_steps", "1", "--save_steps", "1", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The sample data, with 6 validation questions: quick evaluations."""
    data = tmp_path_factory.mktemp("data")
    for name in ("context.json", "train.json"):
        (data / name).write_bytes((SAMPLES / name).read_bytes())
    write_json(data / "valid.json", read_json(SAMPLES / "valid.json")[:6])
    return data


def train_sh(data_dir, tiny_base, output_root, *flags, **env):
    return run_script(ROOT / "train.sh", "--data_dir", data_dir, "--models", tiny_base, "--from_scratch",
                      "--max_train_samples", "8", "--output_root", output_root, *flags,
                      env={"PYTHON": sys.executable, **env}, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def trained(data_dir, tiny_base, tmp_path_factory):
    """train.sh of both stages with a span-selection flag after --, and a flag of each stage's own: (the run folder,
    train.sh's result)."""
    output_root = tmp_path_factory.mktemp("train-sh") / "outputs"
    result = train_sh(data_dir, tiny_base, output_root, "--paragraph_flags", "--max_question_length 40",
                      "--span_flags", "--max_seq_length 384", "--", *QUICK, "--doc_stride", "32")  # fmt: skip
    return output_root / f"{tiny_base.name}-scratch", result


def test_train_sh_gives_a_flag_after_dashdash_to_the_stages_that_take_it(trained, tiny_base, monkeypatch):
    runs, result = trained
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    paragraph = read_json(runs / "paragraph-selection" / "config.json")["trained_with"]
    span = read_json(runs / "span-selection" / "config.json")["trained_with"]
    assert paragraph == {"stage": "paragraph-selection", "max_seq_length": 512, "max_question_length": 40}
    assert span == {"stage": "span-selection", "max_seq_length": 384, "doc_stride": 32, "max_question_length": 96,
                    "context_mode": "relevant"}  # fmt: skip
    # Each stage's own hyperparameters (train.sh's set_stage), read back from the Trainer's saved arguments: the
    # batches of a question's 4 pairs against one window each, accumulated to 16 questions or windows alike.
    # (The scripts ran as __main__, so their argument classes are pickled as __main__'s.)
    import run_qa
    import run_swag

    for module in (run_swag, run_qa):
        for name in ("ParagraphSelectionTrainingArguments", "SpanSelectionTrainingArguments"):
            if hasattr(module, name):
                monkeypatch.setattr(sys.modules["__main__"], name, getattr(module, name), raising=False)
    saved = {stage: torch.load(runs / stage / "training_args.bin", weights_only=False)
             for stage in ("paragraph-selection", "span-selection")}  # fmt: skip
    assert [(args.per_device_train_batch_size, args.gradient_accumulation_steps, args.per_device_eval_batch_size)
            for args in saved.values()] == [(2, 8, 8), (8, 2, 32)]  # fmt: skip
    assert [args.learning_rate for args in saved.values()] == [3e-4, 3e-4]  # --from_scratch's rate, both stages
    for stage in ("paragraph-selection", "span-selection"):
        assert read_json(runs / stage / "trainer_state.json")["global_step"] == 1
    # Every stage is checked before the first one trains.
    lines = [line for line in result.stdout.splitlines() if line.startswith("=== ")]
    assert lines[:4] == [
        f"=== {tiny_base}: paragraph-selection checked (--dry_run)",
        f"=== {tiny_base}: span-selection checked (--dry_run)",
        f"=== {tiny_base}: paragraph-selection -> {runs}/paragraph-selection",
        f"=== {tiny_base}: span-selection -> {runs}/span-selection",
    ]


def test_train_sh_skips_finished_stages_and_still_draws_the_curves(trained, data_dir, tiny_base):
    runs, first = trained
    assert first.returncode == 0
    finished = {stage: (runs / stage / "train_results.json").read_bytes() for stage in ("paragraph-selection", "span-selection")}
    curves = runs.parent / "curves" / "span-selection" / "results.md"
    curves.unlink()
    result = train_sh(data_dir, tiny_base, runs.parent, "--paragraph_flags", "--max_question_length 40",
                      "--span_flags", "--max_seq_length 384", "--", *QUICK, "--doc_stride", "32")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for stage, content in finished.items():
        assert (runs / stage / "train_results.json").read_bytes() == content
        assert (f"=== {tiny_base}: {stage} has finished ({runs}/{stage}/train_results.json): skipped (delete that "
                "folder to train it again)") in result.stdout
    assert "checked (--dry_run)" not in result.stdout and " -> " + str(runs) not in result.stdout
    assert f"| {tiny_base.name}-scratch | 1 |" in curves.read_text(encoding="utf-8")


def test_train_sh_refuses_a_stage_that_cannot_run_before_any_training(data_dir, tiny_base, tmp_path):
    # 128 tokens leave span selection no room for train.sh's doc_stride 128: found before paragraph selection trains.
    result = train_sh(data_dir, tiny_base, tmp_path / "outputs", "--", *QUICK, "--max_seq_length", "128")
    assert result.returncode == 1
    assert stderr_lines(result) == [
        f"train.sh: {tiny_base}, span-selection: max_seq_length 128 leaves 29 tokens for the paragraph after a question "
        "of up to 96 tokens, which must be more than doc_stride 128: raise max_seq_length or lower "
        "max_question_length / doc_stride"
    ]
    assert not (tmp_path / "outputs").exists()


def test_train_sh_refuses_a_flag_that_no_stage_takes(data_dir, tiny_base, tmp_path):
    result = train_sh(data_dir, tiny_base, tmp_path / "outputs", "--", "--seed", "7", "--doc_strde", "32")
    assert result.returncode == 2
    assert stderr_lines(result)[0] == ("error: --doc_strde: no stage takes this flag (run_swag.py, run_qa.py; see "
                                       "python run_qa.py --help)")
    assert stderr_lines(result)[1].startswith("usage: bash train.sh")
    assert not (tmp_path / "outputs").exists()


def test_route_flags_gives_each_flag_with_its_values_to_the_scripts_that_take_it(capsys):
    import route_flags

    flags = ["--seed", "7", "--doc_stride=96", "--bf16", "--max_question_length", "40", "--report_to", "none"]
    assert route_flags.route_flags(["run_swag.py", "run_qa.py"], flags) == [
        ["--seed", "7", "--bf16", "--max_question_length", "40", "--report_to", "none"],
        flags,
    ]
    assert route_flags.flag_groups(["7", "--a", "1", "2", "--b"]) == [["7"], ["--a", "1", "2"], ["--b"]]
    with pytest.raises(InputError, match=r"^--doc_strde: no stage takes this flag \(run_swag.py, run_qa.py; "):
        route_flags.route_flags(["run_swag.py", "run_qa.py"], ["--doc_strde", "32"])
    route_flags.main(["run_swag.py", "run_qa.py", "--", "--doc_stride", "96", "--run_name", "a b"])
    assert capsys.readouterr().out == "--run_name 'a b'\n--doc_stride 96 --run_name 'a b'\n"
    for argv in (["--", "--seed", "7"], ["run_qa.py", "--seed", "7"], []):
        with pytest.raises(InputError, match="^usage: python route_flags.py SCRIPT"):
            route_flags.main(argv)


@pytest.mark.parametrize("flag,value,message", [
    ("--models", "", "--models is blank: give one model or more (Hub ids or local folders)"),
    ("--models", " \t", "--models is blank: give one model or more (Hub ids or local folders)"),
    ("--data_dir", "", "--data_dir is blank: give the folder that holds the data files"),
    ("--data_dir", "  ", "--data_dir is blank: give the folder that holds the data files"),
    ("--output_root", " ", "--output_root is blank: give the folder for the runs (default: outputs)"),
])  # fmt: skip
def test_train_sh_refuses_a_blank_value(flag, value, message, tmp_path):
    arguments = {"--data_dir": str(SAMPLES), "--models": "bert-base-chinese", "--output_root": str(tmp_path / "out")}
    arguments[flag] = value
    result = run_script(ROOT / "train.sh", *[word for pair in arguments.items() for word in pair], cwd=tmp_path,
                        env={"PYTHON": sys.executable}, check=False)  # fmt: skip
    assert result.returncode == 2
    assert stderr_lines(result)[0] == f"error: {message}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments,message", [
    (["--doc_stride", "96"], "unknown argument '--doc_stride' (Trainer flags go after --)"),
    (["--span_flags"], "--span_flags needs a value"),
])  # fmt: skip
def test_train_sh_refuses_an_unknown_argument_or_a_missing_value_before_anything_runs(arguments, message, tmp_path):
    """A Trainer flag before -- (it would be dropped, not passed on) and a flag without its value, as the last word."""
    result = run_script(ROOT / "train.sh", "--data_dir", str(SAMPLES), "--models", "bert-base-chinese",
                        "--output_root", str(tmp_path / "out"), *arguments, cwd=tmp_path,
                        env={"PYTHON": sys.executable}, check=False)  # fmt: skip
    assert result.returncode == 2
    assert stderr_lines(result)[0] == f"error: {message}"
    assert list(tmp_path.iterdir()) == []
