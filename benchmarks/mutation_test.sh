#!/usr/bin/env bash
# Mutation testing (issues 15 and 22; docs/mutation-testing.md): mutmut changes one thing at a time in the functions
# that decide answers, windows, offsets, labels, metrics and outputs, runs the tests that reach the changed function,
# and counts the changes ("mutants") some test notices. Not run by CI (tens of minutes on 2 cores).
#
#   bash benchmarks/mutation_test.sh --fast                # FAST_SCOPE, unit tests only (30-40 min on 2 cores)
#   bash benchmarks/mutation_test.sh --wiring              # WIRING_SCOPE, tests that run tiny models (an hour)
#   bash benchmarks/mutation_test.sh                       # both scopes in one run (hours)
#   bash benchmarks/mutation_test.sh --fast 'decoding.*'   # only the mutants whose names match (mutmut's globs)
#   bash benchmarks/mutation_test.sh --fast --report       # the score of what has run so far, nothing run
#
# The work happens in a copy of the working tree, .mutation/<fast|wiring|all>/ (git-ignored; MUTATION_WORK_DIR to
# move it), where mutmut keeps its mutated copies and results in mutants/. A later run tests again only the mutants
# named (all of the scope by default). `cd .mutation/fast && python -m mutmut show NAME` prints a mutant's diff.
# Environment: PYTHON (default python), MUTATION_JOBS (mutants tested at once, default 2), MUTATION_RECHECK (0: no
# recheck of the survivors, below), MUTATION_TIMEOUT_MULTIPLIER (below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
JOBS="${MUTATION_JOBS:-2}"

