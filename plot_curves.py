"""Learning curves and a table of results from Trainer runs (run_swag.py, run_qa.py, run_intent.py, run_slot.py), for
the report.

Usage:

    python plot_curves.py RUN_DIR [RUN_DIR ...] [--output_dir DIR] [--names NAME ...] [--font PATH] [--dpi N]

    python plot_curves.py outputs/bert-base-chinese/span-selection outputs/hfl_chinese-macbert-base/span-selection \
        --names bert-base-chinese macbert --output_dir curves/span-selection

Each RUN_DIR is the --output_dir of a training run; its logs are read from `trainer_state.json` there or, for a run
that has not finished, from the latest `checkpoint-*` folder. Written to --output_dir (default: curves/), each figure
only if some run has data for it, the runs overlaid in one colour each:

- loss.png         training loss and evaluation loss against the training step
- exact_match.png  evaluation exact match (%), span selection
- f1.png           evaluation F1 (%), span selection
- accuracy.png     evaluation accuracy (%), paragraph selection and intent classification
- joint_accuracy.png  evaluation joint accuracy and token accuracy (%), slot tagging
- entity_f1.png    evaluation entity F1 (%, seqeval), slot tagging
- results.md, results.csv  one row per run: steps, final train loss, final and best evaluation metrics, train runtime

A curve has as many points as the run logged: train with `--logging_steps N --eval_strategy steps --eval_steps N`
(N in steps, or below 1 as a fraction of the training steps, e.g. 0.05 for 20 points). A step or a value that is not a
finite number (the Trainer writes a loss that diverged as NaN or Infinity) is left out of the curves and the table; a
run whose "global_step" is not finite counts the largest finite step it logged.

Run names default to the run directories' names and are drawn as they are written ("lr $5" is not mathtext). Names
in Chinese need a CJK font (fonts.py): one is picked among the installed fonts, or pass --font PATH. Where no font
draws a name, the legend calls that run "run N" (its position on the command line) and one warning line gives the
real names and the package to install (`sudo apt install fonts-noto-cjk`); results.md and results.csv always hold the
real names.

The figures and the tables of one call are written together or not at all, and checked first (before any drawing):
none may be a trainer_state.json that the call reads, or another of its outputs (outputs.py has the rules).
"""

import argparse
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

from adl_data import read_json
from cli import ArgumentParser, InputError, bounded_int, run_main
from fonts import find_font, legend_font, legend_names
from outputs import OutputPlan, binary, table_writer

MIN_POINTS = 5
# The widest figure is 11 x 4 inches (two panels): at 600 dots per inch, print quality, it is 6,600 x 2,400 pixels, a
# 63 MB image in memory. Much more runs out of memory, or past Agg's limit of 65,536 pixels a side.
MAX_DPI = 600
@dataclass(frozen=True)
class Metric:
    key: str  # the key in the Trainer's log_history
    column: str  # its name in results.csv (after final_ / best_)
    title: str
    axis_label: str
    scale: float = 1.0  # plotted and tabulated value = logged value * scale
    higher_is_better: bool = True
    hint: str = "evaluate more often: --eval_strategy steps --eval_steps N (or a fraction such as 0.05)"


TRAIN_LOSS = Metric(
    "loss",
    "train_loss",
    "training loss",
    "cross-entropy loss",
    higher_is_better=False,
    hint="log more often: --logging_steps N (or a fraction such as 0.02)",
)
EVAL_LOSS = Metric("eval_loss", "eval_loss", "evaluation loss", "cross-entropy loss", higher_is_better=False)
EXACT_MATCH = Metric("eval_exact_match", "exact_match_pct", "evaluation exact match", "exact match (%)")
F1 = Metric("eval_f1", "f1_pct", "evaluation F1", "F1 (%)")
# run_swag.py, run_intent.py and run_slot.py log accuracies and entity F1 in [0, 1]; shown in % like exact match and F1.
ACCURACY = Metric("eval_accuracy", "accuracy_pct", "evaluation accuracy", "accuracy (%)", scale=100.0)
JOINT_ACCURACY = Metric(
    "eval_joint_accuracy", "joint_accuracy_pct", "evaluation joint accuracy", "joint accuracy (%)", scale=100.0
)
TOKEN_ACCURACY = Metric(
    "eval_token_accuracy", "token_accuracy_pct", "evaluation token accuracy", "token accuracy (%)", scale=100.0
)
ENTITY_F1 = Metric("eval_entity_f1", "entity_f1_pct", "evaluation entity F1", "entity F1 (%)", scale=100.0)
METRICS = (TRAIN_LOSS, EVAL_LOSS, EXACT_MATCH, F1, ACCURACY, JOINT_ACCURACY, TOKEN_ACCURACY, ENTITY_F1)


