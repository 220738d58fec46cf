#!/usr/bin/env bash
# Installs in models/ what run.sh runs: the checkpoints paragraph-selection/ and span-selection/, and, when your
# published source has one, inference.json with every folder it names (an ensemble, joint decoding, the end-to-end
# model: see submission.py).
#
# Where your checkpoints are published: set MODEL_SOURCE here (or in the environment). Either
#   - a Hugging Face Hub model repository id, e.g. MODEL_SOURCE="your-name/adl-hw1-qa", or
#   - the URL of a .tar.gz or .zip archive, e.g. MODEL_SOURCE="https://example.org/adl-hw1-models.tar.gz",
# holding the folders paragraph-selection/ and span-selection/ (each a run_swag.py / run_qa.py output directory) and,
# optionally, inference.json and the folders it names; docs/submission.md, "Publishing your checkpoints", shows how.
MODEL_SOURCE="${MODEL_SOURCE:-}"
#
# The rules (docs/submission.md, "download.sh"):
# - It never deletes or replaces a checkpoint you put in models/. Each models/NAME is one of: missing; a demo link
#   (a symlink to demo/NAME, made here); installed by download.sh from a MODEL_SOURCE (a folder holding the file
#   INSTALLED_BY_DOWNLOAD_SH, which a later download may replace); or yours: anything else (a checkpoint, a folder
#   without config.json, a file, a link to a folder elsewhere), never touched. models/demo is download.sh's own.
# - MODEL_SOURCE empty: the checkpoints in models/, yours or installed, are kept; a stage that is missing or already a
#   demo gets the DEMO model, a tiny BERT trained from scratch here on samples/ (a minute on a CPU; its answers are
#   close to random). A stage of yours that is not a checkpoint (no config.json, a file) is refused, nothing changed.
# - MODEL_SOURCE set: it is downloaded into a temporary folder first. When it cannot be fetched (no network, a wrong
#   URL or Hub id, HF_HUB_OFFLINE=1), lacks a folder it must have, or would go where a checkpoint of yours is,
#   download.sh says so in one line, exits 1 and leaves models/ as it was (no demo model is installed instead).
#   Otherwise each folder is moved in, and what it replaces (an installed folder, a demo link) is deleted after.
set -euo pipefail

# The project folder, through symlinks (ln -s /project/download.sh elsewhere/ still installs into /project/models).
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
me=download.sh
source "$here/preflight.sh"

models="$here/models"
stages=(paragraph-selection span-selection)
# The file that marks a folder download.sh installed from a MODEL_SOURCE; in models/ itself, it names the
# inference.json it installed (by its SHA-256, so that one you edited is yours).
MARKER=INSTALLED_BY_DOWNLOAD_SH

fail() {
  echo "download.sh: $*" >&2
  exit 1
}

# The last (or with "first", the first) non-blank line of a log: why a command failed, in one line.
last_line() {
  local line
  line="$(grep -v '^[[:space:]]*$' "$1" | if [ "${2:-}" = first ]; then head -n 1; else tail -n 1; fi || true)"
  echo "${line:-no message}"
}

# "a, b, c"
joined() {
  printf '%s' "$1"
  shift
  if [ "$#" -gt 0 ]; then printf ', %s' "$@"; fi
  echo
}

# --- What models/ holds ---

# What models/NAME is: missing, demo (our link to demo/NAME), installed (by download.sh) or user (anything else).
kind_of() {
  local path="$models/$1"
  if [ -L "$path" ]; then
    if [ "$(readlink "$path")" = "demo/$1" ]; then echo demo; else echo user; fi
  elif [ ! -e "$path" ]; then
    echo missing
  elif [ -d "$path" ] && [ -f "$path/$MARKER" ]; then
    echo installed
  else
    echo user
  fi
}

# What models/inference.json is: missing, installed (the one download.sh installed, unedited) or user.
settings_kind() {
  if [ ! -e "$models/inference.json" ] && [ ! -L "$models/inference.json" ]; then
    echo missing
  elif [ -f "$models/$MARKER" ] && [ ! -L "$models/inference.json" ] &&
    [ "$(sha256sum <"$models/inference.json" | cut -d' ' -f1)" = "$(sed -n 's/^inference.json sha256 //p' "$models/$MARKER")" ]; then
    echo installed
  else
    echo user
  fi
}

