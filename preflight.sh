# Sourced by run.sh, train.sh and download.sh: what each checks before it does anything, in one place. The script
# sets `here` (its own folder, found through symlinks with readlink -f, so that a link to it elsewhere still finds
# the project) and `me` (its name, for messages) first.
#
# Sets `python`: $PYTHON when set, else the project's .venv/bin/python when README.md's install made one, else
# python3 on PATH. When that interpreter is missing or cannot import numpy, torch and transformers, says so in one
# line and exits 1, before the script has changed anything (rather than a traceback from the first Python it runs).

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "$me: $python: no such interpreter (set PYTHON, or make .venv as README.md says)" >&2
  exit 1
fi
# find_spec looks the packages up without importing them (importing torch takes seconds).
if ! "$python" -c 'import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None for m in ("numpy", "torch", "transformers")))' 2>/dev/null; then
  echo "$me: $python cannot import numpy, torch, transformers: install requirements.txt (README.md, Install)" >&2
  exit 1
fi
