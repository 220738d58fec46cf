#!/usr/bin/env bash
# The GPU benchmark: a bert-base-chinese-sized model with random weights (no download) on ADL-sized data (2,213
# questions with 4 candidates, paragraphs of 450-1,000 characters cut from samples/), on one GPU, in bf16 (fp16 where
# bf16 is not supported). It prints, for eager PyTorch, TorchScript and torch.export: the pipeline's time and the bare
# forward passes' over the same batches (their ratio), the time per stage, the CPU work per question, the overlap of
# that work with the device (background threads off and on), and the wall time of `bash run.sh`; then each speed
# mechanism switched off in turn on the real GPU (benchmarks/speed_mechanisms.py). Sized to finish in under 5 minutes
# on one GPU; not yet run on one (docs/benchmarks.md, "On a GPU").
#
#   bash benchmarks/gpu.sh [DATA_DIR]        # DATA_DIR: paragraphs to cut the data from (default: samples/)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
  python="$here/.venv/bin/python"
fi
data="${1:-$here/samples}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
HF_HUB_OFFLINE=1 "$python" "$here/benchmarks/inference_speed.py" --data_dir "$data" --config base --device cuda \
  --synthetic 2213 --repeats 1 --batch_size 64 --sleep_ms 5 --exports none torchscript torch_export --run_sh
HF_HUB_OFFLINE=1 "$python" "$here/benchmarks/speed_mechanisms.py" --data_dir "$data" --config base --device cuda \
  --rounds 2 --batch_size 64 --sleep_ms 0