# Sets `folders`: the model folders DIR/inference.json names (the two stages when there is none), one line on error.
read_folders() {
  local dir="$1" described="$2" listed
  if ! listed="$("$python" "$here/submission.py" folders "$dir" 2>&1)"; then
    listed="$(tail -n 1 <<<"$listed")"
    listed="${listed#error: }"
    listed="${listed//"$dir/"/}"
    fail "$described: ${listed//"$dir"/$described}"
  fi
  mapfile -t folders <<<"$listed"
}

# Why models/NAME, which run.sh needs, cannot be kept (empty when it can: a folder with a config.json).
not_a_checkpoint() {
  local path="$models/$1"
  if [ -f "$path/config.json" ]; then
    return
  elif [ -L "$path" ] && [ ! -e "$path" ]; then
    echo "models/$1 is a link to $(readlink "$path"), which does not exist"
  elif [ -L "$path" ] || [ -d "$path" ]; then
    echo "models/$1 has no config.json, so it is not a complete checkpoint: complete it or move it away"
  else
    echo "models/$1 is a file, not a checkpoint folder: move it away"
  fi
}

# --- Temporary folders, removed on the way out ---

staging=""           # models/.download.XXXXXX or models/.demo-build.XXXXXX: what is not installed yet
created_models=false # models/ did not exist: removed again when nothing was installed
replacing=""         # the models/ entry moved aside while its replacement moves in: put back if interrupted
cleanup() {
  if [ -n "$replacing" ] && [ ! -e "$models/$replacing" ] && [ ! -L "$models/$replacing" ]; then
    mv -T "$staging/replaced/$replacing" "$models/$replacing" || true
  fi
  if [ -n "$staging" ]; then rm -rf "$staging"; fi
  if $created_models; then rmdir "$models" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Makes models/ (if needed) and a temporary folder in it, on the same file system, so that moving in is a rename.
make_staging() {
  if [ -e "$models" ] && [ ! -d "$models" ]; then fail "$models is not a folder: move it away"; fi
  if [ ! -d "$models" ]; then
    mkdir "$models"
    created_models=true
  fi
  staging="$(mktemp -d "$models/.$1.XXXXXX")"
}

# Moves the new $1 to models/$2, replacing what is there (a folder installed earlier, a demo link): a folder cannot
# be renamed over another, so the old one is moved aside first and deleted only once the new one is in place.
install_entry() {
  local new="$1" name="$2"
  mkdir -p "$staging/replaced"
  if [ -e "$models/$name" ] || [ -L "$models/$name" ]; then
    replacing="$name"
    mv -T "$models/$name" "$staging/replaced/$name"
  fi
  mv -T "$new" "$models/$name"
  replacing=""
  rm -rf "${staging:?}/replaced/$name"
}

# --- Without MODEL_SOURCE: keep the checkpoints, demo models for the missing stages ---

install_without_download() {
  local name demo_stages=() kept=() linked problem
  folders=("${stages[@]}")
  if [ -e "$models/inference.json" ]; then read_folders "$models" "models/inference.json"; fi
  for name in "${folders[@]}"; do
    case "$(kind_of "$name")/$name" in
      missing/paragraph-selection | missing/span-selection | demo/*) demo_stages+=("$name") ;;
      missing/*) fail "models/$name, which models/inference.json names, is missing: set MODEL_SOURCE to where it is published" ;;
      *)
        problem="$(not_a_checkpoint "$name")"
        if [ -n "$problem" ]; then fail "$problem (download.sh never changes your files)"; fi
        kept+=("models/$name")
        ;;
    esac
  done
  if [ "${#kept[@]}" -gt 0 ]; then echo "Keeping the checkpoints already in models/: $(joined "${kept[@]}")"; fi
  if [ "${#demo_stages[@]}" -eq 0 ]; then return; fi

  if [ -f "$models/demo/paragraph-selection/DEMO_MODEL.md" ] && [ -f "$models/demo/span-selection/DEMO_MODEL.md" ]; then
    echo "DEMO models are already built in $models/demo (delete that folder to rebuild them)."
  else
    make_staging demo-build
    build_demo_models "$staging/demo"
    install_entry "$staging/demo" demo
  fi
  linked=()
  for name in "${demo_stages[@]}"; do
    if [ "$(kind_of "$name")" = missing ]; then ln -s "demo/$name" "$models/$name"; fi
    linked+=("models/$name -> demo/$name")
  done
  echo "Installed DEMO models: $(joined "${linked[@]}") (answers close to random: set MODEL_SOURCE to install yours)"
}

build_demo_models() {
  local demo="$1" samples="$here/samples" stage
  local common=(--from_scratch --model_name_or_path "$demo/base" --context_file "$samples/context.json"
                --train_file "$samples/train.json" --validation_file "$samples/valid.json" --do_train --do_eval
                --learning_rate 1e-3 --warmup_steps 0.1 --seed 42 --report_to none
                --save_strategy no --log_level error --disable_tqdm true)
  mkdir "$demo"
  echo "Building DEMO models in $models/demo (about a minute on a CPU) ..."
  "$python" "$here/make_tiny_model.py" --output_dir "$demo/base" --all_cjk --texts "$samples/context.json" >/dev/null
  HF_HUB_OFFLINE=1 "$python" "$here/run_swag.py" "${common[@]}" --output_dir "$demo/paragraph-selection" \
    --max_seq_length 128 --num_train_epochs 1 --per_device_train_batch_size 4 >"$demo/paragraph-selection.log" 2>&1 \
    || fail "training the demo paragraph-selection model failed: $(last_line "$demo/paragraph-selection.log")"
  HF_HUB_OFFLINE=1 "$python" "$here/run_qa.py" "${common[@]}" --output_dir "$demo/span-selection" \
    --max_seq_length 192 --doc_stride 64 --num_train_epochs 1 --per_device_train_batch_size 8 >"$demo/span-selection.log" 2>&1 \
    || fail "training the demo span-selection model failed: $(last_line "$demo/span-selection.log")"
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

# --- With MODEL_SOURCE: download, check, then install ---

# Fetches the archive at MODEL_SOURCE and unpacks it into $1.
fetch_archive() {
  local dest="$1" archive="$staging/archive" log="$staging/log"
  echo "Downloading $MODEL_SOURCE ..."
  curl -fsSL --retry 2 --connect-timeout 20 -o "$archive" "$MODEL_SOURCE" 2>"$log" ||
    fail "could not download $MODEL_SOURCE (no network, or a wrong MODEL_SOURCE): $(last_line "$log")"
  mkdir "$dest"
  # By its content, not its name: a file host's link may end in ?dl=1.
  if "$python" -c 'import sys, zipfile; sys.exit(not zipfile.is_zipfile(sys.argv[1]))' "$archive"; then
    "$python" -m zipfile -e "$archive" "$dest" 2>"$log" ||
      fail "$MODEL_SOURCE: cannot unpack the .zip archive: $(last_line "$log")"
  else
    tar -xf "$archive" -C "$dest" 2>"$log" ||
      fail "$MODEL_SOURCE is not a .tar.gz or .zip archive: $(last_line "$log" first)"
  fi
  rm -f "$archive"
}

# Runs a step of the Hub download (settings: inference.json, when there is one; folders NAME...: those folders) into
# $2, with the Hub's error as one line. HF_HUB_OFFLINE stays as the environment says.
hub() {
  local log="$staging/log"
  HF_HUB_DOWNLOAD_TIMEOUT="${HF_HUB_DOWNLOAD_TIMEOUT:-30}" "$python" - "$MODEL_SOURCE" "$@" 2>"$log" <<'PY' ||
import sys

repo, step, dest, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    from huggingface_hub import errors, hf_hub_download, snapshot_download

    if step == "settings":
        try:
            hf_hub_download(repo, "inference.json", local_dir=dest)
        except errors.EntryNotFoundError as error:
            if isinstance(error, errors.LocalEntryNotFoundError):  # offline, not absent
                raise
    else:
        # The named folders, without the training checkpoints that an uploaded output_dir may hold.
        snapshot_download(repo, local_dir=dest, allow_patterns=[f"{name.rstrip('/')}/*" for name in names],
                          ignore_patterns=[f"{name.rstrip('/')}/checkpoint-*" for name in names])
except Exception as error:
    print(f"{type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(1)
PY
    fail "could not download $MODEL_SOURCE from the Hugging Face Hub ($([ "${HF_HUB_OFFLINE:-0}" = 1 ] && echo "HF_HUB_OFFLINE=1 forbids it" || echo "no network, or a wrong MODEL_SOURCE")): $(last_line "$log")"
}

# The folder of an unpacked archive that holds what is published: its top, or the one folder that wraps everything.
source_root() {
  local dir="$1" entries
  while [ ! -e "$dir/inference.json" ] && [ ! -d "$dir/paragraph-selection" ] && [ ! -d "$dir/span-selection" ]; do
    mapfile -t entries < <(find "$dir" -mindepth 1 -maxdepth 1 ! -name __MACOSX)
    if [ "${#entries[@]}" -ne 1 ] || [ ! -d "${entries[0]}" ] || [ -L "${entries[0]}" ]; then break; fi
    dir="${entries[0]}"
  done
  echo "$dir"
}

download_and_install() {
  local root name unit units=() has_settings=false sha installed
  make_staging download
  case "$MODEL_SOURCE" in
    http://* | https://*)
      fetch_archive "$staging/source"
      root="$(source_root "$staging/source")"
      read_folders "$root" "$MODEL_SOURCE"
      ;;
    *)
      echo "Downloading $MODEL_SOURCE from the Hugging Face Hub ..."
      root="$staging/source"
      hub settings "$root"
      read_folders "$root" "$MODEL_SOURCE"
      hub folders "$root" "${folders[@]}"
      ;;
  esac
  if [ -f "$root/inference.json" ]; then has_settings=true; fi

  # Every folder run.sh will need, complete; installed whole by its top folder (a name may be "ensemble/seed1").
  for name in "${folders[@]}"; do
    if [ -L "$root/$name" ] || [ ! -f "$root/$name/config.json" ]; then
      fail "$MODEL_SOURCE has no $name/ folder with a config.json$($has_settings && echo ", which its inference.json names")"
    fi
    unit="${name%%/*}"
    case "$unit" in
      . | .* | demo | inference.json | "$MARKER") fail "$MODEL_SOURCE: inference.json names $name, a name download.sh keeps for itself" ;;
    esac
    if [[ " ${units[*]} " != *" $unit "* ]]; then units+=("$unit"); fi
  done

  # Nothing of yours is replaced: refuse before anything changes.
  for unit in "${units[@]}"; do
    if [ "$(kind_of "$unit")" = user ]; then
      fail "models/$unit is yours (not installed by download.sh) and $MODEL_SOURCE would replace it: move it away, then run download.sh again"
    fi
  done
  if [ "$(settings_kind)" = user ]; then
    fail "models/inference.json is yours (not installed by download.sh) and would decide what run.sh runs instead of $MODEL_SOURCE: move it away, then run download.sh again"
  fi

  # Install: the old inference.json goes first and the new one comes last, so that whenever there is one, the
  # folders it names are in place.
  if [ "$(settings_kind)" = installed ]; then rm -f "$models/inference.json" "$models/$MARKER"; fi
  for unit in "${units[@]}"; do
    printf 'Installed by download.sh from MODEL_SOURCE=%s; a later download.sh may replace this folder.\n' \
      "$MODEL_SOURCE" >"$root/$unit/$MARKER"
    install_entry "$root/$unit" "$unit"
  done
  if $has_settings; then
    sha="$(sha256sum <"$root/inference.json" | cut -d' ' -f1)"
    install_entry "$root/inference.json" inference.json
    printf 'inference.json sha256 %s\nfrom MODEL_SOURCE=%s\n' "$sha" "$MODEL_SOURCE" >"$staging/marker"
    install_entry "$staging/marker" "$MARKER"
  fi
  installed=("${units[@]/#/models/}")
  if $has_settings; then installed+=(models/inference.json); fi
  echo "Installed from $MODEL_SOURCE: $(joined "${installed[@]}")"

  # The demo build is download.sh's own: gone once no stage links to it.
  if [ -d "$models/demo" ] && [ -z "$(find "$models" -mindepth 1 -maxdepth 1 -type l -lname 'demo/*')" ]; then
    rm -rf "${models:?}/demo"
  fi
  for name in "$models"/*/"$MARKER"; do
    unit="$(basename "$(dirname "$name")")"
    if [ -f "$name" ] && [[ " ${units[*]} " != *" $unit "* ]]; then
      echo "models/$unit, installed by an earlier download, is no longer used: delete it to free the space"
    fi
  done
}

if [ -z "$MODEL_SOURCE" ]; then
  echo "download.sh: MODEL_SOURCE is not set, so there is nothing to download."
  install_without_download
else
  download_and_install
fi
