"""plot_curves.py on synthetic trainer_state.json files: which figures, legends, labels, the results table, warnings,
errors, and the choice of a font that can draw run names in Chinese."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from matplotlib import font_manager

from conftest import ROOT, write_json

import fonts
import plot_curves
from cli import InputError, run_main

DEJAVU_SANS = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
# matplotlib's own fallback: its character map has every character of Unicode, each drawn as its block's box.
LAST_RESORT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "LastResortHE-Regular.ttf"


def span_selection_history(points=10, every=10, exact_match_start=20.0):
    """Like run_qa.py with --logging_steps/--eval_steps `every`: loss, then EM/F1/eval loss, at each step."""
    history = []
    for index in range(1, points + 1):
        step = index * every
        history.append({"epoch": step / 100, "grad_norm": 1.0, "learning_rate": 3e-5, "loss": 5.0 - 0.4 * index,
                        "step": step})
        history.append({"epoch": step / 100, "eval_exact_match": exact_match_start + 5 * index,
                        "eval_f1": exact_match_start + 8 * index, "eval_loss": 4.0 - 0.2 * index,
                        "eval_runtime": 1.5, "step": step})
    history.append({"epoch": points * every / 100, "step": points * every, "train_loss": 3.1, "train_runtime": 3723.4,
                    "train_samples_per_second": 10.0, "total_flos": 1e12})
    return history


def paragraph_selection_history(points=10, every=5):
    """Like run_swag.py: accuracy in [0, 1]."""
    history = []
    for index in range(1, points + 1):
        step = index * every
        history.append({"loss": 1.4 - 0.1 * index, "step": step})
        history.append({"eval_accuracy": 0.25 + 0.05 * index, "eval_loss": 1.38 - 0.05 * index, "step": step})
    history.append({"step": points * every, "train_loss": 0.9, "train_runtime": 61.0})
    return history


def make_run(directory, history, global_step=None):
    directory.mkdir(parents=True, exist_ok=True)
    steps = [entry["step"] for entry in history]
    write_json(directory / "trainer_state.json",
               {"global_step": global_step or max(steps), "log_history": history, "best_metric": None})
    return directory


def load(directory, name=None):
    return plot_curves.load_run(directory, name or directory.name)


@pytest.fixture
def span_runs(tmp_path):
    return [
        load(make_run(tmp_path / "bert", span_selection_history()), "bert-base-chinese"),
        load(make_run(tmp_path / "macbert", span_selection_history(points=12, exact_match_start=30.0)), "macbert"),
    ]


# --- Figures ------------------------------------------------------------------------------------------------------


def test_span_selection_runs_get_loss_exact_match_and_f1_figures_with_a_legend_of_run_names(span_runs):
    figures = plot_curves.make_figures(span_runs)
    assert list(figures) == ["loss.png", "exact_match.png", "f1.png"]
    for filename, figure in figures.items():
        assert plot_curves.legend_labels(figure) == [["bert-base-chinese", "macbert"]] * len(figure.axes)
        assert figure.get_suptitle()
        for axes in figure.axes:
            assert axes.get_xlabel() == "training step" and axes.get_ylabel()
    assert [axes.get_title() for axes in figures["loss.png"].axes] == ["Training loss", "Evaluation loss"]
    assert figures["exact_match.png"].axes[0].get_ylabel() == "exact match (%)"
    assert figures["f1.png"].axes[0].get_ylabel() == "F1 (%)"
    macbert_line = figures["exact_match.png"].axes[0].get_lines()[1]
    assert list(macbert_line.get_xdata()) == list(range(10, 130, 10))
    assert macbert_line.get_ydata()[-1] == pytest.approx(90.0)


def test_run_names_with_dollar_signs_are_drawn_as_written_not_as_mathtext(tmp_path):
    # As mathtext, "a$b$c" and "cost $5 and $6" would lose their $ and put b and "5 and " in italics; \undefined fails.
    names = ["a$b$c", "cost $5 and $6", r"lr $\undefined$"]
    run_dirs = [make_run(tmp_path / str(index), span_selection_history(points=5)) for index in range(3)]
    runs = [load(run_dir, name) for run_dir, name in zip(run_dirs, names)]
    for figure in plot_curves.make_figures(runs).values():
        for axes in figure.axes:
            texts = axes.get_legend().get_texts()
            assert [text.get_text() for text in texts] == names
            assert [text.get_parse_math() for text in texts] == [False] * 3
    plot_curves.main([*map(str, run_dirs), "--names", *names, "--output_dir", str(tmp_path / "out")])
    assert (tmp_path / "out" / "f1.png").read_bytes().startswith(b"\x89PNG")


def test_paragraph_selection_runs_get_accuracy_in_percent(tmp_path):
    runs = [load(make_run(tmp_path / "swag", paragraph_selection_history()))]
    figures = plot_curves.make_figures(runs)
    assert list(figures) == ["loss.png", "accuracy.png"]
    axes = figures["accuracy.png"].axes[0]
    assert axes.get_ylabel() == "accuracy (%)" and plot_curves.legend_labels(figures["accuracy.png"]) == [["swag"]]
    assert axes.get_lines()[0].get_ydata()[-1] == pytest.approx(75.0)


def slot_tagging_history(points=6):
    """Like run_slot.py: joint accuracy, token accuracy and entity F1 in [0, 1]."""
    history = []
    for index in range(1, points + 1):
        history.append({"loss": 2.0 - 0.2 * index, "step": 10 * index})
        history.append({"eval_joint_accuracy": 0.1 * index, "eval_token_accuracy": 0.5 + 0.05 * index,
                        "eval_entity_f1": 0.08 * index, "eval_entity_precision": 0.5, "eval_loss": 1.0,
                        "step": 10 * index})
    return history


def test_slot_tagging_runs_get_joint_and_token_accuracy_and_entity_f1_in_percent(tmp_path):
    history = slot_tagging_history()
    history[5]["eval_joint_accuracy"] = 0.9  # the evaluation at step 30
    run = load(make_run(tmp_path / "slot", history))
    figures = plot_curves.make_figures([run])
    assert list(figures) == ["loss.png", "joint_accuracy.png", "entity_f1.png"]
    joint, token = figures["joint_accuracy.png"].axes
    assert [joint.get_title(), token.get_title()] == ["Evaluation joint accuracy", "Evaluation token accuracy"]
    assert list(joint.get_lines()[0].get_ydata()) == pytest.approx([10, 20, 90, 40, 50, 60])
    assert token.get_ylabel() == "token accuracy (%)" and token.get_lines()[0].get_ydata()[-1] == pytest.approx(80)
    assert figures["entity_f1.png"].axes[0].get_lines()[0].get_ydata()[-1] == pytest.approx(48)
    row = plot_curves.summarize(run)
    assert row["best_joint_accuracy_pct"] == pytest.approx(90) and row["final_joint_accuracy_pct"] == pytest.approx(60)
    assert row["best_entity_f1_pct"] == pytest.approx(48) and row["final_accuracy_pct"] is None
    assert "| final joint accuracy (%) | best joint accuracy (%) |" in plot_curves.results_markdown([row])
    # A name with a line break or a bar stays one cell of one row.
    lines = plot_curves.results_markdown([{**row, "run": "lr 5e-5\nseed|7"}]).splitlines()
    assert lines[2].startswith("| lr 5e-5 seed\\|7 | ") and lines[3] == ""


def test_only_the_panels_with_data_are_drawn(tmp_path):
    history = [{"loss": 2.0 - 0.1 * step, "step": step} for step in range(1, 8)]
    figures = plot_curves.make_figures([load(make_run(tmp_path / "train-only", history))])
    assert list(figures) == ["loss.png"] and len(figures["loss.png"].axes) == 1


# --- Reading runs -------------------------------------------------------------------------------------------------


def test_logs_are_read_from_the_latest_checkpoint_when_the_run_has_no_top_level_state(tmp_path):
    run_dir = tmp_path / "unfinished"
    make_run(run_dir / "checkpoint-20", span_selection_history(points=2))
    make_run(run_dir / "checkpoint-100", span_selection_history(points=10))
    make_run(run_dir / "checkpoint-30", span_selection_history(points=3))
    run = load(run_dir)
    assert run.state_file == run_dir / "checkpoint-100" / "trainer_state.json" and run.steps == 100


def write_state_text(directory, text):
    """A trainer_state.json as Python's json writes NaN and Infinity: bare NaN, Infinity, -Infinity."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trainer_state.json").write_text(text, encoding="utf-8")
    return directory


