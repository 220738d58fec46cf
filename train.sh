#!/usr/bin/env bash
# Trains the two stages of a task for one model or several, then plots the learning curves and tabulates the results
# of every run under the output root (plot_curves.py). The tasks:
# - qa (the default): paragraph selection (run_swag.py), then span selection (run_qa.py); with --end_to_end, one
#   span-selection model over all candidate paragraphs joined instead (run_qa.py --context_mode candidates, for
#   inference.py --end_to_end; see docs/end-to-end.md);
# - intent-slot: intent classification (run_intent.py), then slot tagging (run_slot.py); see docs/intent-slot.md.
#
#   bash train.sh --data_dir DIR --models "MODEL [MODEL ...]" [--task {qa,intent-slot}] [--from_scratch]
#                 [--end_to_end] [--output_root DIR] [--max_train_samples N] [--paragraph_flags "FLAGS"]
#                 [--span_flags "FLAGS"] [--intent_flags "FLAGS"] [--slot_flags "FLAGS"] [-- FLAGS ...]
#
#   bash train.sh --data_dir data --models "bert-base-chinese hfl/chinese-macbert-base"
#   bash train.sh --data_dir data --models bert-base-chinese --from_scratch        # HW1 Q4: no pretrained weights
#   bash train.sh --data_dir data --models hfl/chinese-lert-base -- --seed 7 --per_device_train_batch_size 1 \
#                 --gradient_accumulation_steps 16                                  # flags after -- win
#   bash train.sh --data_dir data --models bert-base-chinese --span_flags "--doc_stride 96"
#   bash train.sh --task intent-slot --data_dir data --models "bert-base-uncased roberta-base"
#   bash train.sh --data_dir data --models hfl/chinese-macbert-base --end_to_end   # HW1 Q5: one model, no stage 1
#
# MODEL: a Hub id or a local directory. DATA_DIR holds, for qa, context.json, train.json and valid.json; for
# intent-slot, intent/ and slot/ with train.json and eval.json each (the course's layout), and test.json, when there,
# is predicted too (pred.csv in the run folder). Flags after -- go to every stage whose script takes them
# (--seed to both, --doc_stride to span selection only; one that no stage takes is refused), --paragraph_flags /
# --span_flags / --intent_flags / --slot_flags to one stage only (--span_flags to the end-to-end model with
# --end_to_end); they come after this script's own, so they win.
# Runs go to OUTPUT_ROOT/NAME/STAGE (STAGE: paragraph-selection and span-selection, end-to-end, or intent and slot),
# NAME being the Hub id with "/" as "_" (the folder name for a local directory), plus "-scratch" with --from_scratch;
# the figures and results.md / results.csv to OUTPUT_ROOT/curves/STAGE.
# Before any training, every stage of every model is checked with its script's --dry_run (the flags, the data, the
# output folder, the model's config and tokenizer), so that a mistake in a later stage is found before the first
# one trains for hours. A stage whose folder holds train_results.json has finished: it is skipped, not trained
# again (delete the folder to retrain it); the curves are drawn all the same. A run folder that holds checkpoints
# but no train_results.json resumes from the last checkpoint.
# LAUNCHER="torchrun --nproc_per_node 2" (environment) trains on 2 GPUs; the effective batch then doubles. PYTHON
# (environment) is the Python that runs the scripts (default: the project's .venv/bin/python when it exists, else
# python3); one that cannot import the requirements is named in one line (preflight.sh).
#
# Hyperparameters of qa, for a pretrained Chinese BERT-family base (known validation results for this homework, not
# re-measured here: paragraph selection accuracy ~0.96, span selection exact match ~0.80 with bert-base-chinese,
# ~0.85 with macbert / lert / pert):
# - learning rate 3e-5, warmup over the first 10% of the steps: the usual BERT fine-tuning range (2e-5 to 5e-5);
#   the warmup keeps the first noisy Adam updates from wrecking the pretrained weights.
# - effective batch 16 questions in both stages: stable gradients at this learning rate.
# - paragraph selection: 1 epoch; each question is 4 question+paragraph sequences, so 2 questions per device step
#   (8 sequences of 512 tokens: about 3.7 GB in bf16 measured on a CPU, so an 8 GB GPU; docs/homework.md) x gradient
#   accumulation 8; the easier task: one epoch is usual.
# - span selection: 2 epochs (exact match usually still gains in the second); one sequence per window, so
#   8 per device x accumulation 2.
# - max_seq_length 512, the most BERT's position embeddings allow: paragraphs run to 1,000+ characters, so longer
#   windows mean fewer paragraphs cut (paragraph selection) and fewer windows (span selection).
# - doc_stride 128: consecutive windows share 128 tokens, so an answer cut by a window's end is whole in the next.
# --end_to_end: the span-selection hyperparameters (not measured with pretrained bases here). A question is read
#   with its 4 candidates joined, about 5 windows of 512 tokens instead of 1-2, so an epoch takes about 3x the
#   steps of span selection. For a long-context model, one window reads all 4: --span_flags "--max_seq_length 4096
#   --per_device_train_batch_size 1 --gradient_accumulation_steps 16" (docs/end-to-end.md).
# --from_scratch (random weights, the model's tokenizer; HW1 Q4): a 4-layer, hidden-256 BERT (config overrides
#   below), learning rate 3e-4, 5 epochs. Random weights have nothing to protect and learn everything from the
#   task data, so they need larger steps and more passes; a small model is what ~22k questions can train (a base
#   size one tends to overfit) and keeps 5 epochs as cheap as 1 epoch of a base model.
#
# Hyperparameters of intent-slot, for bert-base-uncased or roberta-base (starting points, not measured here: our
# machines reach neither the Hub nor a GPU):
# - learning rate 3e-5 (in the range that both BERT and RoBERTa recommend for fine-tuning), warmup 10%, weight
#   decay 0.01, batch 32 utterances: short sequences, so a large batch is cheap.
# - intent: 5 epochs of ~15,000 utterances; slot: 8 epochs of ~7,000, the smaller set and the stricter score (joint
#   accuracy) needing more passes. The best checkpoint is kept, so epochs past the best cost time, not quality.
# - max_seq_length 128: the longest utterance of the course data is 35 words, so nothing is cut.
# --from_scratch: a 2-layer, hidden-128 BERT, learning rate 1e-3, intent 10 and slot 20 epochs, as measured on a
#   CPU in docs/intent-slot.md: short utterances and 150 intents / 9 tags are learned by a small model.
#
# Both tasks:
# - bf16 on GPUs that have it (Ampere and later), fp16 on older ones (T4, V100), fp32 on CPU: 2-3x faster on GPU.
# - an evaluation every 5% of the steps (--eval_steps 0.05: 20 points, at least 10 for any run of 10+ steps) and a
#   training-loss log every 1%, so every curve has points; a checkpoint at each evaluation (the best and the latest
#   kept), and the best one by accuracy / exact match / joint accuracy is the final model (--load_best_model_at_end).
#   To evaluate every N steps instead, pass both: -- --eval_steps N --save_steps N (the Trainer refuses a ratio
#   mixed with steps).

