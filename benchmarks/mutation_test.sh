#!/usr/bin/env bash
# Mutation testing of the core (issue 15; docs/mutation-testing.md): mutmut changes one thing at a time in the
# functions that decide answers, windows, offsets, labels, metrics and input validation, runs the fast tests that
# reach the changed function, and counts the changes ("mutants") some test notices. Hours on 2 cores: not run by CI.
#
#   bash benchmarks/mutation_test.sh                       # every mutant of SCOPE below, then the score (hours)
#   bash benchmarks/mutation_test.sh --fast                # FAST_SCOPE with the unit tests only (about 30 minutes)
#   bash benchmarks/mutation_test.sh --fast 'decoding.*'   # only the mutants whose names match (mutmut's globs)
#   bash benchmarks/mutation_test.sh --fast --report       # the score of what has run so far, nothing run
#
# The work happens in a copy of the working tree, .mutation/ (git-ignored; MUTATION_WORK_DIR to move it), where
# mutmut keeps its mutated copies and results in mutants/. A later run tests again only the mutants named (all of
# the scope by default). `cd .mutation && python -m mutmut show NAME` prints a mutant's diff.
# Environment: PYTHON (default python), MUTATION_JOBS (mutants tested at once, default 2), MUTATION_RECHECK (0: no
# recheck of the survivors, below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${MUTATION_WORK_DIR:-$ROOT/.mutation}"
PYTHON="${PYTHON:-python}"
JOBS="${MUTATION_JOBS:-2}"

# What is mutated: these files (mutmut generates the mutants of all their functions), and of them only the mutants of
# the functions named by SCOPE are tested: those that decide the answer from the scores, the windows and the answer's
# token positions in them, the character offsets, the metrics, the filler-candidate mask, the chosen paragraph, the
# answer's repair in the data and the CSV quoting. Hours on 2 shared cores (tests that run models, per mutant).
FILES=(utils_qa.py decoding.py analysis.py adl_data.py inference.py run_swag.py run_qa.py)
# mutmut names a mutant <module>.x_<function>__mutmut_<n>, or <module>.xǁ<Class>ǁ<method>__mutmut_<n>.
SCOPE=(
    # how the answer is chosen from the scores: paragraph probabilities, ensembles, joint decoding (all of decoding.py)
    'decoding.*'
    # windows, answer labels, offsets, the n-best merge across windows, the metrics, the filler mask
    'utils_qa.x_window_spans__*' 'utils_qa.x_answer_token_positions__*' 'utils_qa.x_character_spans__*'
    'utils_qa.x_merge_character_spans__*' 'utils_qa.x__offsets_as_arrays__*' 'utils_qa.x_normalize_answer__*'
    'utils_qa.x__char_f1__*' 'utils_qa.x_compute_qa_metrics__*' 'utils_qa.x_mask_filler_choices__*'
    # the error categories of the end-to-end analysis
    'analysis.x_category__*'
    # the training loss over real candidates only, and the paragraph run_swag.py chooses
    'run_swag.x*MultipleChoiceTrainer*compute_loss__*' 'run_swag.x_chosen_paragraphs__*'
    # where an answer is in its paragraph (and its repair), and the CSV quoting of the submission
    'adl_data.x_locate_answer__*' 'adl_data.x__find_all__*' 'adl_data.x_csv_field__*'
)
TESTS=(
    tests/test_adl_data.py tests/test_metrics.py tests/test_span_features.py tests/test_paragraph_features.py
    tests/test_decoding.py tests/test_planted_scores.py tests/test_joint_and_ensembles.py tests/test_inference.py
    tests/test_hostile_input.py tests/test_training_bad_input.py
)
# --fast: the files that choose the answer (post-processing, decoding, metrics) and the CSV field, every function that
# does so, with the unit tests only (no model is run: a mutant costs seconds, not minutes).
FAST_FILES=(utils_qa.py decoding.py analysis.py adl_data.py)
FAST_SCOPE=(
    'decoding.*' 'analysis.x_category__*'
    'utils_qa.x_window_spans__*' 'utils_qa.x_answer_token_positions__*' 'utils_qa.x_best_spans_of_windows__*'
    'utils_qa.x__first_in_order__*' 'utils_qa.x__log_partitions__*' 'utils_qa.x_best_spans_on_device__*'
    'utils_qa.x_character_spans__*' 'utils_qa.x_merge_character_spans__*' 'utils_qa.x_postprocess_qa_predictions__*'
    'utils_qa.x__offsets_as_arrays__*' 'utils_qa.x_normalize_answer__*' 'utils_qa.x__char_f1__*'
    'utils_qa.x_compute_qa_metrics__*' 'utils_qa.x_mask_filler_choices__*'
    'adl_data.x_locate_answer__*' 'adl_data.x__find_all__*' 'adl_data.x_csv_field__*'
)
FAST_TESTS=(
    tests/test_span_features.py tests/test_metrics.py tests/test_decoding.py tests/test_adl_data.py
    tests/test_paragraph_features.py
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
PATTERNS=()
for arg in "$@"; do
    case "$arg" in
        --fast) FILES=("${FAST_FILES[@]}") SCOPE=("${FAST_SCOPE[@]}") TESTS=("${FAST_TESTS[@]}") ;;
        --report) REPORT=1 ;;
        -*) echo "usage: bash benchmarks/mutation_test.sh [--fast] [--report] [MUTANT_NAME_GLOB ...]" >&2; exit 2 ;;
        *) PATTERNS+=("$arg") ;;
    esac
done
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
    # defaults (15 and 1) let each endless loop burn minutes of CPU.
    echo "timeout_multiplier = 3"
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
