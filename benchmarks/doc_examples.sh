#!/usr/bin/env bash
# Regenerates, from the current code, every example figure and table the docs show, and writes them into the docs:
#
#   bash benchmarks/doc_examples.sh [WORK_DIR] [--intent-slot DATA_DIR]
#
# 1. The learning curves and results tables of docs/training.md (and the README's figure): a tiny 2-layer BERT
#    (make_tiny_model.py) trained from random weights for 48 steps on 64 questions of samples/ at two learning rates,
#    and evaluated on those same 64 questions, so that the curves move within minutes of CPU. They illustrate what
#    plot_curves.py draws, nothing about real models; the docs say so beside them. -> docs/images/paragraph-selection/,
#    docs/images/span-selection/, and the table in docs/training.md.
# 2. The answer metrics and the error analysis of docs/inference.md: those tiny models through inference.py on the 48
#    labelled questions of samples/valid.json. -> the JSON and the summary excerpt in docs/inference.md.
# 3. With --intent-slot DATA_DIR (the course's intent/ and slot/ folders; about 20 minutes more): the from-scratch
#    intent and slot curves of docs/intent-slot.md, by benchmarks/intent_slot_from_scratch.sh.
#    -> docs/images/intent-slot/.
#
# Each generated block of a doc sits between `<!-- doc_examples: NAME -->` and `<!-- /doc_examples -->`; only those
# blocks are rewritten. Names in Chinese need a CJK font installed (e.g. `sudo apt install fonts-wqy-microhei`), else
# plot_curves.py numbers the runs in the legend. Seeds are fixed; times in the tables change from run to run.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x "$here/.venv/bin/python" ]; then
  python="$here/.venv/bin/python"
fi
work="${1:-/tmp/doc_examples}"
intent_slot=""
if [ "${2:-}" = "--intent-slot" ]; then
  intent_slot="${3:?--intent-slot needs the DATA_DIR holding intent/ and slot/}"
fi
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
rm -rf "$work" && mkdir -p "$work"

# 1. Curves and tables.
"$python" "$here/make_tiny_model.py" --output_dir "$work/tiny" --texts "$here/samples/context.json" >/dev/null
common=(--model_name_or_path "$work/tiny" --from_scratch --context_file "$here/samples/context.json"
        --train_file "$here/samples/train.json" --validation_file "$here/samples/train.json" --do_train --do_eval
        --max_seq_length 128 --max_question_length 32 --max_train_samples 64 --max_eval_samples 64 --max_steps 48
        --eval_strategy steps --eval_steps 4 --logging_steps 2 --save_strategy no --warmup_steps 0.1
        --report_to none --seed 42 --per_device_eval_batch_size 16 --per_device_train_batch_size 8
        --disable_tqdm true --log_level error)
for lr in 2e-3 5e-4; do
  echo "training the tiny models at learning rate $lr ..."
  "$python" "$here/run_swag.py" "${common[@]}" --learning_rate "$lr" \
    --output_dir "$work/runs/lr$lr/paragraph-selection" >"$work/lr$lr-paragraph-selection.log" 2>&1
  "$python" "$here/run_qa.py" "${common[@]}" --learning_rate "$lr" --doc_stride 32 \
    --output_dir "$work/runs/lr$lr/span-selection" >"$work/lr$lr-span-selection.log" 2>&1
done
for stage in paragraph-selection span-selection; do
  "$python" "$here/plot_curves.py" "$work/runs/lr2e-3/$stage" "$work/runs/lr5e-4/$stage" \
    --names "小模型 (lr 2e-3)" "tiny (lr 5e-4)" --output_dir "$work/images/$stage" >/dev/null
  mkdir -p "$here/docs/images/$stage"
  cp "$work/images/$stage"/* "$here/docs/images/$stage/"
done

# 2. The answer metrics and the error analysis of labelled questions.
"$python" "$here/inference.py" --context_file "$here/samples/context.json" --test_file "$here/samples/valid.json" \
  --output_file "$work/inference/pred.csv" --analysis_dir "$work/inference/analysis" \
  --mc_model "$work/runs/lr2e-3/paragraph-selection" --qa_model "$work/runs/lr2e-3/span-selection" \
  2>"$work/inference.log"

# 3. Intent and slot curves.
if [ -n "$intent_slot" ]; then
  PYTHON="$python" bash "$here/benchmarks/intent_slot_from_scratch.sh" "$intent_slot" "$work/intent-slot"
  mkdir -p "$here/docs/images/intent-slot"
  cp "$work/intent-slot/curves/intent/accuracy.png" "$here/docs/images/intent-slot/intent-accuracy.png"
  cp "$work/intent-slot/curves/slot/joint_accuracy.png" "$here/docs/images/intent-slot/slot-joint-accuracy.png"
fi

# The generated blocks of the docs.
"$python" - "$here" "$work" <<'PY'
import re, sys
from pathlib import Path

here, work = Path(sys.argv[1]), Path(sys.argv[2])
summary = (work / "inference/analysis/summary.md").read_text(encoding="utf-8")
blocks = {
    "span-selection/results.md": (work / "images/span-selection/results.md").read_text(encoding="utf-8").strip(),
    "metrics.json": "```json\n" + (work / "inference/pred.csv.metrics.json").read_text(encoding="utf-8").strip()
    + "\n```",
    "summary.md": "```markdown\n" + "\n".join(summary.strip().splitlines()[:12]) + "\n...\n```",
}
pattern = re.compile(r"(<!-- doc_examples: (\S+) -->\n).*?(<!-- /doc_examples -->)", re.S)
for doc in sorted((here / "docs").glob("*.md")) + [here / "README.md"]:
    text = doc.read_text(encoding="utf-8")
    new = pattern.sub(lambda m: m.group(1) + blocks[m.group(2)] + "\n" + m.group(3), text)
    if new != text:
        doc.write_text(new, encoding="utf-8")
        print(f"rewrote the generated blocks of {doc.relative_to(here)}")
PY
echo "figures in docs/images/, tables and examples in the docs; work files in $work"
