"""Mutation testing of the services, accounts and training with mutmut, and the score it reaches.

    python -m bench.mutation                 # run every mutant not yet tried, then print the score
    python -m bench.mutation --report        # print the score of what has run so far
    python -m bench.mutation "webapp.billing.services.*"   # (re)run only the mutants matching a glob
    python -m bench.mutation --report --postgresql postgresql://postgres@localhost/minion_mutation

The settings live in pyproject.toml's [tool.mutmut]; mutmut keeps its work in mutants/ and
resumes where it stopped. Only the fast tests run against mutants: SQLite (TEST_DATABASE_URL
is removed from the environment) and no browser. Survivors that cannot be killed because they
do not change behaviour are listed, each with its reason, in bench/mutation_equivalents.txt;
they leave the score's denominator. Survivors that only PostgreSQL can tell apart (row order without
ORDER BY, case-sensitive LIKE, row locks) are listed in bench/mutation_postgresql.txt with the test
that kills them there: with a PostgreSQL URL, that test runs against the mutant on PostgreSQL, and
the mutant counts as killed only when it fails there (and passes without the mutant). The command
fails when the services score under TARGET.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "bench" / "mutation_equivalents.txt"
POSTGRESQL_KILLS = ROOT / "bench" / "mutation_postgresql.txt"
TARGET = 85.0
SERVICES = "webapp/*/services.py"
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
STATUS = {**KILLED, 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def run_mutmut(mutant_globs: list[str], max_children: int | None) -> int:
    env = {key: value for key, value in os.environ.items() if key not in ("TEST_DATABASE_URL", "CI")}
    # mutmut runs pytest many times in one process and its forks, and the tests' first app sets
    # INSTANCE_PATH for the whole process: left to pytest's numbered temporary folders, that first
    # session's folder is pruned by later pytest runs on the machine, and mutants die of missing
    # artifact files instead of failing tests. Both get folders of the run's own.
    own = ROOT / "mutants" / "tmp"
    (own / "pytest").mkdir(parents=True, exist_ok=True)
    env.update(INSTANCE_PATH=str(own / "instance"), PYTEST_DEBUG_TEMPROOT=str(own / "pytest"))
    # The mutmut script, not `python -m mutmut`: mutmut warns that the module form re-imports itself.
    command = [str(Path(sys.executable).parent / "mutmut"), "run", *mutant_globs]
    if max_children:
        command[2:2] = ["--max-children", str(max_children)]
    return subprocess.call(command, cwd=ROOT, env=env)


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why it does not change behaviour, from the equivalents file."""
    if not EQUIVALENTS.exists():
        return {}
    listed = {}
    for line in EQUIVALENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            listed[name] = reason.strip()
    return listed


def postgresql_kills() -> dict[str, str]:
    """Mutant name -> the test id that kills it on PostgreSQL, from bench/mutation_postgresql.txt."""
    listed = {}
    if POSTGRESQL_KILLS.exists():
        for line in POSTGRESQL_KILLS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, test_id, *_reason = line.split(maxsplit=2)
                listed[name] = test_id
    return listed


