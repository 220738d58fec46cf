#!/usr/bin/env bash
# Training throughput of span selection: 40 optimizer steps (batch 16 windows of 384 tokens, the development data) of
# run_qa.py as it is, with length-grouped batches (--train_sampling_strategy group_by_length: the short last windows
# of paragraphs batch together, so less padding), with fused AdamW (--optim adamw_torch_fused), and with both. Each
# setting runs ROUNDS times, interleaved, so that a shared machine's load falls on all alike; it prints the Trainer's
# windows per second (fastest round) and each setting's ratio to the first.
#
#   bash benchmarks/training_throughput.sh ../shared/data/drcd-dev-adl [OUTPUT_ROOT] [ROUNDS]
set -euo pipefail
data=${1:?usage: bash benchmarks/training_throughput.sh DATA_DIR [OUTPUT_ROOT] [ROUNDS]}
root=${2:-outputs/training-throughput}
rounds=${3:-2}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
  python="$here/.venv/bin/python"
fi

"$python" "$here/make_tiny_model.py" --output_dir "$root/base" --all_cjk --texts "$data/context.json" \
  --num_layers 2 --hidden_size 128 --num_heads 2 --intermediate_size 512 >/dev/null
declare -A settings=(
  [default]=""
  [group_by_length]="--train_sampling_strategy group_by_length"
  [fused_adamw]="--optim adamw_torch_fused"
  [both]="--train_sampling_strategy group_by_length --optim adamw_torch_fused"
)
order=(default group_by_length fused_adamw both)
for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    # shellcheck disable=SC2086
    HF_HUB_OFFLINE=1 "$python" "$here/run_qa.py" --model_name_or_path "$root/base" --from_scratch \
      --context_file "$data/context.json" --train_file "$data/train.json" --do_train --max_steps 40 \
      --per_device_train_batch_size 16 --max_seq_length 384 --doc_stride 128 --learning_rate 5e-4 --seed 42 \
      --save_strategy no --report_to none --disable_tqdm true --log_level error \
      --output_dir "$root/$name-$round" ${settings[$name]} >"$root/$name-$round.log" 2>&1
  done
done
"$python" - "$root" "$rounds" "${order[@]}" <<'PY'
import json, sys
root, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
speed = {n: max(json.load(open(f"{root}/{n}-{r}/train_results.json"))["train_samples_per_second"]
                for r in range(1, rounds + 1)) for n in names}
runtime = {n: min(json.load(open(f"{root}/{n}-{r}/train_results.json"))["train_runtime"]
                  for r in range(1, rounds + 1)) for n in names}
for n in names:
    print(f"{n:>16}: {speed[n]:.2f} windows/s, 40 steps in {runtime[n]:.1f} s, {speed[n] / speed[names[0]]:.3f}x {names[0]}")
PY
