#!/usr/bin/env bash
# Grading entry point, offline:  bash run.sh /path/to/context.json /path/to/test.json /path/to/pred.csv
# Runs paragraph selection and span selection with the checkpoints that download.sh installed in models/, and
# writes pred.csv (id,answer). On any failure it exits non-zero with a one-line message and writes no pred.csv.
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: bash run.sh CONTEXT_JSON TEST_JSON OUTPUT_CSV (got $# arguments)" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The project's virtual environment if README's install made one, else the python3 on PATH (or $PYTHON).
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
  python="$here/.venv/bin/python"
fi

# One line, not a traceback, when the interpreter is missing or lacks the requirements (find_spec imports nothing).
if ! command -v "$python" >/dev/null 2>&1; then
  echo "run.sh: $python: no such interpreter (set PYTHON, or make .venv as README.md says)" >&2
  exit 1
fi
if ! "$python" -c 'import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None for m in ("numpy", "torch", "transformers")))' 2>/dev/null; then
  echo "run.sh: $python cannot import numpy, torch, transformers: install requirements.txt (README.md, Install)" >&2
  exit 1
fi

# run.sh never uses the network.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

exec "$python" "$here/inference.py" --context_file "$1" --test_file "$2" --output_file "$3"
