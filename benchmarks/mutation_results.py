"""The results of benchmarks/mutation_test.sh: run in its work folder (.mutation/<mode>/), after `mutmut run`.

    python mutation_results.py recheck --deselect EXPR PATTERN [PATTERN ...]
    python mutation_results.py report PATTERN [PATTERN ...]

PATTERNs are mutmut's mutant-name globs (the scope). `recheck` tries each surviving mutant again with the whole test
files of the tests that reached its function: mutmut runs only the tests that called the mutated function, and a
module-scoped fixture calls it once, inside the first test that uses the fixture, so the other tests that check the
fixture's results are not run. What the files kill is recorded in mutants/recheck.json. `report` prints the mutation
score per file and every mutant not killed.
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECHECK = Path("mutants/recheck.json")
COLUMNS = ("killed", "killed by file", "timeout", "survived", "no tests")


def mutants_in_scope(scope):
    """{source file: {mutant name: mutmut's exit code (None when not run yet)}}, for the mutants matching `scope`."""
    result = {}
    for meta in sorted(Path("mutants").glob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        chosen = {name: code for name, code in codes.items() if any(fnmatch.fnmatch(name, p) for p in scope)}
        if chosen:
            result[meta.name[: -len(".meta")]] = chosen
    return result


def recheck(scope, deselect, jobs):
    tests_of_function = json.loads(Path("mutants/mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    rechecked = json.loads(RECHECK.read_text()) if RECHECK.exists() else {}
    survivors = [name for codes in mutants_in_scope(scope).values() for name, code in codes.items() if code == 0]

    def run_files(name):
        files = sorted({test.split("::")[0] for test in tests_of_function.get(name.partition("__mutmut_")[0], [])})
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-k", deselect, *files]
        result = subprocess.run(
            command,
            cwd="mutants",
            env={**os.environ, "MUTANT_UNDER_TEST": name},
            capture_output=True,
            text=True,
            check=False,
        )
        return name, files, result.returncode

    with ThreadPoolExecutor(jobs) as pool:
        for name, files, returncode in pool.map(run_files, survivors):
            rechecked[name] = {0: "survived", 1: "killed"}.get(returncode, f"exit {returncode}")
            print(f"recheck {name}: {rechecked[name]} ({' '.join(files)})", flush=True)
            RECHECK.write_text(json.dumps(rechecked, indent=1, sort_keys=True))


def report(scope):
    # mutmut's meaning of its exit codes (killed, survived, timeout...); imported here so that --help needs no mutmut
    from mutmut.stats import status_by_exit_code

    rechecked = json.loads(RECHECK.read_text()) if RECHECK.exists() else {}
    rows, totals, not_killed = [], Counter(), []
    for source, codes in mutants_in_scope(scope).items():
        counts = Counter()
        for name, code in codes.items():
            status = status_by_exit_code[code]
            if status == "survived" and rechecked.get(name) == "killed":
                status = "killed by file"
            counts[status] += 1
            if status not in ("killed", "killed by file", "timeout"):
                not_killed.append(f"{status}: {name}")
        rows.append((source, counts))
        totals += counts
    print(f"{'file':<14}{'mutants':>8}" + "".join(f"{c:>15}" for c in COLUMNS) + f"{'other':>7}{'score':>8}")
    for source, counts in rows + [("all", totals)]:
        total = sum(counts.values())
        other = total - sum(counts[c] for c in COLUMNS)
        score = 100 * (counts["killed"] + counts["killed by file"] + counts["timeout"]) / total
        print(f"{source:<14}{total:>8}" + "".join(f"{counts[c]:>15}" for c in COLUMNS) + f"{other:>7}{score:>7.1f}%")
    print("score = (killed + killed by file + timeout) / mutants; other = not run yet, or suspicious")
    print(f"\n{len(not_killed)} not killed:")
    print("\n".join(sorted(not_killed)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["recheck", "report"])
    parser.add_argument("patterns", nargs="+", help="mutmut mutant-name globs: the scope")
    parser.add_argument("--deselect", default="", help="recheck: pytest -k expression of the tests not to run")
    parser.add_argument("--jobs", type=int, default=2, help="recheck: mutants tried at once")
    args = parser.parse_args()
    if args.command == "recheck":
        recheck(args.patterns, args.deselect, args.jobs)
    report(args.patterns)


if __name__ == "__main__":
    main()
