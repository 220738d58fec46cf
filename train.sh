#!/usr/bin/env bash
# Trains both stages, paragraph selection (run_swag.py) then span selection (run_qa.py), for one model or several,
# then plots the learning curves and tabulates the results of every run under the output root (plot_curves.py).
#
#   bash train.sh --data_dir DIR --models "MODEL [MODEL ...]" [--from_scratch] [--output_root DIR]
#                 [--max_train_samples N] [--paragraph_flags "FLAGS"] [--span_flags "FLAGS"] [-- FLAGS ...]
#
#   bash train.sh --data_dir data --models "bert-base-chinese hfl/chinese-macbert-base"
#   bash train.sh --data_dir data --models bert-base-chinese --from_scratch        # HW1 Q4: no pretrained weights
#   bash train.sh --data_dir data --models hfl/chinese-lert-base -- --seed 7 --per_device_train_batch_size 1 \
#                 --gradient_accumulation_steps 16                                  # flags after -- win
#   bash train.sh --data_dir data --models bert-base-chinese --span_flags "--doc_stride 96"
#
# MODEL: a Hub id or a local directory. DATA_DIR holds context.json, train.json and valid.json. Trainer flags after
# -- go to both stages, --paragraph_flags to run_swag.py only, --span_flags to run_qa.py only; they come after this
# script's own, so they win. Runs go to OUTPUT_ROOT/NAME/paragraph-selection and OUTPUT_ROOT/NAME/span-selection, NAME
# being the Hub id with "/" as "_" (the folder name for a local directory), plus "-scratch" with --from_scratch; the
# figures and results.md / results.csv to OUTPUT_ROOT/curves/paragraph-selection and .../curves/span-selection.
# A run folder that already holds checkpoints resumes from the last one: delete it to start over.
# LAUNCHER="torchrun --nproc_per_node 2" (environment) trains on 2 GPUs; the effective batch then doubles.
#
# Hyperparameters, for a pretrained Chinese BERT-family base (known validation results for this homework, not
# re-measured here: paragraph selection accuracy ~0.96, span selection exact match ~0.80 with bert-base-chinese,
# ~0.85 with macbert / lert / pert):
# - learning rate 3e-5, warmup over the first 10% of the steps: the usual BERT fine-tuning range (2e-5 to 5e-5);
#   the warmup keeps the first noisy Adam updates from wrecking the pretrained weights.
# - effective batch 16 questions in both stages: stable gradients at this learning rate.
# - paragraph selection: 1 epoch; each question is 4 question+paragraph sequences, so 2 questions per device step
#   (8 sequences of 512 tokens fit a 16 GB GPU) x gradient accumulation 8; the easier task: one epoch is usual.
# - span selection: 2 epochs (exact match usually still gains in the second); one sequence per window, so
#   8 per device x accumulation 2.
# - max_seq_length 512, the most BERT's position embeddings allow: paragraphs run to 1,000+ characters, so longer
#   windows mean fewer paragraphs cut (paragraph selection) and fewer windows (span selection).
# - doc_stride 128: consecutive windows share 128 tokens, so an answer cut by a window's end is whole in the next.
# - bf16 on GPUs that have it (Ampere and later), fp16 on older ones (T4, V100), fp32 on CPU: 2-3x faster on GPU.
# - an evaluation every 5% of the steps (--eval_steps 0.05: 20 points, at least 10 for any run of 10+ steps) and a
#   training-loss log every 1%, so every curve has points; a checkpoint at each evaluation (the best and the latest
#   kept), and the best one by accuracy / exact match is the final model (--load_best_model_at_end). To evaluate
#   every N steps instead, pass both: -- --eval_steps N --save_steps N (the Trainer refuses a ratio mixed with steps).
# --from_scratch (random weights, the model's tokenizer; HW1 Q4): a 4-layer, hidden-256 BERT (config overrides
#   below), learning rate 3e-4, 5 epochs. Random weights have nothing to protect and learn everything from the
#   task data, so they need larger steps and more passes; a small model is what ~22k questions can train (a base
#   size one tends to overfit) and keeps 5 epochs as cheap as 1 epoch of a base model.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SCRATCH_CONFIG="num_hidden_layers=4,hidden_size=256,num_attention_heads=4,intermediate_size=1024"

usage() {
    cat >&2 <<EOF
usage: bash train.sh --data_dir DIR --models "MODEL [MODEL ...]" [--from_scratch] [--output_root DIR]
                     [--max_train_samples N] [--paragraph_flags "FLAGS"] [--span_flags "FLAGS"] [-- FLAGS ...]
(the comments at the top of $0 explain the options and the hyperparameters)
EOF
    exit 2
}

fail() {
    echo "error: $*" >&2
    usage
}