set -euo pipefail

# The project folder, through symlinks (ln -s /project/train.sh elsewhere/ still runs the project's scripts).
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
me=train.sh

usage() {
    cat >&2 <<EOF
usage: bash train.sh --data_dir DIR --models "MODEL [MODEL ...]" [--task {qa,intent-slot}] [--from_scratch]
                     [--end_to_end] [--output_root DIR] [--max_train_samples N] [--paragraph_flags "FLAGS"]
                     [--span_flags "FLAGS"] [--intent_flags "FLAGS"] [--slot_flags "FLAGS"] [-- FLAGS ...]
(the comments at the top of $0 explain the options and the hyperparameters)
EOF
    exit 2
}

fail() {
    echo "error: $*" >&2
    usage
}

# --- Arguments ---
task="qa" output_root="outputs" from_scratch=false end_to_end=false max_train_samples=""  # data_dir, models: unset
declare -A stage_only_flags=()
extra_flags=()
while (($# > 0)); do
    case "$1" in
        --data_dir | --models | --task | --output_root | --max_train_samples | --paragraph_flags | --span_flags | \
            --intent_flags | --slot_flags)
            (($# >= 2)) || fail "$1 needs a value"
            case "$1" in
                --data_dir) data_dir=$2 ;;
                --models) models=$2 ;;
                --task) task=$2 ;;
                --output_root) output_root=$2 ;;
                --max_train_samples) max_train_samples=$2 ;;
                --paragraph_flags) stage_only_flags[paragraph-selection]=$2 ;;
                --span_flags) stage_only_flags[span-selection]=$2 ;;
                --intent_flags) stage_only_flags[intent]=$2 ;;
                --slot_flags) stage_only_flags[slot]=$2 ;;
            esac
            shift 2
            ;;
        --from_scratch) from_scratch=true; shift ;;
        --end_to_end) end_to_end=true; shift ;;
        -h | --help) usage ;;
        --) shift; extra_flags=("$@"); break ;;
        *) fail "unknown argument '$1' (Trainer flags go after --)" ;;
    esac