# mutmut names a mutant <module>.x_<function>__mutmut_<n>, or <module>.xǁ<Class>ǁ<method>__mutmut_<n>. mutmut generates
# the mutants of every function of the FILES; only those named by the SCOPE are tested.
#
# --fast: the pure functions that decide an answer, with the unit tests only (no model runs: a mutant costs seconds).
# Tokenization's character offsets, the windows and the answer's token positions in them (features.py), the best
# spans and their log partition, the merge across windows (spans.py), post-processing (utils_qa.py), the metrics,
# the choice of answers from the scores (all of decoding.py), the error categories (analysis.py), where an answer is
# in its paragraph (adl_data.py), and the CSV field and the encoding of every text output (outputs.py). The functions
# of these files that only inference.py reaches are in the wiring scope (its tests run models); check_window_fits,
# reached by the training scripts only, is in neither.
FAST_FILES=(tokens.py features.py spans.py metrics.py decoding.py analysis.py adl_data.py utils_qa.py outputs.py)
FAST_SCOPE=(
    'tokens.x_tokenize_texts__*' 'tokens.x__tokenize_at_ideographs__*' 'tokens.x__encodings_to_tokens__*'
    'tokens.x_truncate_questions__*' 'tokens.x_join_tokens__*'
    'features.xǁ*' 'features.x_window_spans__*' 'features.x_model_inputs__*' 'features.x_mask_filler_choices__*'
    'features.x_question_windows__*' 'features.x_answer_token_positions__*' 'features.x_window_features__*'
    'features.x_add_answer_positions__*'
    'spans.x_token_runs__*' 'spans.x_paragraph_runs__*' 'spans.x_best_spans_of_windows__*' 'spans.x__merge_runs__*'
    'spans.x__first_in_order__*' 'spans.x__log_partitions__*' 'spans.x_character_spans__*'
    'spans.x_merge_character_spans__*'
    'metrics.x_normalize_answer__*' 'metrics.x_char_f1__*' 'metrics.x_compute_qa_metrics__*'
    'decoding.xǁ*' 'decoding.x_paragraph_log_probs__*' 'decoding.x_top_paragraphs__*'
    'decoding.x_merge_span_candidates__*' 'decoding.x_joint_score__*' 'decoding.x_decode__*'
    'analysis.x_category__*'
    'adl_data.x_locate_answer__*' 'adl_data.x__find_all__*' 'adl_data.x__checked_answer__*'
    'utils_qa.x_prepare_train_features__*' 'utils_qa.x_prepare_validation_features__*'
    'utils_qa.x_postprocess_qa_predictions__*' 'utils_qa.x__offsets_as_arrays__*'
    'outputs.x_csv_field__*' 'outputs.x_json_text__*' 'outputs.x__open__*'
)
FAST_TESTS=(
    tests/test_span_features.py tests/test_metrics.py tests/test_decoding.py tests/test_adl_data.py
    tests/test_paragraph_features.py tests/test_tokenize_texts.py
)
# --wiring: the glue that turns model scores into answers and files, with the tests that run tiny models in-process
# (each mutant costs seconds to a minute). inference.py's two stages: the models' contexts read (run_end_to_end),
# questions tokenized in groups, paragraph scores, the spans of each window merged per paragraph (find_spans), the
# outputs planned, the stages combined; and the functions of the fast files that only inference.py reaches (the
# metrics of its answers, the character offsets of a window, the paragraph tokens). convert_squad.py: the fields and
# characters checked, the answer checked and repaired, hard negatives, the gold position, the merge. run_intent.py
# and run_slot.py: the features and labels, and the predictions read back as intents and tags.
# Left out (docs/mutation-testing.md): what only test_end_to_end.py and test_intent_slot_scripts.py reach (they train
# models, and in subprocesses that mutmut cannot see: inference.answers_end_to_end, apply_submission_settings,
# decoding.spans_of_each_paragraph, tokens.CandidateTokens, the scripts' main()s); model loading and
# devices (members.py: choose_device, load_members, check_finite); argument parsing; logging;
# inference.predict (the steps above in order, and the files written).
WIRING_FILES=(inference.py convert_squad.py run_intent.py run_slot.py analysis.py spans.py tokens.py)
WIRING_SCOPE=(
    'inference.x_run_end_to_end__*' 'inference.x_tokenized_groups__*' 'inference.x_score_paragraphs__*'
    'inference.x_find_spans__*' 'inference.x_plan_outputs__*' 'inference.x_answers_in_two_stages__*'
    'analysis.x_answer_metrics__*' 'analysis.x__answer_of__*' 'spans.x_character_offsets__*'
    'tokens.xǁParagraphTokensǁ*'
    'convert_squad.x_read_squad_files__*' 'convert_squad.x__read_squad_question__*'
    'convert_squad.x_check_unique_ids__*' 'convert_squad.x_checked_answer__*' 'convert_squad.x_question_scores__*'
    'convert_squad.x_hard_negatives__*' 'convert_squad.x_merge_paragraphs__*' 'convert_squad.x_convert__*'
    'run_intent.x_prepare_intent_features__*'
    'run_slot.x_words_with_pieces__*' 'run_slot.x_prepare_slot_features__*' 'run_slot.x_tags_per_word__*'
    'run_slot.x_compute_slot_metrics__*' 'run_slot.x_score_predictions__*' 'run_slot.x_predicted_label_ids__*'
)
WIRING_TESTS=(
    tests/test_convert_squad.py tests/test_intent_slot_data.py tests/test_combining_decisions.py
    tests/test_candidate_positions.py tests/test_planted_scores.py tests/test_joint_and_ensembles.py
    tests/test_inference.py tests/test_analysis_boundaries.py
)
# Not run: the tests of those files that run a script in a subprocess (slow, and mutmut cannot see what they reach),
# and those of the exports (seconds each, and they check the exported model, which no mutated function changes).
DESELECT="not run_sh and not ctrl_c_or_sigterm and not interpreter_lacking and not command_line_error and not export"
# Lines not mutated: logging, and the wording of raised errors (the conditions that raise them are mutated).
IGNORED_LINES=('logger\.(debug|info|warning|error)\(' 'raise \w+\(')

results() {  # recheck or report, of the mutants named by PATTERNS: see benchmarks/mutation_results.py
    (cd "$WORK" && nice -n 10 "$PYTHON" "$ROOT/benchmarks/mutation_results.py" "$1" --deselect "$DESELECT" \
        --jobs "$JOBS" "${PATTERNS[@]}")
}

REPORT=0
MODE=all
PATTERNS=()
for arg in "$@"; do
    case "$arg" in
        --fast) MODE=fast ;;
        --wiring) MODE=wiring ;;
        --report) REPORT=1 ;;
        -*) echo "usage: bash benchmarks/mutation_test.sh [--fast | --wiring] [--report] [MUTANT_NAME_GLOB ...]" >&2
            exit 2 ;;
        *) PATTERNS+=("$arg") ;;
    esac
