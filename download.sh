#!/usr/bin/env bash
# Installs the two fine-tuned checkpoints that run.sh uses: models/paragraph-selection and models/span-selection.
#
# Where your checkpoints are published: set MODEL_SOURCE here (or in the environment). Either
#   - a Hugging Face Hub model repository id, e.g. MODEL_SOURCE="your-name/adl-hw1-qa", or
#   - the URL of a .tar.gz or .zip archive, e.g. MODEL_SOURCE="https://example.org/adl-hw1-models.tar.gz",
# holding the two folders paragraph-selection/ and span-selection/ (each a run_swag.py / run_qa.py output directory;
# README.md, "Publishing your models", shows how to make one).
MODEL_SOURCE="${MODEL_SOURCE:-}"
#
# With no MODEL_SOURCE, or when it cannot be downloaded (no network), it says so and keeps the real checkpoints that
# models/ may already hold, or else installs DEMO models: tiny models trained from scratch here, in a minute or two on
# a CPU, on the sample data in samples/. They make run.sh work end to end, but their answers are close to random.
set -euo pipefail

# The project folder, through symlinks (ln -s /project/download.sh elsewhere/ still installs into /project/models).
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
me=download.sh
source "$here/preflight.sh"

models="$here/models"
stages=(paragraph-selection span-selection)

# Moves the two stage folders found under $1 into models/, replacing what was there.
install_from() {
  local source_root="$1" stage found
  for stage in "${stages[@]}"; do
    found="$(find "$source_root" -type d -name "$stage" -print -quit)"
    if [ -z "$found" ] || [ ! -f "$found/config.json" ]; then
      echo "download.sh: $MODEL_SOURCE has no $stage/ folder with a config.json" >&2
      return 1
    fi
  done
  mkdir -p "$models"
  for stage in "${stages[@]}"; do
    found="$(find "$source_root" -type d -name "$stage" -print -quit)"
    rm -rf "${models:?}/$stage"
    mv "$found" "$models/$stage"
  done
}

download() {
  local workdir="$1"
  case "$MODEL_SOURCE" in
    http://*|https://*)
      echo "Downloading $MODEL_SOURCE ..."
      curl -fL --retry 2 --connect-timeout 20 -o "$workdir/archive" "$MODEL_SOURCE" || return 1
      mkdir "$workdir/unpacked"
      if [[ "$MODEL_SOURCE" == *.zip ]]; then
        "$python" -m zipfile -e "$workdir/archive" "$workdir/unpacked" || return 1
      else
        tar -xf "$workdir/archive" -C "$workdir/unpacked" || return 1
      fi
      ;;
    *)
      echo "Downloading $MODEL_SOURCE from the Hugging Face Hub ..."
      HF_HUB_DOWNLOAD_TIMEOUT=30 "$python" -c 'import sys; from huggingface_hub import snapshot_download
snapshot_download(repo_id=sys.argv[1], local_dir=sys.argv[2], allow_patterns=["paragraph-selection/*", "span-selection/*"])' \
        "$MODEL_SOURCE" "$workdir/unpacked" || return 1
      ;;
  esac
  install_from "$workdir/unpacked"
}

install_demo_models() {
  local demo="$models/demo" stage
  if [ -f "$demo/paragraph-selection/DEMO_MODEL.md" ] && [ -f "$demo/span-selection/DEMO_MODEL.md" ]; then
    echo "DEMO models are already built in $demo (delete that folder to rebuild them)."
  else
    build_demo_models "$demo"
  fi
  for stage in "${stages[@]}"; do
    rm -rf "${models:?}/$stage"
    ln -s "demo/$stage" "$models/$stage"
  done
  echo "Installed DEMO models: models/paragraph-selection -> demo/paragraph-selection, models/span-selection -> demo/span-selection"
}

build_demo_models() {
  local demo="$1" samples="$here/samples" stage
  local common=(--from_scratch --model_name_or_path "$demo/base" --context_file "$samples/context.json"
                --train_file "$samples/train.json" --validation_file "$samples/valid.json" --do_train --do_eval
                --learning_rate 1e-3 --warmup_steps 0.1 --seed 42 --report_to none
                --save_strategy no --log_level error --disable_tqdm true)
  rm -rf "$demo" && mkdir -p "$demo"
  echo "Building DEMO models in $demo (about a minute on a CPU) ..."
  "$python" "$here/make_tiny_model.py" --output_dir "$demo/base" --all_cjk --texts "$samples/context.json" >/dev/null
  HF_HUB_OFFLINE=1 "$python" "$here/run_swag.py" "${common[@]}" --output_dir "$demo/paragraph-selection" \
    --max_seq_length 128 --num_train_epochs 1 --per_device_train_batch_size 4 >"$demo/paragraph-selection.log" 2>&1 \
    || { echo "download.sh: training the demo paragraph-selection model failed, see $demo/paragraph-selection.log" >&2; exit 1; }
  HF_HUB_OFFLINE=1 "$python" "$here/run_qa.py" "${common[@]}" --output_dir "$demo/span-selection" \
    --max_seq_length 192 --doc_stride 64 --num_train_epochs 1 --per_device_train_batch_size 8 >"$demo/span-selection.log" 2>&1 \
    || { echo "download.sh: training the demo span-selection model failed, see $demo/span-selection.log" >&2; exit 1; }
  for stage in "${stages[@]}"; do
    cat >"$demo/$stage/DEMO_MODEL.md" <<NOTE
# DEMO model, not a real one
A 2-layer BERT (hidden size 64) trained from scratch by download.sh on the small sample in samples/train.json.
Its answers are close to random. Set MODEL_SOURCE in download.sh to install your fine-tuned checkpoints.
NOTE
  done
  "$python" - "$demo" <<'PY'
import json, sys
for stage, metric in [("paragraph-selection", "eval_accuracy"), ("span-selection", "eval_exact_match")]:
    results = json.load(open(f"{sys.argv[1]}/{stage}/all_results.json"))
    print(f"  demo {stage}: {metric} {results[metric]:.3g} on samples/valid.json")
PY
}

# True when models/ holds real (not demo) checkpoints of both stages, e.g. from an earlier download.
have_real_models() {
  local stage
  for stage in "${stages[@]}"; do
    [ -f "$models/$stage/config.json" ] && [ ! -f "$models/$stage/DEMO_MODEL.md" ] || return 1
  done
}

# Without a download: keep real checkpoints that are already there, else install the demo models.
install_without_download() {
  if have_real_models; then
    echo "Keeping the checkpoints already in models/paragraph-selection and models/span-selection."
  else
    install_demo_models
  fi
}

if [ -z "$MODEL_SOURCE" ]; then
  echo "download.sh: MODEL_SOURCE is not set, so there is nothing to download."
  install_without_download
  exit 0
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
if download "$workdir"; then
  rm -rf "$models/demo"
  echo "Installed models/paragraph-selection and models/span-selection from $MODEL_SOURCE"
else
  echo "download.sh: could not download $MODEL_SOURCE (no network, or a wrong MODEL_SOURCE)."
  install_without_download
fi