done
[[ -v data_dir ]] || fail "--data_dir is required"
[[ -v models ]] || fail "--models is required"
# A blank value (an unset variable in a wrapper script) would train nothing, or read and write at /.
[[ $data_dir =~ [^[:space:]] ]] || fail "--data_dir is blank: give the folder that holds the data files"
read -r -a model_list <<<"$models"
((${#model_list[@]} > 0)) || fail "--models is blank: give one model or more (Hub ids or local folders)"
[[ $output_root =~ [^[:space:]] ]] || fail "--output_root is blank: give the folder for the runs (default: outputs)"
case $task/$end_to_end in
    qa/false) stages=(paragraph-selection span-selection) needed_files=(context.json train.json valid.json) ;;
    qa/true)
        stages=(end-to-end) needed_files=(context.json train.json valid.json)
        if [[ -n ${stage_only_flags[span-selection]+set} ]]; then
            stage_only_flags[end-to-end]=${stage_only_flags[span-selection]}
            unset "stage_only_flags[span-selection]"
        fi ;;
    intent-slot/true) fail "--end_to_end is for --task qa" ;;
    intent-slot/false)
        stages=(intent slot) needed_files=(intent/train.json intent/eval.json slot/train.json slot/eval.json) ;;
    *) fail "--task must be qa or intent-slot, got '$task'" ;;
esac
for stage in "${!stage_only_flags[@]}"; do
    [[ " ${stages[*]} " == *" $stage "* ]] || fail "--task $task$($end_to_end && echo " --end_to_end") has no $stage stage (its stages: ${stages[*]})"
done
for file in "${needed_files[@]}"; do
    [[ -f $data_dir/$file ]] || fail "$data_dir/$file: no such file"
done
if [[ -n $max_train_samples && ! $max_train_samples =~ ^[1-9][0-9]*$ ]]; then
    fail "--max_train_samples must be a positive integer, got '$max_train_samples'"
fi

source "$here/preflight.sh"
read -r -a launcher <<<"${LAUNCHER:-$python}"

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
declare -A epochs=()
case $task/$from_scratch in
    qa/true)
        learning_rate=3e-4 epochs[paragraph-selection]=5 epochs[span-selection]=5 epochs[end-to-end]=5
        scratch_config="num_hidden_layers=4,hidden_size=256,num_attention_heads=4,intermediate_size=1024" ;;
    qa/false) learning_rate=3e-5 epochs[paragraph-selection]=1 epochs[span-selection]=2 epochs[end-to-end]=2 ;;
    intent-slot/true)
        learning_rate=1e-3 epochs[intent]=10 epochs[slot]=20
        scratch_config="num_hidden_layers=2,hidden_size=128,num_attention_heads=2,intermediate_size=512" ;;
    intent-slot/false) learning_rate=3e-5 epochs[intent]=5 epochs[slot]=8 ;;
esac
model_flags=()
if $from_scratch; then model_flags=(--from_scratch --config_overrides "$scratch_config"); fi
# bf16 on a GPU that has it (compute capability 8.0 and up), fp16 on an older one, fp32 on CPU.
precision_flag=$("$python" -c 'import torch
if torch.cuda.is_available():
    print("--bf16" if torch.cuda.get_device_capability()[0] >= 8 else "--fp16")')
common_flags=(
    --do_train --do_eval --learning_rate "$learning_rate" --warmup_steps 0.1
    --eval_strategy steps --eval_steps 0.05 --logging_steps 0.01
    --save_strategy steps --save_steps 0.05 --save_total_limit 2 --load_best_model_at_end
    --seed 42 --report_to none ${precision_flag:+"$precision_flag"}
)
if [[ -n $max_train_samples ]]; then common_flags+=(--max_train_samples "$max_train_samples"); fi

# The script of a stage and its own flags: files, epochs, batch sizes.
set_stage() {
    local question_files=(--context_file "$data_dir/context.json" --train_file "$data_dir/train.json"
                          --validation_file "$data_dir/valid.json" --max_seq_length 512)
    case $1 in
        paragraph-selection)
            script=run_swag.py
            stage_flags=("${question_files[@]}" --per_device_train_batch_size 2 --gradient_accumulation_steps 8
                         --per_device_eval_batch_size 8) ;;
        span-selection | end-to-end)
            script=run_qa.py
            stage_flags=("${question_files[@]}" --per_device_train_batch_size 8 --gradient_accumulation_steps 2
                         --per_device_eval_batch_size 32 --doc_stride 128)
            if [[ $1 == end-to-end ]]; then stage_flags+=(--context_mode candidates); fi ;;
        intent | slot)
            script=run_$1.py
            stage_flags=(--train_file "$data_dir/$1/train.json" --validation_file "$data_dir/$1/eval.json"
                         --max_seq_length 128 --weight_decay 0.01 --per_device_train_batch_size 32
                         --per_device_eval_batch_size 128)
            if [[ -f $data_dir/$1/test.json ]]; then
                stage_flags+=(--test_file "$data_dir/$1/test.json" --do_predict)
            fi ;;
    esac
}