done
case "$MODE" in
    fast) FILES=("${FAST_FILES[@]}") SCOPE=("${FAST_SCOPE[@]}") TESTS=("${FAST_TESTS[@]}") ;;
    wiring) FILES=("${WIRING_FILES[@]}") SCOPE=("${WIRING_SCOPE[@]}") TESTS=("${WIRING_TESTS[@]}") ;;
    all) mapfile -t FILES < <(printf '%s\n' "${FAST_FILES[@]}" "${WIRING_FILES[@]}" | sort -u)
         SCOPE=("${FAST_SCOPE[@]}" "${WIRING_SCOPE[@]}")
         TESTS=("${FAST_TESTS[@]}" "${WIRING_TESTS[@]}") ;;
esac
WORK="${MUTATION_WORK_DIR:-$ROOT/.mutation/$MODE}"
if [[ ${#PATTERNS[@]} -eq 0 ]]; then PATTERNS=("${SCOPE[@]}"); fi
if [[ $REPORT -eq 1 ]]; then
    results report
    exit 0
fi

# Nothing is installed behind the user's back (PYTHON may be a system interpreter): mutmut goes into the project's
# virtual environment by hand, never into requirements.txt.
if ! "$PYTHON" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mutmut") != "3.8.1")' 2>/dev/null; then
    echo "mutation_test.sh: $PYTHON lacks mutmut 3.8.1: in the project's virtual environment run" \
        "pip install -r benchmarks/requirements-mutation.txt" >&2
    exit 1
fi

# The working tree (tracked and new files), modification times kept: mutmut mutates a file again only when it changed.
# The copy lands over whatever WORK holds: only an empty folder or one this script made (its setup.cfg) will do.
if [[ -d $WORK && -n "$(ls -A "$WORK")" ]] && ! grep -qx '\[mutmut\]' "$WORK/setup.cfg" 2>/dev/null; then
    echo "mutation_test.sh: $WORK is not empty and is no work folder of this script: choose another" \
        "MUTATION_WORK_DIR" >&2
    exit 1
fi
mkdir -p "$WORK"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard | tar -C "$ROOT" --null -T - -cf - | tar -C "$WORK" -xpf -

{
    echo "[mutmut]"
    echo "source_paths ="
    printf '    %s\n' "${FILES[@]}"
    echo "also_copy ="
    for path in $(git -C "$ROOT" ls-files --cached --others --exclude-standard | cut -d/ -f1 | sort -u); do
        [[ " ${FILES[*]} " == *" $path "* ]] || echo "    $path"
    done
    echo "pytest_add_cli_args_test_selection ="
    printf '    %s\n' "${TESTS[@]}"
    echo "pytest_add_cli_args ="
    printf '    %s\n' -k "$DESELECT" -p no:cacheprovider
    echo "do_not_mutate_patterns ="
    printf '    %s\n' "${IGNORED_LINES[@]}"
    # A mutant that makes the tests hang (an endless loop) is stopped after 2 x 3 x (its tests' time + 5 s) of CPU
    # time (mutmut counts CPU seconds, so cores shared with other work do not make a slow mutant look endless); the
    # defaults (15 and 1) let each endless loop burn minutes of CPU. MUTATION_TIMEOUT_MULTIPLIER raises the 3 to try
    # timeouts again: mutmut times a test without the subprocesses it runs (train.sh), so such tests can overrun.
    echo "timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-3}"
    echo "timeout_constant = 5"
} > "$WORK/setup.cfg"

cd "$WORK"
# One thread per process: the JOBS test processes share the cores (and forked processes stay safe).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
start=$(date +%s)
nice -n 10 "$PYTHON" -m mutmut run --max-children "$JOBS" "${PATTERNS[@]}" || echo "mutmut exited with status $?"
# Survivors tried again with the whole files of their tests (see mutation_results.py; a few seconds each, so
# MUTATION_RECHECK=0 skips it), then the score.
if [[ "${MUTATION_RECHECK:-1}" == 1 ]]; then results recheck; else results report; fi
echo "mutmut run and recheck: $(( $(date +%s) - start )) s wall"
