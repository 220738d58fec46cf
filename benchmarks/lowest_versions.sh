#!/usr/bin/env bash
# The test suite at the lowest versions requirements.txt admits, so that its lower bounds are bounds that were tested:
#
#   bash benchmarks/lowest_versions.sh [VENV_DIR] [PYTEST_ARGS ...]
#
# uv (installed into the new environment) resolves requirements.txt with --resolution lowest-direct: every package
# the file names at its lowest version that can be installed with the others (transformers 5.0 needs
# huggingface_hub 1.3, so that is the lowest huggingface_hub that can be). PyTorch is the exception: its CPU build
# 2.13.0 is installed first (the lowest build tested here; others are multi-GB CUDA downloads). Then the suite runs,
# as CI runs it, with those versions. Needs the package index (uv resolves against PyPI); the test run itself does not.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
venv="${1:-/tmp/lowest-versions-venv}"
shift || true
# Old versions are installed into VENV_DIR: never into an environment of the user's (only a new one or one made here).
if [[ -d $venv && -n "$(ls -A "$venv")" && ! -f $venv/made-by-lowest-versions ]]; then
    echo "lowest_versions.sh: $venv is not empty and was not made by this script: give a new folder" >&2
    exit 1
fi
python3 -m venv "$venv"
touch "$venv/made-by-lowest-versions"
"$venv/bin/python" -m pip install --quiet --upgrade pip uv
"$venv/bin/python" -m pip install --quiet torch==2.13.0
grep -v '^torch' "$here/requirements.txt" > "$venv/requirements-without-torch.txt"
"$venv/bin/uv" pip compile "$venv/requirements-without-torch.txt" --resolution lowest-direct \
  --python "$venv/bin/python" --quiet --no-header --no-annotate \
  | grep -viE '^(torch|triton|nvidia|cuda)' > "$venv/lowest.txt"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -c "$venv/lowest.txt"
echo "installed (the packages requirements.txt names):"
"$venv/bin/python" -m pip list --format freeze 2>/dev/null \
  | grep -iE '^(torch|transformers|datasets|accelerate|safetensors|huggingface.hub|numpy|pandas|matplotlib|tqdm|seqeval|scikit.learn|pytest)=='
cd "$here"
PYTHON="$venv/bin/python" PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q "$@"