@dataclass(frozen=True)
class FigureSpec:
    filename: str
    title: str
    panels: tuple[Metric, ...]  # side by side, those with data only


FIGURES = (
    FigureSpec("loss.png", "Loss", (TRAIN_LOSS, EVAL_LOSS)),
    FigureSpec("exact_match.png", "Span selection: evaluation exact match", (EXACT_MATCH,)),
    FigureSpec("f1.png", "Span selection: evaluation F1", (F1,)),
    FigureSpec("accuracy.png", "Paragraph selection / intent classification: evaluation accuracy", (ACCURACY,)),
    FigureSpec("joint_accuracy.png", "Slot tagging: evaluation accuracy", (JOINT_ACCURACY, TOKEN_ACCURACY)),
    FigureSpec("entity_f1.png", "Slot tagging: evaluation entity F1 (seqeval)", (ENTITY_F1,)),
)


@dataclass(frozen=True)
class Run:
    name: str
    state_file: Path
    log_history: list[dict]
    steps: int

    def curve(self, metric: Metric) -> tuple[list[float], list[float]]:
        """The (steps, values) the run logged for `metric`, values scaled for display."""
        points = [
            (entry["step"], entry[metric.key] * metric.scale)
            for entry in self.log_history
            if _is_number(entry.get(metric.key)) and _is_number(entry.get("step"))
        ]
        return [step for step, _ in points], [value for _, value in points]

    def last_logged(self, key: str) -> float | None:
        values = [entry[key] for entry in self.log_history if _is_number(entry.get(key))]
        return values[-1] if values else None


