#!/usr/bin/env bash
# Mutation testing of the core (issue 15; docs/mutation-testing.md): mutmut changes one thing at a time in the
# functions that decide answers, windows, offsets, labels, metrics and input validation, runs the fast tests that
# reach the changed function, and counts the changes ("mutants") some test notices. Hours on 2 cores: not run by CI.
#
#   bash benchmarks/mutation_test.sh                      # every mutant of the scope below, then the score
#   bash benchmarks/mutation_test.sh 'decoding.x_decode*' # only the mutants whose names match (mutmut's globs)
#   bash benchmarks/mutation_test.sh --report             # the score of what has run so far, nothing run
#
# The work happens in a copy of the working tree, .mutation/ (git-ignored; MUTATION_WORK_DIR to move it), where
# mutmut keeps its mutated copies and results in mutants/. A later run tests again only the mutants named (all of
# the scope by default). `cd .mutation && python -m mutmut show NAME` prints a mutant's diff.
# Environment: PYTHON (default python), MUTATION_JOBS (mutants tested at once, default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${MUTATION_WORK_DIR:-$ROOT/.mutation}"
PYTHON="${PYTHON:-python}"
JOBS="${MUTATION_JOBS:-2}"

# What is mutated: these files (mutmut generates the mutants of all their functions), and of them only the mutants of
# the functions named by SCOPE are tested: those that decide the answer from the scores, the windows and the answer's
# token positions in them, the character offsets, the metrics, the filler-candidate mask, the chosen paragraph, the
# answer's repair in the data and the CSV quoting. Sized to run in about an hour on 2 shared cores.
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
    tests/test_planted_scores.py tests/test_joint_and_ensembles.py tests/test_inference.py tests/test_hostile_input.py
    tests/test_training_bad_input.py
)
# Not run: the tests of those files that run a script in a subprocess (slow, and mutmut cannot see what they reach),
# and those of the exports (seconds each, and they check the exported model, which no mutated function changes).
DESELECT="not run_sh and not ctrl_c_or_sigterm and not interpreter_lacking and not command_line_error and not export"
# Lines not mutated: logging, and the wording of raised errors (the conditions that raise them are mutated).
IGNORED_LINES=('logger\.(debug|info|warning|error)\(' 'raise \w+\(')

results() {  # recheck or report: see benchmarks/mutation_results.py
    (cd "$WORK" && nice -n 10 "$PYTHON" "$ROOT/benchmarks/mutation_results.py" "$1" --deselect "$DESELECT" \
        --jobs "$JOBS" "${SCOPE[@]}")
}

PATTERNS=("${SCOPE[@]}")
case "${1:-}" in
    --report) results report; exit 0 ;;
    -*) echo "usage: bash benchmarks/mutation_test.sh [--report | MUTANT_NAME_GLOB ...]" >&2; exit 2 ;;
    ?*) PATTERNS=("$@") ;;
esac

if ! "$PYTHON" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mutmut") != "3.8.1")' 2>/dev/null; then
    "$PYTHON" -m pip install -r "$ROOT/benchmarks/requirements-mutation.txt"
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
    # A mutant that makes the tests hang (an endless loop) is stopped after 15 x (its tests' time + 30 s): the
    # 30 s leave room for fixtures and for cores shared with other work, which the timing of the tests does not see.
    echo "timeout_constant = 30"
} > "$WORK/setup.cfg"

cd "$WORK"
# One thread per process: the JOBS test processes share the cores (and forked processes stay safe).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
start=$(date +%s)
nice -n 10 "$PYTHON" -m mutmut run --max-children "$JOBS" "${PATTERNS[@]}" || echo "mutmut exited with status $?"
# Survivors tried again with the whole files of their tests (see mutation_results.py), then the score.
results recheck
echo "mutmut run and recheck: $(( $(date +%s) - start )) s wall"
