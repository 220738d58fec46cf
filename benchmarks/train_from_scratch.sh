#!/usr/bin/env bash
# A short from-scratch training of a small BERT on the development data, on a CPU, to show that both stages learn:
# paragraph selection must beat chance (0.25 with 4 candidates) clearly, span selection must reach an exact match above 0.
#
#   bash benchmarks/train_from_scratch.sh ../shared/data/drcd-dev-adl [OUTPUT_ROOT] [SEED] [MC_EPOCHS] [QA_EPOCHS]
#
# (defaults: seed 42, 3 epochs of paragraph selection, 4 of span selection)
# The model: 2 layers, hidden size 128, a character vocabulary of the data plus all CJK ideographs
# (make_tiny_model.py), random weights. Windows of 256 tokens keep it to about 25 minutes on 2 CPU cores.
set -euo pipefail
data=${1:?usage: bash benchmarks/train_from_scratch.sh DATA_DIR [OUTPUT_ROOT] [SEED] [MC_EPOCHS] [QA_EPOCHS]}
root=${2:-outputs/from-scratch-dev}
seed=${3:-42}
mc_epochs=${4:-3}
qa_epochs=${5:-4}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

"$python" "$here/make_tiny_model.py" --output_dir "$root/base" --all_cjk --texts "$data/context.json" \
  --num_layers 2 --hidden_size 128 --num_heads 2 --intermediate_size 512
common=(--model_name_or_path "$root/base" --from_scratch --context_file "$data/context.json"
        --train_file "$data/train.json" --validation_file "$data/valid.json" --do_train --do_eval
        --max_seq_length 256 --learning_rate 5e-4 --warmup_steps 0.1 --weight_decay 0.01 --seed "$seed"
        --eval_strategy epoch --logging_steps 20 --save_strategy no --report_to none --disable_tqdm true)
start=$SECONDS
"$python" "$here/run_swag.py" "${common[@]}" --num_train_epochs "$mc_epochs" --per_device_train_batch_size 8 \
  --output_dir "$root/paragraph-selection"
"$python" "$here/run_qa.py" "${common[@]}" --doc_stride 64 --num_train_epochs "$qa_epochs" --per_device_train_batch_size 16 \
  --output_dir "$root/span-selection"
"$python" - "$root" "$((SECONDS - start))" <<'PY'
import json, sys
root, seconds = sys.argv[1], sys.argv[2]
mc = json.load(open(f"{root}/paragraph-selection/all_results.json"))
qa = json.load(open(f"{root}/span-selection/all_results.json"))
print(f"paragraph selection: eval_accuracy {mc['eval_accuracy']:.3f} (chance 0.25); "
      f"span selection: eval_exact_match {qa['eval_exact_match']:.2f}, eval_f1 {qa['eval_f1']:.2f} (in [0, 100]); "
      f"{seconds} s in all")
PY
