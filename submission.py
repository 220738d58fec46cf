"""What run.sh runs: the checkpoints download.sh installs in models/, and how to run them.

models/ holds paragraph-selection/ and span-selection/ and, optionally, inference.json, which says what inference.py
runs when it is given no model on the command line (as run.sh gives none), so that a submission with joint decoding,
an ensemble or the end-to-end model needs no edit of run.sh:

    {"mc_model": ["paragraph-selection", "paragraph-selection-seed2"],
     "qa_model": ["span-selection"],
     "top_k_paragraphs": 2,
     "end_to_end": false}

Every key is optional (missing ones keep inference.py's defaults); folder names are relative to models/, and must
stay inside it. The window settings are not here: each checkpoint carries its own (checkpoints.trained_settings).

    python submission.py folders DIR     # the model folders DIR's inference.json names (download.sh installs them)
"""

import os
import sys
from pathlib import Path

from adl_data import read_json
from cli import InputError, run_main

SETTINGS_FILE = "inference.json"
DEFAULT_FOLDERS = {"mc_model": ["paragraph-selection"], "qa_model": ["span-selection"]}
KEYS = ("mc_model", "qa_model", "top_k_paragraphs", "end_to_end")


def read_settings(models_dir: str | Path) -> dict | None:
    """The settings of models_dir/inference.json, checked; None when there is no such file.

    Args:
        models_dir: the folder that holds the checkpoints (models/).

    Returns:
        {key: value} for the keys the file has; the folders by their names in models_dir.
    """
    models_dir = Path(models_dir)
    path = models_dir / SETTINGS_FILE
    if not path.exists():
        return None
    settings = read_json(path)
    if not isinstance(settings, dict):
        raise InputError(f"{path}: expected a JSON object with any of {', '.join(KEYS)}")
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (the keys: {', '.join(KEYS)})")
    checked = {}
    for key in ("mc_model", "qa_model"):
        if key in settings:
            folders = settings[key]
            if not (isinstance(folders, list) and folders and all(isinstance(f, str) and f for f in folders)):
                raise InputError(f"{path}: {key!r}: expected a non-empty list of folder names in {models_dir}")
            for folder in folders:
                if os.path.isabs(folder) or ".." in Path(folder).parts:
                    raise InputError(f"{path}: {key!r}: {folder!r} must be a folder name inside {models_dir}")
            checked[key] = list(folders)
    if "top_k_paragraphs" in settings:
        top_k = settings["top_k_paragraphs"]
        if not (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1):
            raise InputError(f"{path}: 'top_k_paragraphs': expected an integer of at least 1, found {top_k!r}")
        checked["top_k_paragraphs"] = top_k
    if "end_to_end" in settings:
        if not isinstance(settings["end_to_end"], bool):
            raise InputError(f"{path}: 'end_to_end': expected true or false, found {settings['end_to_end']!r}")
        checked["end_to_end"] = settings["end_to_end"]
    if checked.get("end_to_end") and "mc_model" in checked:
        raise InputError(f"{path}: 'end_to_end' is true, so there is no paragraph selection: drop 'mc_model'")
    return checked


def folders_to_install(source_dir) -> list[str]:
    """The model folders a published source holds for run.sh: those its inference.json names (or the two stages'
    when it has none). Used by download.sh, which installs each, and inference.json with them.

    Args:
        source_dir: the unpacked archive or Hub snapshot.

    Returns:
        The folder names, relative to source_dir.
    """
    settings = read_settings(source_dir) or {}
    keys = ["qa_model"] if settings.get("end_to_end", False) else ["mc_model", "qa_model"]
    names = [folder for key in keys for folder in settings.get(key, DEFAULT_FOLDERS[key])]
    return list(dict.fromkeys(names))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "folders":
        raise InputError("usage: python submission.py folders DIR")
    for name in folders_to_install(Path(argv[1])):
        print(name)


if __name__ == "__main__":
    run_main(main)
