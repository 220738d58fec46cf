#!/usr/bin/env bash
# Grading entry point, offline:  bash run.sh /path/to/context.json /path/to/test.json /path/to/pred.csv
# Runs paragraph selection and span selection with the checkpoints that download.sh installed in models/ (or what
# models/inference.json names), and writes pred.csv (id,answer). On any failure it exits non-zero with a one-line
# message and writes no pred.csv.
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: bash run.sh CONTEXT_JSON TEST_JSON OUTPUT_CSV (got $# arguments)" >&2
  exit 2
fi
# The project folder, through symlinks (ln -s /project/run.sh elsewhere/run.sh still runs the project's models).
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
me=run.sh
source "$here/preflight.sh"

# run.sh never uses the network.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

exec "$python" "$here/inference.py" --context_file "$1" --test_file "$2" --output_file "$3"