# --- Arguments ---
data_dir="" models="" output_root="outputs" from_scratch=false max_train_samples="" paragraph_flags="" span_flags=""
extra_flags=()
while (($# > 0)); do
    case "$1" in
        --data_dir | --models | --output_root | --max_train_samples | --paragraph_flags | --span_flags)
            (($# >= 2)) || fail "$1 needs a value"
            case "$1" in
                --data_dir) data_dir=$2 ;;
                --models) models=$2 ;;
                --output_root) output_root=$2 ;;
                --max_train_samples) max_train_samples=$2 ;;
                --paragraph_flags) paragraph_flags=$2 ;;
                --span_flags) span_flags=$2 ;;
            esac
            shift 2
            ;;
        --from_scratch) from_scratch=true; shift ;;
        -h | --help) usage ;;
        --) shift; extra_flags=("$@"); break ;;
        *) fail "unknown argument '$1' (Trainer flags go after --)" ;;
    esac
done
[[ -n $data_dir ]] || fail "--data_dir is required"
[[ -n $models ]] || fail "--models is required"
for file in context.json train.json valid.json; do
    [[ -f $data_dir/$file ]] || fail "$data_dir/$file: no such file"
done
if [[ -n $max_train_samples && ! $max_train_samples =~ ^[1-9][0-9]*$ ]]; then
    fail "--max_train_samples must be a positive integer, got '$max_train_samples'"
fi
read -r -a model_list <<<"$models"
read -r -a paragraph_only <<<"$paragraph_flags"
read -r -a span_only <<<"$span_flags"
read -r -a launcher <<<"${LAUNCHER:-python}"

# The output folder of a model: a local directory's own name, a Hub id with "/" as "_"; "-scratch" from scratch.
run_folder() {
    local model=${1%/} name
    if [[ -d $model ]]; then name=$(basename "$model"); else name=${model//\//_}; fi
    if $from_scratch; then name+="-scratch"; fi
    echo "$name"
}

declare -A seen=()
for model in "${model_list[@]}"; do
    folder=$(run_folder "$model")
    [[ -z ${seen[$folder]:-} ]] || fail "two models would share the output folder $output_root/$folder"
    seen[$folder]=1
done

# --- Hyperparameters (see the top of this file) ---
if $from_scratch; then
    learning_rate=3e-4 mc_epochs=5 qa_epochs=5
    model_flags=(--from_scratch --config_overrides "$SCRATCH_CONFIG")
else
    learning_rate=3e-5 mc_epochs=1 qa_epochs=2
    model_flags=()
fi
# bf16 on a GPU that has it (compute capability 8.0 and up), fp16 on an older one, fp32 on CPU.
precision_flag=$(python -c 'import torch
if torch.cuda.is_available():
    print("--bf16" if torch.cuda.get_device_capability()[0] >= 8 else "--fp16")')
common_flags=(
    --context_file "$data_dir/context.json" --train_file "$data_dir/train.json"
    --validation_file "$data_dir/valid.json" --do_train --do_eval
    --max_seq_length 512 --learning_rate "$learning_rate" --warmup_steps 0.1
    --eval_strategy steps --eval_steps 0.05 --logging_steps 0.01
    --save_strategy steps --save_steps 0.05 --save_total_limit 2 --load_best_model_at_end
    --seed 42 --report_to none ${precision_flag:+"$precision_flag"}
)
if [[ -n $max_train_samples ]]; then common_flags+=(--max_train_samples "$max_train_samples"); fi

# --- Training: both stages, model after model ---
for model in "${model_list[@]}"; do
    run_dir="$output_root/$(run_folder "$model")"
    echo "=== $model: paragraph selection -> $run_dir/paragraph-selection"
    "${launcher[@]}" "$HERE/run_swag.py" --model_name_or_path "$model" "${model_flags[@]}" "${common_flags[@]}" \
        --num_train_epochs "$mc_epochs" --per_device_train_batch_size 2 --gradient_accumulation_steps 8 \
        --per_device_eval_batch_size 8 --output_dir "$run_dir/paragraph-selection" "${extra_flags[@]}" \
        "${paragraph_only[@]}"
    echo "=== $model: span selection -> $run_dir/span-selection"
    "${launcher[@]}" "$HERE/run_qa.py" --model_name_or_path "$model" "${model_flags[@]}" "${common_flags[@]}" \
        --num_train_epochs "$qa_epochs" --per_device_train_batch_size 8 --gradient_accumulation_steps 2 \
        --per_device_eval_batch_size 32 --doc_stride 128 --output_dir "$run_dir/span-selection" "${extra_flags[@]}" \
        "${span_only[@]}"
done

# --- Curves and tables, over every run under the output root (models trained by earlier calls too) ---
for stage in paragraph-selection span-selection; do
    run_dirs=() names=()
    for dir in "$output_root"/*/"$stage"; do
        if [[ -f $dir/trainer_state.json ]] || compgen -G "$dir/checkpoint-*/trainer_state.json" >/dev/null; then
            run_dirs+=("$dir")
            names+=("$(basename "$(dirname "$dir")")")
        fi
    done
    echo "=== $stage: curves and results table -> $output_root/curves/$stage"
    python "$HERE/plot_curves.py" "${run_dirs[@]}" --names "${names[@]}" --output_dir "$output_root/curves/$stage"
done
