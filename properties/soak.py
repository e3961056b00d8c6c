"""The soak command: the whole gate under many seeds, to show it raises no false alarms.

    python -m properties.soak                      # 20 seeds of the ci example count, 3 nightly seeds
    python -m properties.soak --seeds 5 --nightly-seeds 0 -- conftest.py -n auto
    python -m properties.soak --update-docs        # also record the result in docs/reliability.md

Each run is ``pytest <args> --hypothesis-profile=soak|nightly --hypothesis-seed=N``
(``soak`` is the ``ci`` profile's example count, not derandomized and without
the example database, so every seed explores different examples).  It prints
one line per run and a summary, and exits non-zero if any run failed.  With
``--update-docs[=NAME]`` it also writes them, with the date, the machine and
the command, into the section NAME (default ``soak``) of docs/reliability.md,
and rewrites the table of the processor each section ran on (``soak-machines``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from properties import records

DOCS = Path("docs") / "reliability.md"
# The section of DOCS listing the machine every other soak section ran on, rewritten with each record.
MACHINES = "soak-machines"
_RECORD = re.compile(r"<!-- ([\w.-]+):start -->\s*Latest run of `[^`]*`, started (.+?) on (.+?):\n")


def machines_table(text: str) -> str:
    """Which processor (and GPU, torch) each soak section of ``text`` ran on, read from the line
    the soak heads it with (``records.machine()``): a false alarm may need one processor's rounding."""
    rows = []
    for name, started, machine in _RECORD.findall(text):
        parts = re.match(r"(?P<cpu>.*?), (?P<cores>\d+) cores(?:, (?P<gpu>[^;]*?))?, [^,;]+; .*torch (?P<torch>\S+?),", machine)
        if parts is None:  # a line from another version of records.machine(): shown whole
            rows.append(f"| `{name}` | {machine} | | | | {started} |")
            continue
        gpu = parts["gpu"] or "none"
        rows.append(f"| `{name}` | {parts['cpu']} | {parts['cores']} | {gpu} | {parts['torch']} | {started} |")
    head = "| section | processor | cores | GPU | torch | started |\n|---|---|---:|---|---|---|"
    return "\n".join([head, *rows]) if rows else "No soak recorded yet."


def record_machines(*, docs: Path = DOCS) -> None:
    """Rewrite the section ``MACHINES`` of ``docs`` from its soak sections (``machines_table``)."""
    records.write_section(docs, MACHINES, machines_table(docs.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="runs with the soak profile (ci's example count)")
    parser.add_argument("--nightly-seeds", type=int, default=3, help="runs with the nightly profile")
    parser.add_argument("--first-seed", type=int, default=1, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument(
        "--update-docs", nargs="?", const="soak", metavar="NAME",
        help=f"also write the result into the section NAME (default: soak) of {DOCS} (run from the repository root)",
    )
    parser.add_argument("pytest_args", nargs="*", default=None, help="pytest arguments (default: conftest.py -n auto)")
    options = parser.parse_args(argv)
    if options.update_docs and (problem := records.missing_section(DOCS, options.update_docs)):
        parser.error(f"--update-docs={options.update_docs}: {problem}")
    if options.update_docs == MACHINES:
        parser.error(f"--update-docs={MACHINES}: that section is the table of the others' machines; name a soak's own section")
    pytest_args = options.pytest_args or ["conftest.py", "-n", "auto"]
    runs = [("soak", options.first_seed + i) for i in range(options.seeds)]
    runs += [("nightly", options.first_seed + i) for i in range(options.nightly_seeds)]
    failed_runs = 0
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    started = time.perf_counter()
    date, machine = records.utc_now(), records.machine()
    lines = []
    for profile, seed in runs:
        command = [
            sys.executable, "-m", "pytest", *pytest_args, "-q", "-p", "no:cacheprovider",
            f"--hypothesis-profile={profile}", f"--hypothesis-seed={seed}",
        ]
        began = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", result.stdout)}
        for key in totals:
            totals[key] += counts.get(key, 0)
        ok = result.returncode == 0
        failed_runs += not ok
        lines.append(
            f"{profile:8} seed {seed:4}: {'ok  ' if ok else 'FAIL'} "
            f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped "
            f"in {time.perf_counter() - began:.0f} s"
        )
        print(lines[-1], flush=True)
        if not ok:
            print("\n".join(result.stdout.splitlines()[-40:]), flush=True)
    summary = (
        f"soak: {len(runs)} runs, {failed_runs} failed; {totals['passed']} tests passed, {totals['failed']} failed, "
        f"{totals['error']} errors in {time.perf_counter() - started:.0f} s"
    )
    print(summary)
    if options.update_docs:
        command = shlex.join(["python", "-m", "properties.soak", *(argv if argv is not None else sys.argv[1:])])
        records.write_section(
            DOCS,
            options.update_docs,
            f"Latest run of `{command}`, started {date} on {machine}:\n\n"
            + "```\n" + "\n".join([*lines, summary]) + "\n```\n",
        )
        if records.missing_section(DOCS, MACHINES) is None:
            record_machines()
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