@pytest.mark.parametrize("global_step", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_steps_and_values_are_left_out_of_curves_and_table(tmp_path, global_step):
    history = [
        {"loss": 2.0, "step": 10},
        {"loss": float("nan"), "step": 20},  # the loss diverged
        {"loss": 1.5, "step": float("inf")},
        {"loss": float("-inf"), "step": 30},
        {"loss": 1.0, "step": 40},
        {"eval_accuracy": 0.5, "eval_loss": float("inf"), "step": 40},
        {"eval_accuracy": 0.6, "step": float("nan")},
        {"eval_accuracy": float("nan"), "eval_loss": 0.9, "step": 50},
        {"train_runtime": float("nan"), "step": 50},
    ]
    text = json.dumps({"global_step": 0, "log_history": history})
    text = text.replace('"global_step": 0', f'"global_step": {global_step}')
    run_dir = write_state_text(tmp_path / "diverged", text)
    run = load(run_dir)
    assert run.steps == 50  # the largest finite step logged
    assert run.curve(plot_curves.TRAIN_LOSS) == ([10, 40], [2.0, 1.0])
    assert run.curve(plot_curves.ACCURACY) == ([40], [50.0])
    assert run.curve(plot_curves.EVAL_LOSS) == ([50], [0.9])
    row = plot_curves.summarize(run)
    assert row["final_train_loss"] == 1.0 and row["best_accuracy_pct"] == 50.0 and row["train_runtime_s"] is None

    out = tmp_path / "out"
    plot_curves.main([str(run_dir), "--output_dir", str(out)])
    with open(out / "results.csv", encoding="utf-8", newline="") as file:
        (written,) = csv.DictReader(file)
    assert written["steps"] == "50" and written["final_train_loss"] == "1.0" and written["train_runtime_s"] == ""
    assert written["final_eval_loss"] == "0.9" and written["final_accuracy_pct"] == "50.0"
    (line,) = plot_curves.make_figures([run])["loss.png"].axes[0].get_lines()
    assert list(line.get_xdata()) == [10, 40]


def test_default_names_are_the_directory_names_with_parents_only_where_needed(tmp_path):
    dirs = [tmp_path / "outputs" / "bert" / "span-selection", tmp_path / "outputs" / "macbert" / "span-selection"]
    assert plot_curves.run_names(dirs, None) == ["bert/span-selection", "macbert/span-selection"]
    assert plot_curves.run_names([tmp_path / "a", tmp_path / "b"], None) == ["a", "b"]
    assert plot_curves.run_names(dirs, ["小模型", "B"]) == ["小模型", "B"]
    with pytest.raises(InputError, match="2 run directories"):
        plot_curves.run_names(dirs, ["only-one"])


def test_a_curve_of_fewer_than_5_points_is_warned_about(tmp_path):
    messages = plot_curves.sparse_curve_warnings([load(make_run(tmp_path / "short", span_selection_history(points=3)))])
    assert len(messages) == 4  # training loss, evaluation loss, exact match, F1
    assert "short: only 3 points of evaluation exact match (fewer than 5); to see a curve, evaluate more often: " \
           "--eval_strategy steps --eval_steps N (or a fraction such as 0.05)" in messages
    assert any("training loss" in message and "--logging_steps" in message for message in messages)
    assert plot_curves.sparse_curve_warnings([load(make_run(tmp_path / "long", span_selection_history()))]) == []


# --- Outputs: figures and the results table -----------------------------------------------------------------------


def test_main_writes_the_figures_and_a_table_of_final_and_best_metrics(tmp_path, capsys):
    span = make_run(tmp_path / "span", span_selection_history(points=10))
    paragraph = make_run(tmp_path / "paragraph", paragraph_selection_history(points=4))
    out = tmp_path / "new" / "curves"
    written = plot_curves.main([str(span), str(paragraph), "--output_dir", str(out), "--names", "qa", "mc"])

    assert set(written) == {"loss.png", "exact_match.png", "f1.png", "accuracy.png", "results.md", "results.csv"}
    for name in ["loss.png", "exact_match.png", "f1.png", "accuracy.png"]:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 100_000
    with open(out / "results.csv", encoding="utf-8", newline="") as file:
        rows = {row["run"]: row for row in csv.DictReader(file)}
    qa, mc = rows["qa"], rows["mc"]
    assert qa["steps"] == "100" and float(qa["final_train_loss"]) == pytest.approx(1.0)
    assert float(qa["final_exact_match_pct"]) == pytest.approx(70.0)
    assert float(qa["best_exact_match_pct"]) == pytest.approx(70.0)
    assert float(qa["final_f1_pct"]) == pytest.approx(100.0) and float(qa["best_eval_loss"]) == pytest.approx(2.0)
    assert float(qa["train_runtime_s"]) == pytest.approx(3723.4) and qa["final_accuracy_pct"] == ""
    assert float(mc["final_accuracy_pct"]) == pytest.approx(45.0) and mc["final_exact_match_pct"] == ""
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| run | steps | final train loss |" in markdown and "best EM (%)" in markdown
    assert "| qa | 100 | 1.0000 | 2.0000 | 2.0000 | – | – | 70.00 | 70.00 | 100.00 | 100.00 | 1:02:03 |" in markdown
    out, err = capsys.readouterr()
    assert markdown.splitlines()[0] in out
    assert err.splitlines() == [
        "warning: mc: only 4 points of training loss (fewer than 5); to see a curve, log more often: --logging_steps N "
        "(or a fraction such as 0.02)",
        *[f"warning: mc: only 4 points of {metric} (fewer than 5); to see a curve, evaluate more often: "
          "--eval_strategy steps --eval_steps N (or a fraction such as 0.05)"
          for metric in ["evaluation loss", "evaluation accuracy"]],
    ]


def png_size(path):
    """(width, height) in pixels, read from the PNG header (the IHDR chunk)."""
    data = Path(path).read_bytes()
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_dpi_sets_the_resolution_of_the_figures(tmp_path):
    span = make_run(tmp_path / "span", span_selection_history(points=6))
    plot_curves.main([str(span), "--output_dir", str(tmp_path / "default")])
    plot_curves.main([str(span), "--output_dir", str(tmp_path / "sharp"), "--dpi", "250"])
    for name in ["loss.png", "exact_match.png"]:
        width, height = png_size(tmp_path / "default" / name)
        # The default is 100 dots per inch; pixels scale with the resolution.
        assert png_size(tmp_path / "sharp" / name) == (pytest.approx(width * 2.5, abs=1), pytest.approx(height * 2.5, abs=1))


def test_dpi_above_600_is_refused_in_one_line_before_anything_is_written(tmp_path):
    span = make_run(tmp_path / "span", span_selection_history(points=6))
    assert plot_curves.parse_command_line([str(span), "--dpi", "600"]).dpi == 600
    result = subprocess.run(
        [sys.executable, ROOT / "plot_curves.py", span, "--dpi", "601", "--output_dir", tmp_path / "out"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr == "error: argument --dpi: must be at most 600, got 601 (see --help)\n"
    assert not (tmp_path / "out").exists()


def test_best_is_the_highest_metric_and_the_lowest_loss(tmp_path):
    history = span_selection_history(points=5)
    history[3]["eval_exact_match"] = 99.0  # the evaluation at step 20
    history[3]["eval_loss"] = 0.5
    row = plot_curves.summarize(load(make_run(tmp_path / "peak", history)))
    assert row["best_exact_match_pct"] == 99.0 and row["final_exact_match_pct"] == pytest.approx(45.0)
    assert row["best_eval_loss"] == 0.5 and row["final_eval_loss"] == pytest.approx(3.0)


# --- Errors -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def missing_run_directory_command(tmp_path_factory):
    """plot_curves.py on a directory that does not exist, as a user runs it. Started before the other tests of this
    file, so that its seconds of imports (common.py loads transformers) overlap them."""
    tmp_path = tmp_path_factory.mktemp("plot-curves-error")
    process = subprocess.Popen(
        [sys.executable, ROOT / "plot_curves.py", tmp_path / "missing", "--output_dir", tmp_path / "out"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield process, tmp_path
    process.kill()
    process.communicate()


@pytest.mark.parametrize("files, expected", [
    ({}, "no trainer logs (no trainer_state.json in it or in a checkpoint-* folder)"),
    ({"checkpoint-5/config.json": {}}, "no trainer logs"),
    ({"trainer_state.json": "{not json"}, "trainer_state.json: not valid JSON"),
    ({"trainer_state.json": {"global_step": 3}}, 'trainer_state.json: no "log_history" list'),
    ({"trainer_state.json": {"global_step": 0, "log_history": []}}, "no loss or evaluation metric logged yet"),
])
def test_a_run_without_usable_logs_fails_with_one_line_and_exit_1(tmp_path, capsys, monkeypatch, files, expected):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, content in files.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            (run_dir / name).write_text(content, encoding="utf-8")
        else:
            write_json(run_dir / name, content)
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", str(run_dir), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        run_main(plot_curves.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith(f"error: {run_dir}") and expected in err, err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocker, expected", [
    ("link to input", "results.md: output path is the input file {state}; writing it would destroy it"),
    ("folder", "results.csv: output path is a directory"),
    ("link to output", "results.csv: the same file as the output {out}/loss.png: one would overwrite the other"),
], ids=["an output is a trainer_state.json read", "an output is a folder", "two outputs are one file"])  # fmt: skip
def test_outputs_are_checked_before_drawing_and_written_all_or_none(tmp_path, monkeypatch, capsys, blocker, expected):
    run_dir = make_run(tmp_path / "run", span_selection_history())
    state = run_dir / "trainer_state.json"
    before = state.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    if blocker == "link to input":
        (out / "results.md").symlink_to(state)
    elif blocker == "folder":
        (out / "results.csv").mkdir()
    else:
        (out / "results.csv").symlink_to(out / "loss.png")
    monkeypatch.setattr(plot_curves, "draw_figure", lambda *args: pytest.fail("drew a figure before the checks"))
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", str(run_dir), "--output_dir", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        run_main(plot_curves.main)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"error: {out}/" + expected.format(state=state, out=out) + "\n"
    assert state.read_bytes() == before
    assert [path.name for path in out.iterdir()] == ["results.md" if blocker == "link to input" else "results.csv"]


def test_a_write_that_fails_midway_leaves_no_figure_and_no_table(tmp_path, monkeypatch, capsys):
    run_dir = make_run(tmp_path / "run", span_selection_history())
    out = tmp_path / "out"
    out.mkdir()
    (out / "loss.png").write_bytes(b"the old figure")

    def full_disk(file):
        raise OSError(28, "No space left on device")

    writers = dict.fromkeys(["results.md", "results.csv"], full_disk)
    monkeypatch.setattr(plot_curves, "results_writers", lambda rows: writers)
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", str(run_dir), "--output_dir", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        run_main(plot_curves.main)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"error: {out / 'results.md'}: cannot write (No space left on device)\n"
    assert sorted(os.listdir(out)) == ["loss.png"] and (out / "loss.png").read_bytes() == b"the old figure"


def test_a_missing_or_unreadable_font_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="--font .*: no such file"):
        fonts.find_font("小模型", tmp_path / "missing.ttf")
    (tmp_path / "notes.ttf").write_text("not a font", encoding="utf-8")
    with pytest.raises(InputError, match="--font .*notes.ttf: cannot read it as a font file"):
        fonts.find_font("小模型", tmp_path / "notes.ttf")


# --- Fonts --------------------------------------------------------------------------------------------------------


def test_font_coverage_is_checked_character_by_character():
    assert fonts.font_covers(DEJAVU_SANS, "bert-base-chinese (train)")
    assert not fonts.font_covers(DEJAVU_SANS, "中文")
    assert fonts.missing_characters(DEJAVU_SANS, "a中b文中") == "中文"
    assert fonts.find_font("macbert") is None  # the default font draws Latin names


def test_a_forced_font_without_the_characters_is_used_and_the_runs_it_cannot_name_get_numbers():
    assert fonts.find_font("小模型", DEJAVU_SANS) == str(DEJAVU_SANS)
    labels, message = fonts.legend_names(["小模型", "bert"], str(DEJAVU_SANS), forced=True)
    assert labels == ["run 1", "bert"]
    assert message == (
        f"--font {DEJAVU_SANS} does not draw the characters '小模型' of the run names: the legend calls the runs by "
        "number (run 1 = '小模型'); to see the names, install a CJK font (`sudo apt install fonts-noto-cjk`) or "
        "pass --font /path/to/font.ttc"
    )


def make_font(path, family, glyph_of):
    """A TrueType font file of the given family: `glyph_of` maps character codes to glyph names, each glyph a box."""
    glyphs = [".notdef", *dict.fromkeys(glyph_of.values())]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(glyphs)
    builder.setupCharacterMap(glyph_of)
    pen = TTGlyphPen(None)
    pen.moveTo((100, 0))
    for point in [(100, 700), (900, 700), (900, 0)]:
        pen.lineTo(point)
    pen.closePath()
    box = pen.glyph()
    builder.setupGlyf({name: box for name in glyphs})
    builder.setupHorizontalMetrics({name: (1000, 100) for name in glyphs})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": family, "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return str(path)


def test_a_font_that_draws_every_character_as_one_placeholder_is_never_chosen(tmp_path, monkeypatch):
    # A font named like the first preferred CJK font that maps every CJK ideograph to one box, like Last Resort.
    boxes = make_font(tmp_path / "boxes.ttf", "Noto Sans CJK TC", {code: "box" for code in range(0x4E00, 0xA000)})
    for font in [str(LAST_RESORT), boxes]:
        assert fonts.missing_characters(font, "小模型 小") == "小模型"
        assert not fonts.font_covers(font, "小")  # one character: its glyph is still shared by 20,992
    placeholders = [("Noto Sans CJK TC", boxes), ("Last Resort High-Efficiency", str(LAST_RESORT)),
                    ("DejaVu Sans", str(DEJAVU_SANS))]  # fmt: skip
    monkeypatch.setattr(fonts, "installed_fonts", lambda: placeholders)
    assert fonts.find_font("小模型") is None
    assert fonts.find_font("小") is None
    # A font with a glyph of its own for each character is chosen, though it sorts after Last Resort.
    real = make_font(tmp_path / "real.ttf", "Tiny CJK", {ord(ch): f"uni{ord(ch):04X}" for ch in "小模型"})
    monkeypatch.setattr(fonts, "installed_fonts", lambda: [*placeholders, ("Tiny CJK", real)])
    assert fonts.find_font("小模型 bert") == real  # "bert" in the default font, where the legend falls back
    assert fonts.legend_names(["小模型 bert"], real) == (["小模型 bert"], None)
    run = load(make_run(tmp_path / "run", span_selection_history()), "小模型 bert")
    (text,) = plot_curves.make_figures([run], fonts.legend_font(real))["f1.png"].axes[0].get_legend().get_texts()
    assert text.get_text() == "小模型 bert" and font_manager.findfont(text.get_fontproperties()) == real


def test_without_a_font_for_chinese_names_the_legend_numbers_the_runs_and_one_line_says_so(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(fonts, "installed_fonts", lambda: [
        ("Last Resort High-Efficiency", str(LAST_RESORT)), ("DejaVu Sans", str(DEJAVU_SANS))])  # fmt: skip
    monkeypatch.setattr(fonts, "default_font", lambda: str(DEJAVU_SANS))
    drawn, make_figures = {}, plot_curves.make_figures
    monkeypatch.setattr(plot_curves, "make_figures", lambda *args: drawn.update(make_figures(*args)) or drawn)
    run_dirs = [make_run(tmp_path / name, span_selection_history()) for name in ["a", "b", "c"]]
    out = tmp_path / "curves"
    names = ["小模型 (lr 2e-3)", "tiny", "大模型"]
    argv = ["plot_curves.py", *map(str, run_dirs), "--names", *names, "--output_dir", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    run_main(plot_curves.main)  # returns: exit status 0

    assert capsys.readouterr().err.splitlines() == [
        "warning: no installed font draws the characters '小模型大' of the run names: the legend calls the runs by "
        "number (run 1 = '小模型 (lr 2e-3)', run 3 = '大模型'); to see the names, install a CJK font "
        "(`sudo apt install fonts-noto-cjk`) or pass --font /path/to/font.ttc"
    ]
    assert list(drawn) == ["loss.png", "exact_match.png", "f1.png"]
    for figure in drawn.values():
        assert plot_curves.legend_labels(figure) == [["run 1", "tiny", "run 3"]] * len(figure.axes)
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| 小模型 (lr 2e-3) | 100 |" in markdown and "| 大模型 | 100 |" in markdown
    with open(out / "results.csv", encoding="utf-8", newline="") as file:
        assert [row["run"] for row in csv.DictReader(file)] == names


def test_an_installed_cjk_font_is_chosen_for_chinese_names(tmp_path):
    if not any(fonts.font_covers(path, "中文") for _, path in fonts.installed_fonts()):
        pytest.skip("no installed font has Chinese characters (e.g. apt install fonts-noto-cjk)")
    font_path = fonts.find_font("小模型 bert")
    assert font_path is not None and fonts.font_covers(font_path, "小模型 bert")

    run = load(make_run(tmp_path / "run", span_selection_history()), "小模型")
    figure = plot_curves.make_figures([run], fonts.legend_font(font_path))["exact_match.png"]
    (legend_text,) = figure.axes[0].get_legend().get_texts()
    assert legend_text.get_text() == "小模型"
    drawn_with = font_manager.findfont(legend_text.get_fontproperties())
    assert fonts.font_covers(drawn_with, "小模型")


# Last, so that the command started at the beginning of the module has had time to finish.
def test_a_missing_run_directory_fails_with_one_line_and_exit_1(missing_run_directory_command):
    process, tmp_path = missing_run_directory_command
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert stderr == f"error: {tmp_path / 'missing'}: no such directory\n"
    assert not (tmp_path / "out").exists()


def test_the_curves_folder_that_a_glob_also_matches_is_skipped_with_a_warning(tmp_path, capsys):
    """After train.sh, `plot_curves.py outputs/*/span-selection` (README.md's command) also matches
    outputs/curves/span-selection, where train.sh drew the curves: it is passed over, not an error."""
    run = tmp_path / "outputs" / "model" / "span-selection"
    run.mkdir(parents=True)
    write_json(run / "trainer_state.json", {"global_step": 4, "log_history": [
        {"loss": 2.0, "step": 2}, {"loss": 1.0, "step": 4}, {"eval_exact_match": 10.0, "step": 4}]})  # fmt: skip
    curves = tmp_path / "outputs" / "curves" / "span-selection"
    plot_curves.main([str(run), "--output_dir", str(curves)])
    capsys.readouterr()
    written = plot_curves.main([*map(str, sorted((tmp_path / "outputs").glob("*/span-selection"))),
                                "--output_dir", str(tmp_path / "again")])  # fmt: skip
    assert "results.md" in written
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        f"warning: {curves}: skipped, it holds plot_curves.py's figures and tables, not a training run"
    )
    with pytest.raises(InputError, match="no trainer logs"):  # any other folder without logs is still an error
        plot_curves.main([str(run), str(tmp_path / "outputs"), "--output_dir", str(tmp_path / "third")])
