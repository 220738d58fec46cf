"""The rules of outputs.py, through the scripts that write files: no output lands on an input (a data file, anything
inside a model folder) or on another output of the run, all are checked before any model loads and land together or
not at all, names at the file system's limit work, JSON is strict, and a full disk gets one line and leaves nothing
partial (the export cache runs uncached instead)."""

import errno
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

import analysis
import exports
import inference
import run_qa
from cli import run_main
from conftest import SAMPLES, read_json, run_script, write_json
from outputs import OutputPlan, check_output_folder
from planted import save_choice_model, save_span_model

SMALL_TEST = read_json(SAMPLES / "test.json")[:6]
SMALL_VALID = read_json(SAMPLES / "valid.json")[:6]


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("output-models")
    return {"mc": save_choice_model(tiny_base, root / "mc", marker="標"),
            "qa": save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0})}  # fmt: skip


def argv(models, test, output, *extra):
    return ["--context_file", str(SAMPLES / "context.json"), "--test_file", str(test), "--output_file", str(output),
            "--mc_model", str(models["mc"]), "--qa_model", str(models["qa"]), *map(str, extra)]  # fmt: skip


def snapshot(*folders):
    """Every file under the folders, with its bytes (links followed), to compare before and after a run."""
    files = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[str(path)] = path.read_bytes()
    return files


def refused(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Loaded the" not in err  # refused before any model was loaded
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------------------------------
# No output lands on an input or on another output


@pytest.mark.parametrize("case", ["checkpoint config", "inside a model folder", "analysis over the CSV",
                                  "metrics over the analysis", "analysis under a file"])
def test_outputs_that_would_land_on_an_input_or_another_output_are_refused_before_any_model_loads(
    models, tmp_path, capsys, case
):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(models["mc"], checkpoints / "mc")
    shutil.copytree(models["qa"], checkpoints / "qa")
    local = {"mc": checkpoints / "mc", "qa": checkpoints / "qa"}
    valid = write_json(tmp_path / "valid.json", SMALL_VALID)
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    output, analysis_dir, message = {
        "checkpoint config": (local["mc"] / "config.json", None, f"is inside the model folder {local['mc']}"),
        "inside a model folder": (local["qa"] / "pred.csv", None, f"is inside the model folder {local['qa']}"),
        "analysis over the CSV": (folder / "summary.md", folder, f"the same file as the output {folder / 'summary.md'}"),
        # The CSV's companion pred.metrics.json is a link to where the analysis writes summary.md.
        "metrics over the analysis": (folder / "pred", folder, "the same file as the output"),
        "analysis under a file": (folder / "pred.csv", tmp_path / "a-file" / "analysis",
                                  f"cannot create the output folder ({tmp_path / 'a-file'} is a file)"),
    }[case]
    if case == "metrics over the analysis":
        (folder / "pred.metrics.json").symlink_to(folder / "summary.md")
    before = snapshot(tmp_path)
    extra = ["--analysis_dir", analysis_dir] if analysis_dir else []
    line = refused(lambda: inference.main(argv(local, valid, output, *extra)), capsys)
    assert message in line
    assert snapshot(tmp_path) == before


def test_a_failure_while_writing_leaves_no_output_at_all(models, tmp_path, monkeypatch, capsys):
    """The analysis fails to write (a full disk) after the CSV and metrics are complete: none of the three lands, and
    an old CSV stays as it was."""
    valid = write_json(tmp_path / "valid.json", SMALL_VALID)
    output = tmp_path / "out" / "pred.csv"
    output.parent.mkdir()
    output.write_text("id,answer\nold,kept\n", encoding="utf-8")
    writers = analysis.analysis_writers

    def full_disk_summary(*arguments):
        found = writers(*arguments)

        def summary(file):
            file.write("half a sum")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return {**found, "summary.md": summary}

    monkeypatch.setattr(analysis, "analysis_writers", full_disk_summary)
    with pytest.raises(SystemExit):
        run_main(lambda: inference.main(argv(models, valid, output, "--analysis_dir", tmp_path / "out" / "analysis")))
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'out' / 'analysis' / 'summary.md'}: cannot write (No space left on device)"
    )
    assert sorted(p.name for p in output.parent.iterdir()) == ["pred.csv"]  # no metrics, no analysis folder, no temps
    assert output.read_text(encoding="utf-8") == "id,answer\nold,kept\n"


