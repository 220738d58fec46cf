#!/usr/bin/env bash
# Does extra SQuAD-format data help? The same small BERT, from random weights, trained on drcd-dev-adl's train.json
# alone and on it plus the CMRC 2018 dev questions (converted and merged with convert_squad.py, drcd-dev-adl's
# valid/test questions excluded), both scored on drcd-dev-adl's valid.json.
#
#   bash benchmarks/extra_data_from_scratch.sh ../shared/data [OUTPUT_ROOT]
#
# DATA_DIR holds raw/cmrc2018_dev.json and drcd-dev-adl/. Both arms get the same model (2 layers, hidden 128, a
# character vocabulary of all the paragraphs plus every CJK ideograph), the same hyperparameters and the same number
# of optimizer steps (so the same compute): the extra data takes the place of DRCD questions, not of extra steps.
# Short windows (128 tokens for paragraph selection, 192 for span selection), small batches (4 questions, 8 windows)
# and few steps (less than half an epoch of either arm) keep it to about 6 minutes on 2 idle CPU cores, and under an
# hour when other jobs load them (28 minutes for the figures in docs/extra-data.md).
# PARAGRAPH_STEPS and SPAN_STEPS (default 300 and 400) change the number of steps of both arms, e.g. for a quick try.
set -euo pipefail
data=${1:?usage: bash benchmarks/extra_data_from_scratch.sh DATA_DIR [OUTPUT_ROOT]}
root=${2:-outputs/extra-data}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
paragraph_steps=${PARAGRAPH_STEPS:-300}
span_steps=${SPAN_STEPS:-400}
adl="$data/drcd-dev-adl"
merged="$root/drcd-plus-cmrc"

start=$SECONDS
"$python" "$here/convert_squad.py" "$data/raw/cmrc2018_dev.json" --output_dir "$merged" --merge_into "$adl" \
  --exclude "$adl/valid.json" "$adl/test.json"
"$python" "$here/make_tiny_model.py" --output_dir "$root/base" --all_cjk --texts "$merged/context.json" \
  --num_layers 2 --hidden_size 128 --num_heads 2 --intermediate_size 512

# The merged context.json holds drcd-dev-adl's paragraphs at their old indices, so it serves both arms.
for arm in drcd drcd-plus-cmrc; do
  train_file="$adl/train.json"
  [ "$arm" = drcd-plus-cmrc ] && train_file="$merged/train.json"
  common=(--model_name_or_path "$root/base" --from_scratch --context_file "$merged/context.json"
          --train_file "$train_file" --validation_file "$adl/valid.json" --do_train --do_eval
          --learning_rate 5e-4 --warmup_steps 0.1 --weight_decay 0.01 --seed 42
          --logging_steps 50 --save_strategy no --report_to none --disable_tqdm true)
  arm_start=$SECONDS
  "$python" "$here/run_swag.py" "${common[@]}" --max_seq_length 128 --max_steps "$paragraph_steps" \
    --per_device_train_batch_size 4 --output_dir "$root/$arm/paragraph-selection"
  "$python" "$here/run_qa.py" "${common[@]}" --max_seq_length 192 --doc_stride 64 --max_steps "$span_steps" \
    --per_device_train_batch_size 8 --output_dir "$root/$arm/span-selection"
  echo "$((SECONDS - arm_start))" > "$root/$arm/seconds"
done

"$python" - "$root" "$((SECONDS - start))" <<'PY'
import json, math, sys
root, seconds = sys.argv[1], sys.argv[2]
print("\n| training data | questions | paragraph selection accuracy (epochs) | span selection EM / F1 (epochs) | time |")
print("|---|---:|---:|---:|---:|")
for arm in ["drcd", "drcd-plus-cmrc"]:
    mc = json.load(open(f"{root}/{arm}/paragraph-selection/all_results.json"))
    qa = json.load(open(f"{root}/{arm}/span-selection/all_results.json"))
    arm_seconds = int(open(f"{root}/{arm}/seconds").read())
    # Standard error of a proportion over the 500 validation questions, to judge differences between the arms.
    accuracy, exact = mc["eval_accuracy"], qa["eval_exact_match"] / 100
    se_accuracy = math.sqrt(accuracy * (1 - accuracy) / mc["eval_samples"])
    se_exact = 100 * math.sqrt(exact * (1 - exact) / mc["eval_samples"])
    print(f"| {arm} | {mc['train_samples']} | {accuracy:.3f} ± {se_accuracy:.3f} ({mc['epoch']:.2f}) | "
          f"{qa['eval_exact_match']:.2f} ± {se_exact:.2f} / {qa['eval_f1']:.2f} ({qa['epoch']:.2f}) | "
          f"{arm_seconds // 60} min |")
print(f"{seconds} s in all")
PY