# --- Flags after --: each to the stages whose script takes it ---
# route_flags.py prints, for each script, the flags it takes, one shell-quoted line per script, and refuses in one
# line a flag that no stage takes (so --doc_stride goes to span selection only, and a typo is caught here).
declare -A routed_flags=()
if ((${#extra_flags[@]} > 0)); then
    scripts=()
    for stage in "${stages[@]}"; do
        set_stage "$stage"
        scripts+=("$script")
    done
    routed=$("$python" "$here/route_flags.py" "${scripts[@]}" -- "${extra_flags[@]}") || usage
    mapfile -t routed_lines <<<"$routed"
    for i in "${!stages[@]}"; do routed_flags[${stages[i]}]=${routed_lines[i]:-}; done
fi

# A stage has finished when its folder holds train_results.json (what the training scripts write last).
finished() { [[ -f $1/train_results.json ]]; }

# Sets `command`: the script of a model's stage and its flags, this script's first so that the user's win.
stage_command() {
    local model=$1 stage=$2 run_dir=$3 stage_only routed
    set_stage "$stage"
    read -r -a stage_only <<<"${stage_only_flags[$stage]:-}"
    eval "routed=(${routed_flags[$stage]:-})"
    command=("$here/$script" --model_name_or_path "$model" "${model_flags[@]}" "${common_flags[@]}"
             "${stage_flags[@]}" --num_train_epochs "${epochs[$stage]}" --output_dir "$run_dir/$stage"
             "${routed[@]}" "${stage_only[@]}")
}

# --- Before any training: every stage of every model checked with its script's --dry_run ---
for model in "${model_list[@]}"; do
    run_dir="$output_root/$(run_folder "$model")"
    for stage in "${stages[@]}"; do
        if finished "$run_dir/$stage"; then continue; fi
        stage_command "$model" "$stage" "$run_dir"
        # The check runs without LAUNCHER: one process is enough to read the flags and the data.
        status=0
        checked=$("$python" "${command[@]}" --dry_run 2>&1) || status=$?
        if ((status != 0)); then
            problem=$(tail -n 1 <<<"$checked")
            echo "train.sh: $model, $stage: ${problem#error: }" >&2
            exit "$status"
        fi
        echo "=== $model: $stage checked (--dry_run)"
    done
done

# --- Training: both stages, model after model ---
for model in "${model_list[@]}"; do
    run_dir="$output_root/$(run_folder "$model")"
    for stage in "${stages[@]}"; do
        if finished "$run_dir/$stage"; then
            echo "=== $model: $stage has finished ($run_dir/$stage/train_results.json): skipped (delete that folder to train it again)"
            continue
        fi
        stage_command "$model" "$stage" "$run_dir"
        echo "=== $model: $stage -> $run_dir/$stage"
        "${launcher[@]}" "${command[@]}"
    done
done

# --- Curves and tables, over every run under the output root (models trained by earlier calls too) ---
for stage in "${stages[@]}"; do
    run_dirs=() names=()
    for dir in "$output_root"/*/"$stage"; do
        if [[ -f $dir/trainer_state.json ]] || compgen -G "$dir/checkpoint-*/trainer_state.json" >/dev/null; then
            run_dirs+=("$dir")
            names+=("$(basename "$(dirname "$dir")")")
        fi
    done
    echo "=== $stage: curves and results table -> $output_root/curves/$stage"
    "$python" "$here/plot_curves.py" "${run_dirs[@]}" --names "${names[@]}" --output_dir "$output_root/curves/$stage"
done
