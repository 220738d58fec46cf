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
# An empty argument (an unset variable in the harness) would otherwise reach inference.py as a path.
names=(CONTEXT_JSON TEST_JSON OUTPUT_CSV)
for i in 1 2 3; do
  if [ -z "${!i}" ]; then
    echo "run.sh: ${names[i - 1]} (argument $i) is empty" >&2
    exit 2
  fi
done

# The project folder, through symlinks (ln -s /project/run.sh elsewhere/run.sh still runs the project's models).
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
me=run.sh
source "$here/preflight.sh"

# run.sh never uses the network.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

# --flag=VALUE, so that a path starting with "-" is never read as a flag.
exec "$python" "$here/inference.py" --context_file="$1" --test_file="$2" --output_file="$3"