def first_failure_on_postgresql(test_ids: list[str], mutant: str, database_url: str) -> str | None:
    """The first of ``test_ids`` to fail on PostgreSQL with ``mutant`` switched on ("" for none), or None."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "PYTEST_XDIST_WORKER")}
    env.update(TEST_DATABASE_URL=database_url, MUTANT_UNDER_TEST=mutant,
               INSTANCE_PATH=str(ROOT / "mutants" / "tmp" / "instance"))
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-rf", "-n", "0", "-p", "no:cacheprovider", *test_ids]
    done = subprocess.run(command, cwd=ROOT / "mutants", env=env, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith(("FAILED tests/", "ERROR tests/"))]
    return failed[0] if failed else f"pytest exited with {done.returncode}"


def on_postgresql(sqlite_test_id: str) -> str | None:
    """The PostgreSQL twin of a test that mutmut ran on SQLite; None for a test without a database."""
    path, bracket, params = sqlite_test_id.partition("[")
    names = params.removesuffix("]").split("-")
    if not bracket or "sqlite" not in names:
        return None
    return f"{path}[{'-'.join('postgresql' if name == 'sqlite' else name for name in names)}]"


def search_postgresql_kills(found: dict[str, tuple[str, str]], database_url: str, globs: list[str]) -> None:
    """For each survivor not listed yet (matching one of ``globs``, if any), run the tests that reach its
    function on PostgreSQL, and print a line for bench/mutation_postgresql.txt when one of them kills it."""
    stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    listed = set(postgresql_kills()) | set(equivalent_mutants())
    for name, (_source, status) in sorted(found.items()):
        if status != "survived" or name in listed or (globs and not any(fnmatch(name, glob) for glob in globs)):
            continue
        tests = sorted(filter(None, map(on_postgresql, stats.get(name.rpartition("__mutmut_")[0], []))))
        killer = first_failure_on_postgresql(tests, name, database_url) if tests else None
        print(f"{name} {killer} (reason to write)" if killer else f"  survives on PostgreSQL too: {name}")


def kill_on_postgresql(found: dict[str, tuple[str, str]], database_url: str) -> dict[str, tuple[str, str]]:
    """Run each listed PostgreSQL test against its surviving mutant; the ones it fails are killed."""
    listed = {name: test for name, test in postgresql_kills().items() if found.get(name, ("", ""))[1] == "survived"}
    # Each test alone, as it runs against its mutants below (some share a module's database with
    # tests that leave rows behind, so together they would not show the same thing). A test that
    # fails without any mutant kills nothing: its mutants stay survivors.
    for test_id in sorted(set(listed.values())):
        if first_failure_on_postgresql([test_id], "", database_url):
            print(f"  {test_id} fails on PostgreSQL without any mutant, so its mutants stay survivors")
            listed = {name: test for name, test in listed.items() if test != test_id}
    killed = dict(found)
    for name, test_id in sorted(listed.items()):
        if first_failure_on_postgresql([test_id], name, database_url):
            killed[name] = (found[name][0], "killed")
            print(f"  killed on PostgreSQL by {test_id}: {name}")
        else:
            print(f"  listed in {POSTGRESQL_KILLS.name} but survives {test_id} on PostgreSQL too: {name}")
    return killed


def results() -> dict[str, tuple[str, str]]:
    """Mutant name -> (source file, status) for every mutant mutmut has generated."""
    found = {}
    for meta in sorted((ROOT / "mutants" / "webapp").rglob("*.py.meta")):
        source = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = (source, STATUS.get(exit_code, "suspicious"))
    return found


def score_line(label: str, statuses: list[str]) -> tuple[str, float | None]:
    counts = Counter(statuses)
    tried = sum(counts[s] for s in ("killed", "timeout", "survived", "no tests", "suspicious"))
    killed = counts["killed"] + counts["timeout"]
    percent = 100 * killed / tried if tried else None
    shown = f"{percent:.1f}%" if percent is not None else "n/a"
    detail = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    partial = f" -- PARTIAL: {counts['not checked']} mutants not run yet" if counts["not checked"] else ""
    return f"{label}: {shown} killed ({killed} of {tried} tried; {detail}){partial}", percent


def report(database_url: str | None) -> float | None:
    found = results()
    if not found:
        print("No mutants yet: run `python -m bench.mutation` first.")
        return None
    if database_url:
        found = kill_on_postgresql(found, database_url)
    else:
        print(f"No PostgreSQL URL (--postgresql or TEST_DATABASE_URL): the survivors in {POSTGRESQL_KILLS.name} stay survivors.")
    equivalents = equivalent_mutants()
    stale = sorted(set(equivalents) - set(found))
    kept = {name: entry for name, entry in found.items() if name not in equivalents}
    services = [status for source, status in kept.values() if fnmatch(source, SERVICES)]
    line, services_score = score_line("services (webapp/*/services.py)", services)
    print(line)
    print(score_line("everything mutated", [status for _source, status in kept.values()])[0])
    print(f"{len(equivalents) - len(stale)} equivalent mutants listed in {EQUIVALENTS.relative_to(ROOT)} are left out")
    for name in stale:
        print(f"  listed as equivalent but no longer generated: {name}")
    # mutmut numbers a function's mutants afresh when the function changes: a listed name that the
    # tests kill now names another mutant, and the list needs its new number.
    for name in sorted(set(equivalents) & set(found)):
        if found[name][1] in ("killed", "timeout"):
            print(f"  listed as equivalent but killed, so it names another mutant now: {name}")
    survivors = sorted(name for name, (_source, status) in kept.items() if status == "survived")
    if survivors:
        print(f"{len(survivors)} survivors (see each with `mutmut show NAME`):")
        for name in survivors:
            print(f"  {name}")
    return services_score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", nargs="*", help="globs of mutant names to (re)run, e.g. 'webapp.billing.*'")
    parser.add_argument("--report", action="store_true", help="only print the score of what has run")
    parser.add_argument("--max-children", type=int, help="parallel workers (default: one per core)")
    parser.add_argument("--postgresql", default=os.environ.get("TEST_DATABASE_URL"),
                        help=f"a PostgreSQL database to run the tests of {POSTGRESQL_KILLS.name} on")
    parser.add_argument("--search-postgresql", action="store_true",
                        help=f"run each unlisted survivor's tests (of the mutants named, if any) on PostgreSQL "
                             f"and print lines for {POSTGRESQL_KILLS.name}")
    options = parser.parse_args()
    if options.search_postgresql:
        if not options.postgresql:
            parser.error("--search-postgresql needs --postgresql URL (or TEST_DATABASE_URL)")
        search_postgresql_kills(results(), options.postgresql, options.mutants)
        return 0
    if not options.report:
        run_mutmut(options.mutants, options.max_children)
    services_score = report(options.postgresql)
    if services_score is None or services_score < TARGET:
        print(f"The services score is under the {TARGET:.0f}% target.")
        return 1
    if any(status == "not checked" for _source, status in results().values()):
        print("Some mutants have not run yet, so the score is not final; run the command again to resume.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
