#!/usr/bin/env bash
# Runs benchmarks/peers.py with transformers 4.x beside the project's transformers 5 (which removed the
# question-answering pipeline): makes the virtual environment PEER_VENV (default /tmp/peers-venv) once, with the CPU
# build of PyTorch 2.13.0 and transformers 4.57, then compares. Arguments go to peers.py.
#
#   bash benchmarks/peers.sh --data_dir ../shared/data/drcd-dev-adl [--checkpoint DIR] [--questions 500]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
  python="$here/.venv/bin/python"
fi
venv="${PEER_VENV:-/tmp/peers-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet torch==2.13.0
  "$venv/bin/python" -m pip install --quiet "transformers>=4.57,<5"
fi
"$python" "$here/benchmarks/peers.py" --peer_python "$venv/bin/python" "$@"
