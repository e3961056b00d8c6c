"""How the gate scales with cores: measured durations, projected and measured wall times.

    python -m benchmarks.scaling                            # print the Markdown report
    python -m benchmarks.scaling --output docs/scaling.md   # also write it between the file's markers
    python -m benchmarks.scaling --output docs/scaling.md --section scaling-2core   # another machine's record
    python -m benchmarks.scaling --quick                    # smoke run: a few tests, -n 0 and -n 2
    python -m benchmarks.scaling --timelines DIR            # also keep every run's per-test timeline (JSON)
    python -m benchmarks.scaling --rounds 3                 # -n 0 and -n auto three times each, interleaved: medians

1. The gate (``ci`` profile, ``--devices=cpu``) runs once with ``-n 0``, each
   test's duration recorded (``benchmarks.timeline``): the serial total and
   the longest test's share.
2. It runs with ``-n auto`` under xdist's ``load``, ``worksteal`` and
   ``loadgroup`` schedulers, and with ``-n 4``, ``-n 8``, ``-n 16`` where the
   machine has that many cores.  From the timelines: each worker's fixed cost,
   start-up (launch to its first test, split into process creation, import and
   collection, and waiting) and teardown (the last test to exit).
3. Projection for W workers: start-up + the longest-processing-time-first
   schedule of the serial durations on W workers + teardown.  Figures are one
   run each, except that ``--rounds N`` runs ``-n 0`` and ``-n auto`` N times,
   alternately, and reports the median run of each; the exit status is 0
   whatever the figures are.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import gate, report
from properties import records

COMMAND = "python -m benchmarks.scaling"
SECTION = "scaling"  # default markers in the --output file: <!-- scaling:start --> ... <!-- scaling:end -->
GATE_OPTIONS = ("--devices=cpu",)  # the same work on a GPU machine as on a CPU one
# --quick: two cheap properties on two layers, enough tests for two workers.
QUICK_OPTIONS = ("--properties=spec_is_usable,gradient_flow,finite_output", "--layers=CenteredLayer,MyLinear")
PROJECTED_WORKERS = (4, 8, 16, 32)
MEASURED_WORKERS = (4, 8, 16)
SCHEDULERS = ("load", "worksteal", "loadgroup")
LONGEST_SHARE_TARGET = 0.08


def _bytecode_note() -> str:
    """Which packages every process compiles again because PYTHONDONTWRITEBYTECODE is set.

    Such a process reads cached bytecode but writes none: a package without a
    cache (torch's is written by pip; pytest writes its assertion-rewritten
    copies of plugin packages, hypothesis, xdist and this framework, under its
    own name) is compiled in every process.  Judged by each package's __init__.
    """
    if not sys.dont_write_bytecode:
        return ""
    import importlib.util

    import pytest

    rewritten = f"{sys.implementation.cache_tag}-pytest-{pytest.__version__}.pyc"
    uncached = []
    for package, pytest_cache in (("torch", False), ("hypothesis", True), ("xdist", True), ("properties", True)):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        init = Path(spec.origin)
        if pytest_cache:
            cache = init.parent / "__pycache__" / f"{init.stem}.{rewritten}"
        else:
            cache = Path(importlib.util.cache_from_source(str(init)))
        if not cache.exists():
            uncached.append(package)
    if not uncached:
        return " PYTHONDONTWRITEBYTECODE is set, but the packages the gate imports had cached bytecode from earlier runs."
    return (
        f" **PYTHONDONTWRITEBYTECODE is set** and {', '.join(uncached)} had no cached bytecode: "
        "every process compiles them again, which inflates start-up."
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class TimedRun:
    """One gate run and, per process that ran tests, (node id, start, end) in wall-clock seconds,
    and when that process was created and had collected the tests (None where not known)."""

    run: gate.GateRun
    tests: dict[str, list[tuple[str, float, float]]]
    phases: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        """The run's options as a reader knows them: ``-n auto --dist=load``."""
        return " ".join(["-n", self.run.workers, *(o for o in self.run.extra if o.startswith("--dist"))])

    @property
    def workers(self) -> int:
        return len(self.tests)

    def durations(self) -> dict[str, float]:
        return {node: end - start for runs in self.tests.values() for node, start, end in runs}

    def start_up(self) -> float:
        """Launch to the first test, for the slowest worker to start."""
        return max(min(start for _, start, _ in runs) for runs in self.tests.values()) - self.run.started

    def teardown(self) -> float:
        """The end of the last test to the exit of the whole run."""
        return self.run.ended - max(end for runs in self.tests.values() for _, _, end in runs)

    def _phase(self, name: str) -> list[float] | None:
        times = [phases.get(name) for phases in self.phases.values()]
        return None if not times or None in times else times  # type: ignore[return-value]

    def last_created(self) -> float | None:
        """Launch to the creation of the last process that ran tests (xdist creates its workers one by one)."""
        created = self._phase("created")
        # max(0, ...): creation times come in clock ticks (10 ms), the launch time does not.
        return None if created is None else max(0.0, max(created) - self.run.started)

    def import_and_collect(self) -> float | None:
        """The longest any such process took from its creation to the end of its collection
        (Python, pytest and its plugins, torch, the catalogue, collecting)."""
        created, collected = self._phase("created"), self._phase("collected")
        if created is None or collected is None:
            return None
        return max(end - start for start, end in zip(created, collected))

    def all_collected(self) -> float | None:
        """Launch to the end of the last collection: xdist sends no test before every worker has collected."""
        collected = self._phase("collected")
        return None if collected is None else max(collected) - self.run.started