def test_an_output_name_at_the_file_systems_limit_works_and_its_companion_is_named_if_too_long(models, tmp_path,
                                                                                                capsys):
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    valid = write_json(tmp_path / "valid.json", SMALL_VALID)
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = tmp_path / ("a" * (limit - 4) + ".csv")
    answers = inference.main(argv(models, test, longest))
    assert len(answers) == 6 and longest.read_text(encoding="utf-8").startswith("id,answer\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["test.json", "valid.json", longest.name])
    # Labelled questions also get <output>.metrics.json, 13 bytes longer than the file system allows.
    line = refused(lambda: inference.main(argv(models, valid, tmp_path / ("b" * (limit - 4) + ".csv"))), capsys)
    assert f"is {limit + 13} bytes, more than the {limit} bytes the file system allows" in line


def test_training_output_folders_that_would_write_over_what_the_run_reads_are_refused(tiny_base, tmp_path,
                                                                                      monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("context.json", "train.json"):
        shutil.copy(SAMPLES / name, data / name)
    model = tmp_path / "model"
    shutil.copytree(tiny_base, model)
    before = snapshot(tmp_path)
    for output_dir, message in [
        (model, f"--output_dir is the same folder as the model folder {model}"),
        (model / "finetuned", f"--output_dir is inside the model folder {model}"),
        (tmp_path, f"--output_dir is around the model folder {model}"),
        (data, f"--output_dir holds the input file {data / 'train.json'}"),
    ]:
        monkeypatch.setattr(sys, "argv", [
            "run_qa.py", "--model_name_or_path", str(model), "--from_scratch", "--context_file",
            str(data / "context.json"), "--train_file", str(data / "train.json"), "--do_train",
            "--output_dir", str(output_dir), "--report_to", "none"])  # fmt: skip
        with pytest.raises(SystemExit):
            run_main(run_qa.main)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: {output_dir}: ") and message in line, line
        assert snapshot(tmp_path) == before


def test_an_output_plan_refuses_two_outputs_that_are_one_file(tmp_path):
    plan = OutputPlan()
    plan.add(tmp_path / "a.csv")
    (tmp_path / "link.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(Exception, match="the same file as the output"):
        plan.add(tmp_path / "link.csv")
    with pytest.raises(Exception, match="is the same folder as the model folder"):
        check_output_folder(tmp_path, input_folders=[tmp_path])


# ---------------------------------------------------------------------------------------------------------------------
# Strict JSON


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_inference_writes_is_strict_even_when_an_ensemble_gives_a_span_probability_zero(tiny_base,
                                                                                                    tmp_path):
    """Two span models so sure of their own answers (logits of 1,000) that each gives the other's spans probability
    exp(-1000) = 0: the ensemble's log-probability of some spans is -inf, which errors.jsonl writes as null."""
    qa_a = save_span_model(tiny_base, tmp_path / "a", {"甲": 1000.0}, {"乙": 1000.0})
    qa_b = save_span_model(tiny_base, tmp_path / "b", {"丙": 1000.0}, {"丁": 1000.0})
    mc = save_choice_model(tiny_base, tmp_path / "mc", marker="標")
    context = write_json(tmp_path / "context.json", ["天甲地乙玄丙黃丁宇宙", "洪荒日月"])
    valid = write_json(tmp_path / "valid.json", [{"id": "q", "question": "問", "paragraphs": [0, 1], "relevant": 0,
                                                  "answer": {"text": "甲地乙", "start": 1}}])  # fmt: skip
    inference.main(["--context_file", str(context), "--test_file", str(valid), "--output_file",
                    str(tmp_path / "out" / "pred.csv"), "--mc_model", str(mc), "--qa_model", str(qa_a), str(qa_b),
                    "--analysis_dir", str(tmp_path / "out"), "--n_best_size", "5"])  # fmt: skip
    strict_json((tmp_path / "out" / "pred.csv.metrics.json").read_text(encoding="utf-8"))
    (record,) = [strict_json(line) for line in (tmp_path / "out" / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = [answer["score"] for answer in record["nbest"]]
    assert None in scores and any(isinstance(score, float) for score in scores)


def test_every_json_the_training_scripts_write_is_strict(tiny_base, tmp_path):
    output_dir = tmp_path / "span"
    run_script("run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
               SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--validation_file",
               SAMPLES / "valid.json", "--do_train", "--do_eval", "--max_train_samples", 8, "--max_eval_samples", 8,
               "--max_steps", 1, "--max_seq_length", 128, "--doc_stride", 32, "--max_question_length", 32,
               "--output_dir", output_dir, "--report_to", "none")  # fmt: skip
    ours = ["eval_predictions.json", "eval_nbest_predictions.json", "all_results.json", "eval_results.json",
            "train_results.json", "config.json"]
    for name in ours:
        strict_json((output_dir / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------------
# A full disk


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB file system (tmpfs), or a skip where none can be mounted (mounting needs root)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)  # the model loaded from it may be mapped


def fill(folder, leave=0):
    """Fills a file system but for `leave` bytes."""
    free = shutil.disk_usage(folder).free - leave
    with open(folder / "filler", "wb") as file:
        while free > 0:
            chunk = min(free, 2**20)
            try:
                file.write(b"\0" * chunk)
                file.flush()
            except OSError:
                break
            free -= chunk


@pytest.mark.parametrize("export", ["torchscript", "torch_export"])
def test_an_export_that_cannot_be_cached_runs_uncached_and_leaves_nothing_partial(models, tmp_path, monkeypatch,
                                                                                  caplog, export):
    """_write_beside fails midway, as on a full disk: the run goes on with the export in memory, and no cache file,
    partial or complete, is left to be trusted later."""
    qa = shutil.copytree(models["qa"], tmp_path / "qa")
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    reference = inference.main(argv(models, test, tmp_path / "eager.csv"))
    write = exports._write_beside

    def full_disk(path, data):
        write(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(exports, "_write_beside", full_disk)
    with caplog.at_level(logging.WARNING):
        answers = inference.main(argv({"mc": models["mc"], "qa": qa}, test, tmp_path / "pred.csv", "--export", export))
    assert answers == reference
    assert "Could not cache the export in" in caplog.text and "it runs uncached" in caplog.text
    monkeypatch.setattr(exports, "_write_beside", write)
    # The half-written file is not trusted: the next run exports again and caches.
    with caplog.at_level(logging.INFO):
        inference.main(argv({"mc": models["mc"], "qa": qa}, test, tmp_path / "again.csv", "--export", export))
    assert "Exported" in caplog.text


def test_a_real_full_disk_under_the_export_cache(models, tmp_path, small_disk, caplog):
    """torch's own file writer aborts the process on a full disk; the cache writes from memory instead."""
    qa = shutil.copytree(models["qa"], small_disk / "qa")
    test = write_json(tmp_path / "test.json", SMALL_TEST)
    fill(small_disk, leave=20_000)
    with caplog.at_level(logging.WARNING):
        inference.main(argv({"mc": models["mc"], "qa": qa}, test, tmp_path / "pred.csv", "--export", "torchscript"))
    assert "(No space left on device); it runs uncached" in caplog.text
    assert not [p for p in (qa / "exported").iterdir() if p.name.endswith((".pt", ".json", ".part"))]


def test_a_full_disk_while_training_saves_a_checkpoint_is_one_line(tiny_base, tmp_path, small_disk):
    output_dir = small_disk / "span"
    result = run_script("run_qa.py", "--model_name_or_path", tiny_base, "--from_scratch", "--context_file",
                        SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--do_train",
                        "--max_train_samples", 8, "--max_steps", 2, "--save_steps", 1, "--max_seq_length", 128,
                        "--doc_stride", 32, "--max_question_length", 32, "--output_dir", output_dir,
                        "--report_to", "none", check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert last.startswith(f"error: {output_dir}: cannot write (No space left on device)")