def _is_number(value) -> bool:
    """Whether a logged step or value can be drawn: a finite number (json reads NaN and Infinity, which the Trainer
    writes for a loss that diverged, as floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- Reading the runs ---------------------------------------------------------------------------------------------


def find_trainer_state(run_dir: Path) -> Path:
    """`run_dir/trainer_state.json`, or else that of the checkpoint-* folder with the highest step."""
    if not run_dir.exists():
        raise InputError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory (expected the --output_dir of a training run)")
    top_level = run_dir / "trainer_state.json"
    if top_level.is_file():
        return top_level
    checkpoints = []
    for folder in run_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / "trainer_state.json").is_file():
            checkpoints.append((int(match.group(1)), folder / "trainer_state.json"))
    if not checkpoints:
        raise InputError(
            f"{run_dir}: no trainer logs (no trainer_state.json in it or in a checkpoint-* folder); "
            "expected the --output_dir of a training run (run_swag.py, run_qa.py, run_intent.py or run_slot.py)"
        )
    return max(checkpoints)[1]


def is_curves_folder(run_dir: Path) -> bool:
    """Whether a folder holds an earlier output of plot_curves.py (results.csv) and no trainer logs."""
    if not (run_dir.is_dir() and (run_dir / "results.csv").is_file()):
        return False
    return not (run_dir / "trainer_state.json").exists() and not any(run_dir.glob("checkpoint-*/trainer_state.json"))


def load_run(run_dir: Path, name: str) -> Run:
    path = find_trainer_state(run_dir)
    state = read_json(path)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise InputError(f'{path}: no "log_history" list; expected the trainer_state.json of a Trainer')
    history = [entry for entry in history if isinstance(entry, dict)]
    global_step = state.get("global_step")
    logged_steps = [entry["step"] for entry in history if _is_number(entry.get("step"))]
    run = Run(name, path, history, steps=int(global_step if _is_number(global_step) else max(logged_steps, default=0)))
    if not any(run.curve(metric)[0] for metric in METRICS):
        raise InputError(
            f"{path}: no loss or evaluation metric logged yet; train with --logging_steps N and --eval_strategy steps"
        )
    return run


def run_names(run_dirs: list[Path], names: list[str] | None) -> list[str]:
    """--names, or the run directories' names, with as many parent folders as needed to tell them apart."""
    if names is not None:
        if len(names) != len(run_dirs):
            raise InputError(f"--names: {len(names)} names given for {len(run_dirs)} run directories")
        if len(set(names)) != len(names):
            raise InputError("--names: the names must differ, they tell the curves apart")
        return names
    parts = [Path(os.path.abspath(run_dir)).parts for run_dir in run_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        candidates = ["/".join(p[-depth:]) for p in parts]
        if len(set(candidates)) == len(candidates):
            return candidates
    return [str(run_dir) for run_dir in run_dirs]  # the same directory given twice


def sparse_curve_warnings(runs: list[Run]) -> list[str]:
    """One message for every curve of fewer than MIN_POINTS points (but at least one)."""
    messages = []
    for run in runs:
        for metric in METRICS:
            count = len(run.curve(metric)[0])
            if 0 < count < MIN_POINTS:
                messages.append(
                    f"{run.name}: only {count} point{'s' if count > 1 else ''} of {metric.title} "
                    f"(fewer than {MIN_POINTS}); to see a curve, {metric.hint}"
                )
    return messages


# --- Figures ------------------------------------------------------------------------------------------------------


def figure_panels(runs: list[Run]) -> dict[str, tuple[FigureSpec, list[Metric]]]:
    """{file name: (its FigureSpec, its panels)} for every figure that some run has data for: the panels with data."""
    figures = {}
    for spec in FIGURES:
        panels = [metric for metric in spec.panels if any(run.curve(metric)[0] for run in runs)]
        if panels:
            figures[spec.filename] = spec, panels
    return figures


def make_figures(
    runs: list[Run], font: FontProperties | None = None, labels: list[str] | None = None
) -> dict[str, Figure]:
    """{file name: figure} for every figure that some run has data for; `labels` name the runs in the legends
    (default: their names)."""
    labels = labels or [run.name for run in runs]
    return {
        filename: draw_figure(spec.title, panels, runs, font, labels)
        for filename, (spec, panels) in figure_panels(runs).items()
    }


def draw_figure(
    title: str, metrics: list[Metric], runs: list[Run], font: FontProperties | None, labels: list[str]
) -> Figure:
    """One panel per metric, one line per run (the same colour for a run in every figure), legend = `labels`."""
    figure = Figure(figsize=(1 + 5 * len(metrics), 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for index, (run, label) in enumerate(zip(runs, labels)):
            steps, values = run.curve(metric)
            if steps:
                marker = "o" if len(steps) <= 40 else None
                axes.plot(steps, values, label=label, color=f"C{index % 10}", marker=marker, markersize=3)
        axes.set_xlabel("training step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(metric.axis_label)
        if len(metrics) > 1:
            axes.set_title(metric.title.capitalize())
        axes.ticklabel_format(axis="y", useOffset=False)  # plain values, not "1e-7+1.386" over the axis
        axes.grid(alpha=0.3)
        for text in axes.legend(prop=font).get_texts():
            text.set_parse_math(False)  # a run name is text: "lr $5 to $6" would be drawn as mathtext, or fail
    figure.suptitle(title)
    return figure


def legend_labels(figure: Figure) -> list[list[str]]:
    """The legend entries of each panel of a figure."""
    return [[text.get_text() for text in axes.get_legend().get_texts()] for axes in figure.axes if axes.get_legend()]


def png_writer(figure: Figure, dpi: int):
    """The writer of a figure as a PNG file of `dpi` dots per inch, for OutputPlan.write."""
    return binary(lambda file: figure.savefig(file, format="png", dpi=dpi))


# --- Results table ------------------------------------------------------------------------------------------------


def summarize(run: Run) -> dict[str, object]:
    """The row of a run: steps, last logged train loss, final and best value of each evaluation metric, runtime."""
    row: dict[str, object] = {"run": run.name, "steps": run.steps}
    losses = run.curve(TRAIN_LOSS)[1]
    row["final_train_loss"] = losses[-1] if losses else None
    for metric in (EVAL_LOSS, ACCURACY, EXACT_MATCH, F1, JOINT_ACCURACY, TOKEN_ACCURACY, ENTITY_F1):
        values = run.curve(metric)[1]
        best = max if metric.higher_is_better else min
        row[f"final_{metric.column}"] = values[-1] if values else None
        row[f"best_{metric.column}"] = best(values) if values else None
    row["train_runtime_s"] = run.last_logged("train_runtime")
    return row


# (key in the row, Markdown header, decimals); metric columns without any value are left out of the table.
TABLE_COLUMNS = (
    ("run", "run", None),
    ("steps", "steps", None),
    ("final_train_loss", "final train loss", 4),
    ("final_eval_loss", "final eval loss", 4),
    ("best_eval_loss", "best eval loss", 4),
    ("final_accuracy_pct", "final accuracy (%)", 2),
    ("best_accuracy_pct", "best accuracy (%)", 2),
    ("final_exact_match_pct", "final EM (%)", 2),
    ("best_exact_match_pct", "best EM (%)", 2),
    ("final_f1_pct", "final F1 (%)", 2),
    ("best_f1_pct", "best F1 (%)", 2),
    ("final_joint_accuracy_pct", "final joint accuracy (%)", 2),
    ("best_joint_accuracy_pct", "best joint accuracy (%)", 2),
    ("final_token_accuracy_pct", "final token accuracy (%)", 2),
    ("best_token_accuracy_pct", "best token accuracy (%)", 2),
    ("final_entity_f1_pct", "final entity F1 (%)", 2),
    ("best_entity_f1_pct", "best entity F1 (%)", 2),
    ("train_runtime_s", "train runtime", None),
)


def table_columns(rows: list[dict]) -> list[tuple[str, str, int | None]]:
    always = {"run", "steps", "final_train_loss", "train_runtime_s"}
    return [
        column for column in TABLE_COLUMNS if column[0] in always or any(row[column[0]] is not None for row in rows)
    ]


def _markdown_cell(key: str, value: object, decimals: int | None) -> str:
    if value is None:
        return "–"
    if key == "train_runtime_s":
        seconds = round(value)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    # A run name is one table cell: a line break would end the row, a bar would end the cell (results.csv keeps both).
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def results_markdown(rows: list[dict]) -> str:
    columns = table_columns(rows)
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---" if key == "run" else "---:" for key, _, _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_markdown_cell(key, row[key], decimals) for key, _, decimals in columns) + " |")
    note = "Final: the last value logged; best: the highest (the lowest for losses). Metrics other than losses in %."
    return "\n".join(lines) + "\n\n" + note + "\n"


def results_writers(rows: list[dict]) -> dict[str, object]:
    """{file name: writer} of results.md and results.csv (UTF-8, the runs' real names)."""
    columns = table_columns(rows)
    csv_rows = [["" if row[key] is None else row[key] for key, _, _ in columns] for row in rows]
    markdown = results_markdown(rows)
    return {
        "results.md": lambda file: file.write(markdown),
        "results.csv": table_writer([key for key, _, _ in columns], csv_rows),
    }


# --- Command line -------------------------------------------------------------------------------------------------


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Plot the learning curves of Trainer runs and tabulate their results.",
        epilog="Example: python plot_curves.py outputs/*/span-selection --output_dir curves/span-selection",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="--output_dir of a training run: run_swag.py, run_qa.py, run_intent.py or run_slot.py (holds "
        "trainer_state.json).",
    )
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=Path("curves"),
        metavar="DIR",
        help="Where the figures and results.md / results.csv go (default: curves/).",
    )
    parser.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="Legend name of each run, in the order of the RUN_DIRs (default: the directory names).",
    )
    parser.add_argument(
        "--font",
        type=Path,
        metavar="PATH",
        help="Font file (.ttf, .otf, .ttc) for the run names, e.g. a CJK font for names in Chinese "
        "(default: an installed font that has their characters).",
    )
    parser.add_argument(
        "--dpi",
        type=bounded_int(1, MAX_DPI),
        default=100,
        metavar="N",
        help=f"Resolution of the PNG files, in dots per inch, at most {MAX_DPI} (default: 100).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Draws the learning curves of the runs the command line names and writes them with the table of results.

    Args:
        argv: the command line without the program name; None reads sys.argv.

    Returns:
        {file name: destination} of every file written.
    """
    args = parse_command_line(argv)
    # `outputs/*/span-selection` also matches train.sh's outputs/curves/span-selection: plot_curves.py's own
    # output, not a run. Passed over with a warning, where any other folder without trainer logs is an error.
    curves_folders = [run_dir for run_dir in args.run_dirs if is_curves_folder(run_dir)]
    for run_dir in curves_folders:
        warn(f"{run_dir}: skipped, it holds plot_curves.py's figures and tables, not a training run")
    if curves_folders and args.names is None:
        args.run_dirs = [run_dir for run_dir in args.run_dirs if run_dir not in curves_folders]
        if not args.run_dirs:
            raise InputError("no training run among the RUN_DIRs, only plot_curves.py's own output folders")
    names = run_names(args.run_dirs, args.names)
    runs = [load_run(run_dir, name) for run_dir, name in zip(args.run_dirs, names)]
    # Every output checked before any drawing: none may be a trainer_state.json read above, or another output.
    plan = OutputPlan(inputs=[run.state_file for run in runs])
    filenames = [*figure_panels(runs), "results.md", "results.csv"]
    destinations = {filename: plan.add(args.output_dir / filename) for filename in filenames}
    for message in sparse_curve_warnings(runs):
        warn(message)

    font_path = find_font(" ".join(names), args.font)
    labels, message = legend_names(names, font_path, forced=args.font is not None)
    if message:
        warn(message)
    elif font_path is not None:
        print(f"Run names drawn with the font {font_path}")
    rows = [summarize(run) for run in runs]
    figures = make_figures(runs, legend_font(font_path), labels)
    writers = {name: png_writer(figure, args.dpi) for name, figure in figures.items()}
    writers.update(results_writers(rows))
    with warnings.catch_warnings():
        # A character that no font draws is in the warning above, once, with what to do; not once per figure.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        plan.write({destinations[name]: writer for name, writer in writers.items()})

    print(results_markdown(rows))
    print(f"Wrote {', '.join(writers)} to {args.output_dir}")
    return {name: destinations[name] for name in writers}


if __name__ == "__main__":
    run_main(main)