def timed_gate(workers: str, extra: Sequence[str]) -> TimedRun:
    with tempfile.TemporaryDirectory(prefix="gate-timeline-") as directory:
        run = gate.gate_wall_time(workers, extra=[*extra, "-p", "benchmarks.timeline", f"--timeline={directory}"])
        tests, phases = {}, {}
        for path in sorted(Path(directory).glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            tests[record["worker"]] = [tuple(test) for test in record["tests"]]
            phases[record["worker"]] = {name: record.get(name) for name in ("created", "collected")}
    if not tests:
        raise SystemExit(f"`{run.command}` ran no tests ({run.summary}); is the gate collected from {gate.ROOT}?")
    return TimedRun(run, tests, phases)


def median_run(runs: Sequence[TimedRun]) -> TimedRun:
    """The run of median wall time (the faster of the middle two for an even count)."""
    return sorted(runs, key=lambda timed: timed.run.seconds)[(len(runs) - 1) // 2]


def lpt_makespan(durations: Sequence[float], workers: int) -> float:
    """The finishing time of longest-processing-time-first list scheduling on ``workers``
    (within 4/3 of the optimum; xdist's own schedulers are no better than this)."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


@dataclasses.dataclass
class Scaling:
    machine: str  # described before the runs (the load average then)
    serial: TimedRun  # the median of the -n 0 rounds
    parallel: list[TimedRun]  # -n auto per scheduler (load's: the median of its rounds), then -n 4/8/16
    rounds: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # label: every round's wall time

    @property
    def durations(self) -> dict[str, float]:
        return self.serial.durations()

    @property
    def total(self) -> float:
        return sum(self.durations.values())

    @property
    def reference(self) -> TimedRun:
        """The run whose fixed costs the projection uses: ``-n auto``, load scheduling."""
        return self.parallel[0]

    def projected_wall(self, workers: int) -> float:
        fixed = self.reference.start_up() + self.reference.teardown()
        return fixed + lpt_makespan(list(self.durations.values()), workers)

    def speed_up(self, wall: float) -> float:
        return self.serial.run.seconds / wall if wall else float("nan")


def measure(*, quick: bool = False, rounds: int = 1) -> Scaling:
    extra = [*GATE_OPTIONS, *(QUICK_OPTIONS if quick else ())]
    cores = os.cpu_count() or 1
    machine = report.machine()
    workers = "2" if quick else "auto"
    serial_runs, reference_runs = [], []
    # Alternate the two runs the speed-up divides, so that a drift of the machine reaches both.
    for done in range(rounds):
        of = f" (round {done + 1} of {rounds})" if rounds > 1 else ""
        _log(f"gate with -n 0{of} ...")
        serial_runs.append(timed_gate("0", extra))
        _log(f"gate with -n {workers} --dist load{of} ...")
        reference_runs.append(timed_gate(workers, [*extra, "--dist=load"]))
    parallel = [median_run(reference_runs)]
    for scheduler in () if quick else [s for s in SCHEDULERS if s != "load"]:
        _log(f"gate with -n {workers} --dist {scheduler} ...")
        parallel.append(timed_gate(workers, [*extra, f"--dist={scheduler}"]))
    for count in () if quick else MEASURED_WORKERS:
        if count <= cores and count != parallel[0].workers:
            _log(f"gate with -n {count} ...")
            parallel.append(timed_gate(str(count), [*extra, "--dist=load"]))
    walls = {runs[0].label: [timed.run.seconds for timed in runs] for runs in (serial_runs, reference_runs)}
    return Scaling(machine, median_run(serial_runs), parallel, walls if rounds > 1 else {})


def _s(seconds: float) -> str:
    return f"{seconds:.1f}"


def render(scaling: Scaling, *, quick: bool = False) -> str:
    durations = scaling.durations
    total = scaling.total
    longest_node, longest = max(durations.items(), key=lambda item: item[1])
    serial_wall = scaling.serial.run.seconds
    reference = scaling.reference
    gate_text = " ".join(["pytest conftest.py -p no:cacheprovider -q --hypothesis-profile=ci", *GATE_OPTIONS])
    if quick:
        gate_text += " " + " ".join(QUICK_OPTIONS) + " (**quick run: a small part of the gate**)"

    measured_rows, start_up_rows = [], []
    for timed in (scaling.serial, *scaling.parallel):
        run = timed.run
        measured_rows.append(
            (
                f"`{timed.label}`",
                timed.workers if run.workers != "0" else 0,
                _s(run.seconds),
                _s(run.cpu_seconds),
                f"{scaling.speed_up(run.seconds):.2f}×",
                _s(timed.start_up()),
                _s(timed.teardown()),
                _s(sum(timed.durations().values())),
                run.summary,
            )
        )
        created, imported, collected = timed.last_created(), timed.import_and_collect(), timed.all_collected()
        start_up_rows.append(
            (
                f"`{timed.label}`",
                *("—" if value is None else _s(value) for value in (created, imported, collected)),
                _s(timed.start_up()),
            )
        )
    rounds_text = "".join(
        f" `{label}`: {', '.join(_s(wall) for wall in walls)} s in {len(walls)} rounds, the median run shown;"
        for label, walls in scaling.rounds.items()
    )
    slowest = sorted(durations.items(), key=lambda item: -item[1])[:8]
    slowest_rows = [(f"`{node.split('::')[-1]}`", f"{seconds:.2f}", f"{seconds / total:.1%}") for node, seconds in slowest]

    measured_wall = {t.workers: t.run.seconds for t in scaling.parallel if "--dist=load" in t.run.extra}
    projection_rows = []
    for workers in sorted({*PROJECTED_WORKERS, reference.workers}):
        makespan = lpt_makespan(list(durations.values()), workers)
        wall = scaling.projected_wall(workers)
        measured = measured_wall.get(workers)
        projection_rows.append(
            (
                workers,
                _s(makespan),
                _s(wall),
                f"{scaling.speed_up(wall):.2f}×",
                "—" if measured is None else _s(measured),
                "—" if measured is None else f"{scaling.speed_up(measured):.2f}×",
            )
        )

    share = longest / total
    auto_speed_up = scaling.speed_up(reference.run.seconds)
    projected_16 = scaling.speed_up(scaling.projected_wall(16))
    measured_16 = next((t for t in scaling.parallel if t.workers >= 16 and "--dist=load" in t.run.extra), None)

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    target_rows = [
        (f"the longest test ≤ {LONGEST_SHARE_TARGET:.0%} of the serial total", f"{share:.1%}", met(share <= LONGEST_SHARE_TARGET)),
        (
            f"`-n auto` ≥ 1.6× faster than `-n 0` ({reference.workers} workers, load)",
            f"{auto_speed_up:.2f}×",
            met(auto_speed_up >= 1.6),
        ),
        ("projected speed-up on 16 cores ≥ 6×", f"{projected_16:.2f}×", met(projected_16 >= 6)),
        (
            "measured speed-up with 16 workers ≥ 4×",
            "not measured: fewer than 16 cores" if measured_16 is None else f"{scaling.speed_up(measured_16.run.seconds):.2f}×",
            "—" if measured_16 is None else met(scaling.speed_up(measured_16.run.seconds) >= 4),
        ),
    ]
    worker_costs = [
        (t.run.workers, t.start_up(), t.teardown()) for t in scaling.parallel
    ]
    median_start = statistics.median(c[1] for c in worker_costs)
    median_teardown = statistics.median(c[2] for c in worker_costs)
    machine = scaling.machine + _bytecode_note()
    return "\n\n".join(
        [
            machine,
            f"Gate: `{gate_text}`, {len(durations)} tests. Each figure is one run, from launch to exit"
            + (f" (the runs alternated:{rounds_text[:-1]})" if rounds_text else "")
            + "; "
            "*start-up*: launch to the first test of the slowest worker to start (importing torch, collecting); "
            "*teardown*: the last test's end to exit; *test time*: the sum of the tests' durations "
            "(setup, call and teardown), which exceeds the serial total where each worker repeats first-use "
            "warm-ups (a first `torch.compile`, the meta device).",
            "### Measured\n\n"
            + report.table(
                ["command", "workers", "wall s", "CPU s", "speed-up", "start-up s", "teardown s", "test time s", "result"],
                measured_rows,
                "lrrrrrrrl",
            ),
            "### Start-up\n\n"
            "Launch to: the creation of the last process that runs tests (xdist creates its workers one after "
            "another); the end of the last collection (xdist's schedulers send no test before every worker has "
            "collected); the first test of the slowest worker to start. *Import and collection*: the longest a "
            "process took from its creation to the end of its collection (Python, pytest, torch, the catalogue). "
            "— where the system does not say when a process was created.\n\n"
            + report.table(
                ["command", "last process created s", "import and collection s", "all collected s", "start-up s"],
                start_up_rows,
                "lrrrr",
            ),
            f"### Durations (`-n 0`)\n\nSerial total {total:.1f} s in {len(durations)} tests; the longest, "
            f"`{longest_node.split('::')[-1]}`, takes {longest:.2f} s, {share:.1%} of it. The slowest:\n\n"
            + report.table(["test", "seconds", "share"], slowest_rows, "lrr"),
            "### Projection\n\n"
            f"Wall time on W workers = start-up ({reference.start_up():.1f} s) + the longest-processing-time-first "
            f"schedule of the serial durations on W workers + teardown ({reference.teardown():.1f} s), the fixed "
            f"costs from the `-n {reference.run.workers} --dist load` run (medians over all parallel runs: "
            f"{median_start:.1f} s and {median_teardown:.1f} s). It assumes W free cores as fast as these and "
            "no repeated warm-ups; speed-up = the measured `-n 0` wall time ÷ the projected one.\n\n"
            + report.table(
                ["workers", "schedule s", "projected wall s", "projected speed-up", "measured wall s", "measured speed-up"],
                projection_rows,
                "rrrrrr",
            ),
            "### Targets\n\n" + report.table(["target", "this run", "met"], target_rows, "lll"),
            f"*Serial wall time {serial_wall:.1f} s; load average (1/5/15 min) at the end: {report.load_average()}.*",
        ]
    ) + "\n"


def save_timelines(scaling: Scaling, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, timed in enumerate((scaling.serial, *scaling.parallel)):
        run = timed.run
        record = {
            "command": run.command, "started": run.started, "ended": run.ended, "tests": timed.tests, "phases": timed.phases,
        }
        path = directory / f"{index:02d}{timed.label.replace(' ', '').replace('--dist=', '')}.json"
        path.write_text(json.dumps(record), encoding="utf-8")
    _log(f"timelines in {directory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few tests, -n 0 and -n 2 only (smoke run)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the report into FILE, between the section's markers")
    parser.add_argument(
        "--section", default=SECTION, metavar="NAME",
        help=f"the markers <!-- NAME:start --> / <!-- NAME:end --> to write between (default: {SECTION}); "
        "one section per machine keeps each machine's record",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, metavar="N",
        help="run -n 0 and -n auto (load) N times each, alternately, and report the median run of each (default: 1)",
    )
    parser.add_argument(
        "--timelines", type=Path, metavar="DIR",
        help="also save each run's timeline (every test's start and end, per worker) as JSON in DIR, for analysis",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more (3 or 5: an odd count has one median run)")
    if args.output and (problem := records.missing_section(args.output, args.section)):
        parser.error(f"--output {problem}")
    started = time.perf_counter()
    scaling = measure(quick=args.quick, rounds=args.rounds)
    if args.timelines:
        save_timelines(scaling, args.timelines)
    body = render(scaling, quick=args.quick)
    options = f"{' --quick' if args.quick else ''}{f' --rounds {args.rounds}' if args.rounds > 1 else ''}"
    body += f"\n*`{COMMAND}{options}` took {time.perf_counter() - started:.0f} s.*\n"
    print("## Scaling with cores\n\n" + body)
    if args.output:
        records.write_section(args.output, args.section, body)
        _log(f"updated {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
