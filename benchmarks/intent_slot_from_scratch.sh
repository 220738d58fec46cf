#!/usr/bin/env bash
# From-scratch intent classification and slot tagging on the course data, on a CPU, with the settings of
# `train.sh --task intent-slot --from_scratch`: intent accuracy, slot joint accuracy, token accuracy, entity F1 and the
# training time of each.
#
#   bash benchmarks/intent_slot_from_scratch.sh ../shared/data/intent-slot [OUTPUT_ROOT]
#
# DATA_DIR holds intent/ and slot/, each with train.json and test.json (the course's labelled eval split is not
# there): a seeded 10% of each train.json is held out for validation (eval.json), the rest trains, and test.json is
# predicted (pred.csv). The model: a 2-layer, hidden-128 BERT (train.sh's from-scratch config) on a word-piece
# vocabulary of the training text (make_tiny_model.py --words 5000: characters plus the 5,000 most frequent words),
# random weights. One PyTorch thread: on this machine, shared with other jobs, two threads ran 16x slower than one
# (set OMP_NUM_THREADS to change it). Each script runs under /usr/bin/time, for its CPU time beside the wall time the
# Trainer reports (which grows with whatever else the machine runs).
set -euo pipefail
data=${1:?usage: bash benchmarks/intent_slot_from_scratch.sh DATA_DIR [OUTPUT_ROOT]}
root=${2:-outputs/intent-slot-from-scratch}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"$python" - "$data" "$root/data" <<'PY'
import json, random, shutil, sys
from pathlib import Path
source, target = Path(sys.argv[1]), Path(sys.argv[2])
for task in ("intent", "slot"):
    records = json.loads((source / task / "train.json").read_text(encoding="utf-8"))
    held_out = set(random.Random(42).sample(range(len(records)), len(records) // 10))
    (target / task).mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.json", False), ("eval.json", True)):
        split = [record for index, record in enumerate(records) if (index in held_out) == keep]
        (target / task / name).write_text(json.dumps(split, ensure_ascii=False), encoding="utf-8")
    shutil.copy(source / task / "test.json", target / task / "test.json")
    print(f"{task}: {len(records) - len(held_out)} training, {len(held_out)} validation utterances (seed 42)")
PY
"$python" "$here/make_tiny_model.py" --output_dir "$root/base" --words 5000 \
  --texts "$root/data/intent/train.json" "$root/data/slot/train.json" \
  --num_layers 2 --hidden_size 128 --num_heads 2 --intermediate_size 512
start=$SECONDS
rm -f "$root/times.txt"
LAUNCHER="/usr/bin/time -a -o $root/times.txt -f %e,%U,%S $python" PYTHON=$python \
  bash "$here/train.sh" --task intent-slot --data_dir "$root/data" --models "$root/base" --from_scratch \
  --output_root "$root" -- --disable_tqdm true
"$python" - "$root/base-scratch" "$((SECONDS - start))" "$root/times.txt" <<'PY'
import json, sys
runs, seconds, times = sys.argv[1], sys.argv[2], sys.argv[3]
# One line per script run by train.sh, in order: wall, user and system seconds.
for task, line in zip(("intent", "slot"), open(times).read().split()):
    wall, user, system = map(float, line.split(","))
    print(f"{task}: run_{task}.py took {wall:.0f} s wall, {user + system:.0f} s CPU (training, evaluations, prediction)")
intent = json.load(open(f"{runs}/intent/all_results.json"))
slot = json.load(open(f"{runs}/slot/all_results.json"))
print(f"intent: accuracy {intent['eval_accuracy']:.4f} on {intent['eval_samples']} utterances; "
      f"training {intent['train_runtime']:.0f} s wall")
print(f"slot: joint accuracy {slot['eval_joint_accuracy']:.4f}, token accuracy {slot['eval_token_accuracy']:.4f}, "
      f"entity precision {slot['eval_entity_precision']:.4f} / recall {slot['eval_entity_recall']:.4f} / "
      f"F1 {slot['eval_entity_f1']:.4f} on {slot['eval_samples']} utterances; "
      f"training {slot['train_runtime']:.0f} s wall")
print(f"{seconds} s in all (train.sh: training, evaluations, prediction, curves)")
PY
