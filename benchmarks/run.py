"""Measure the framework side by side in one run and print Markdown tables.

    python -m benchmarks.run                  # the full run (about 5 minutes on 2 cores)
    python -m benchmarks.run --quick          # tiny counts, no gate timing: a smoke run
    python -m benchmarks.run --output FILE    # also write the Markdown to FILE
    python -m benchmarks.run --update-docs    # also replace the tables in docs/performance.md
    python -m benchmarks.run --commands-only --update-docs  # only the README's commands, timed
    python -m benchmarks.run --scaling        # also how the gate scales with cores (benchmarks.scaling)

1. tensors per second of the project's strategy, of the shape-only floor and
   of ``hypothesis.extra.numpy.arrays`` + ``torch.from_numpy``, at float32
   shapes up to 8x8, 64x64 and 256x256;
2. what "some element > 5" on a 3x4 float32 tensor shrinks to, per strategy;
3. examples per second of each property on each lesson layer, and (3b) on
   each of the gallery's families (torch's own modules);
4. the wall time of the default gate (``ci`` profile) with ``-n 0`` and
   ``-n auto``, and their ratio;
5. the wall time of the README's commands (``pytest -n auto``, the gate
   alone, the slow self-tests that ``.ci/run`` adds); ``--update-docs`` also
   writes them into README.md;
then the issue's targets, each marked met or not.  Figures are ratios and
rates measured in one run, never asserted: the exit status is 0 whatever
they are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import gate, generation, report, scaling
from properties import gallery, records
from properties.runner import registered_properties
from properties.plugin import CI_EXAMPLES

DOCS = gate.ROOT / "docs" / "performance.md"
README = gate.ROOT / "README.md"
SECTION = "benchmarks"
COMMAND = "python -m benchmarks.run"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, no variants, no gate timing (smoke run)")
    parser.add_argument("--examples", type=int, help="examples per generation measurement (default 300; quick 20)")
    parser.add_argument("--rounds", type=int, help="interleaved generation rounds, the median kept (default 7; quick 1)")
    parser.add_argument("--seeds", type=int, help="seeds for the shrinking check (default 10; quick 2)")
    parser.add_argument(
        "--property-examples", type=int, help="examples per property and layer (default: the ci profile's count; quick 2)"
    )
    parser.add_argument(
        "--gallery-examples", type=int, help="examples per property on each gallery family (default 25; quick 2)"
    )
    parser.add_argument("--skip-gate", action="store_true", help="do not time the gate")
    parser.add_argument(
        "--gate-repeats", type=int, default=2, help="runs of the gate per worker count, alternating, best kept (default 2)"
    )
    parser.add_argument(
        "--skip-commands", action="store_true", help="do not time the README's commands (pytest -n auto, ...)"
    )
    parser.add_argument(
        "--commands-only",
        action="store_true",
        help="time only the README's commands (with --update-docs: write only the README's timings)",
    )
    parser.add_argument(
        "--scaling", action="store_true", help=f"also measure how the gate scales with cores (`{scaling.COMMAND}`)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the Markdown report to FILE")
    parser.add_argument(
        "--update-docs", action="store_true", help=f"replace the {SECTION} section of {DOCS.relative_to(gate.ROOT)}"
    )
    args = parser.parse_args(argv)
    for path, name in ((DOCS, SECTION), (README, "timings")) if args.update_docs else ():
        if problem := records.missing_section(path, name):
            parser.error(f"--update-docs: {problem}")
    quick = args.quick
    args.examples = args.examples or (20 if quick else 300)
    args.rounds = args.rounds or (1 if quick else 7)
    args.seeds = args.seeds or (2 if quick else 10)
    args.property_examples = args.property_examples or (2 if quick else CI_EXAMPLES)
    args.gallery_examples = args.gallery_examples or (2 if quick else 25)
    args.skip_gate = args.skip_gate or quick
    args.skip_commands = args.skip_commands or quick
    return args


def generation_section(rates: dict[int, dict[str, generation.Rate]], args: argparse.Namespace) -> str:
    rows = []
    for side, named in rates.items():
        floor = named[generation.FLOOR].per_second
        arrays = named[generation.ARRAYS].per_second
        for name, rate in named.items():
            rows.append(
                (
                    f"{side}×{side}",
                    name,
                    rate.examples,
                    f"{rate.per_second:,.0f}",
                    f"{_ratio(rate.per_second, floor):.0%}",
                    f"{_ratio(rate.per_second, arrays):.2f}×",
                )
            )
    floor_8 = rates[generation.SIDES[0]][generation.FLOOR].examples
    note = (
        f"float32, 2-d shapes with sides 1..N drawn from one shared `st.tuples(st.integers(1, N), st.integers(1, N))`; "
        f"up to {args.examples} examples per measurement, generate phase only, no database, each after a full "
        f"garbage collection; the median of {args.rounds} interleaved rounds. Rate = steady state: (examples − 1) / time from the first to the last call of a "
        "do-nothing test body. *vs floor*: rate ÷ the shape-only rate; *vs arrays*: rate ÷ the "
        "`arrays(np.float32, shape).map(torch.from_numpy)` rate."
    )
    if floor_8 < args.examples:
        note += f" At 8×8 the floor stops after {floor_8} examples: Hypothesis has then drawn every distinct shape."
    note += (
        " The last three rows of each size are diagnostics: the same project strategy with "
        "`torch.set_num_threads(1)`; the shape plus the project's one choice (seed, head and which elements are kept), no "
        "tensor: what Hypothesis itself charges for it; and the seed-only strategy of the issue (shape and "
        "seed, then `torch.randn`), which is fast but shrinks to a dense random tensor."
    )
    return (
        "### 1. Tensors per second\n\n"
        + note
        + "\n\n"
        + report.table(["max shape", "strategy", "examples", "tensors/s", "vs floor", "vs arrays"], rows, "llrrrr")
    )


def shrinking_section(results: dict[str, generation.Shrunk], seeds: int) -> str:
    rows = []
    for name, shrunk in results.items():
        exactly_one = sum(1 for n in shrunk.nonzeros if n == 1)
        rows.append(
            (
                name,
                f"{exactly_one}/{len(shrunk.nonzeros)}",
                ", ".join(map(str, shrunk.nonzeros)),
                f"`{shrunk.typical}` ({shrunk.typical_count}/{len(shrunk.nonzeros)})",
                f"{shrunk.seconds:.1f}",
            )
        )
    return (
        "### 2. Shrinking: some element > 5 in a 3×4 float32 tensor\n\n"
        f"`hypothesis.find(strategy, lambda t: bool((t > 5).any()), random=random.Random(seed))` for seeds "
        f"0..{seeds - 1} (no database): how many non-zero elements the shrunk tensor keeps.\n\n"
        + report.table(
            ["strategy", "exactly one non-zero", "non-zeros per seed", "most common result (seeds)", "seconds"],
            rows,
            "lrlll",
        )
    )


def property_section(rates: list[gate.PropertyRate], args: argparse.Namespace, *, gallery_examples: int | None = None) -> str:
    rows = [
        (
            f"`{r.prop}`",
            r.family,
            r.layer,
            r.examples,
            r.discarded,
            f"{r.seconds:.2f}",
            f"{r.per_second:,.1f}",
            r.outcome,
        )
        for r in rates
    ]
    total_examples = sum(r.examples for r in rates)
    total_seconds = sum(r.seconds for r in rates)
    rows.append(("**all**", "", "", total_examples, sum(r.discarded for r in rates), f"{total_seconds:.1f}", f"{_ratio(total_examples, total_seconds):,.1f}", ""))
    skipped = " The `variants` family is left out (`--quick`)." if args.quick else ""
    if args.quick and gallery_examples is not None:
        skipped = " Only the `laws` family (`--quick`)."
    heading = "### 3. Examples per second of each property on each layer\n\n"
    if gallery_examples is not None:
        heading = (
            "### 3b. Examples per second on the gallery's families\n\n"
            "The same measurement on torch's own modules in `properties.gallery.TORCH_SPECS`: "
        )
    return (
        heading
        + f"`properties.runner.check_layer(spec, [property], settings=...)` with max_examples={gallery_examples or args.property_examples}, "
        "generate phase only, no database, derandomized, in one process, in catalogue order, after one untimed "
        "warm-up example. *examples*: examples that reached the check (the variants run a tenth, at least two); "
        "*discarded*: draws Hypothesis abandoned (overruns), which cost time but are not examples; "
        "*examples/s* = examples ÷ seconds. Times include everything per property: building layers, references, "
        "the first compilation of a variant. An outcome other than ok is the first failure, unshrunk (generate "
        "phase only)." + skipped + "\n\n"
        + report.table(
            ["property", "family", "layer", "examples", "discarded", "seconds", "examples/s", "outcome"], rows, "lllrrrrl"
        )
    )


def gate_section(runs: list[gate.GateRun], repeats: int) -> str:
    if not runs:
        return "### 4. Gate wall time\n\nNot measured in this run (`--quick` or `--skip-gate`)."
    rows = [
        (f"`{run.command}`", f"{run.seconds:.1f}", f"{run.cpu_seconds:.1f}", f"{_ratio(run.cpu_seconds, run.seconds):.2f}", run.summary)
        for run in runs
    ]
    by = {run.workers: run.seconds for run in runs}
    rows.append(("**ratio** `-n 0` ÷ `-n auto`", f"{_ratio(by['0'], by['auto']):.2f}×", "", "", ""))
    return (
        "### 4. Gate wall time\n\n"
        f"The default gate (`conftest.py`, every property on every lesson layer, `ci` profile: {CI_EXAMPLES} examples, "
        "derandomized) in a subprocess from the repository root, timed from start to exit"
        + (f"; best of {repeats} alternating runs" if repeats > 1 else "")
        + ". *CPU s*: user + system time of pytest and its xdist workers; *cores busy* = CPU s ÷ wall s, what the "
        "run actually got of the machine (on a machine shared with other work, `-n auto` can only be faster "
        "if this exceeds 1).\n\n"
        + report.table(["command", "wall s", "CPU s", "cores busy", "result"], rows, "lrrrl")
    )


def commands_section(runs: list[gate.GateRun]) -> str:
    if not runs:
        return "### 5. The README's commands\n\nNot measured in this run (`--quick` or `--skip-commands`)."
    rows = [
        (f"`{run.workers}`", f"{run.seconds:.0f}", f"{run.cpu_seconds:.0f}", f"{_ratio(run.cpu_seconds, run.seconds):.2f}", run.summary)
        for run in runs
    ]
    return (
        "### 5. The README's commands\n\n"
        "Each once, from the repository root, as a user runs them (no `CI` variable: the `dev` profile); "
        "`pytest -n auto -m slow` is what `.ci/run` adds. Columns as in section 4.\n\n"
        + report.table(["command", "wall s", "CPU s", "cores busy", "result"], rows, "lrrrl")
    )


def readme_timings(runs: list[gate.GateRun]) -> str:
    """The README's sentence on how long its commands take, from this run."""
    took = "; ".join(f"`{run.workers}` {run.seconds:.0f} s" for run in runs)
    return (
        f"Measured by `{COMMAND} --commands-only --update-docs` (one run each) on {records.machine()}, {records.utc_now()}, "
        f"load average {report.load_average()}: {took}."
    )


def targets_section(
    rates: dict[int, dict[str, generation.Rate]],
    shrunk: dict[str, generation.Shrunk],
    runs: list[gate.GateRun],
) -> str:
    def ratios(side: int, name: str) -> tuple[float, float]:
        named = rates[side]
        value = named[name].per_second
        return _ratio(value, named[generation.FLOOR].per_second), _ratio(value, named[generation.ARRAYS].per_second)

    floor64, arrays64 = ratios(64, generation.PROJECT)
    _, arrays256 = ratios(256, generation.PROJECT)
    floor64_1t, arrays64_1t = ratios(64, generation.PROJECT_1T)
    one_choice64, _ = ratios(64, generation.ONE_CHOICE)
    seed_only64, _ = ratios(64, generation.SEED_ONLY)
    _, arrays256_1t = ratios(256, generation.PROJECT_1T)

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    project_shrunk = shrunk[generation.PROJECT].nonzeros
    ones = sum(1 for n in project_shrunk if n == 1)
    rows = [
        (
            "project ≥ 80% of the floor at 64×64",
            f"{floor64:.0%} (1 thread: {floor64_1t:.0%}; its one choice alone: {one_choice64:.0%}; "
            f"seed only: {seed_only64:.0%})",
            met(floor64 >= 0.8),
        ),
        ("project ≥ 2.5× arrays at 64×64", f"{arrays64:.2f}× (1 thread: {arrays64_1t:.2f}×)", met(arrays64 >= 2.5)),
        (
            "the gap to arrays widens at 256×256",
            f"{arrays256:.2f}× vs {arrays64:.2f}× at 64×64 (1 thread: {arrays256_1t:.2f}×)",
            met(arrays256 >= arrays64),
        ),
        ("shrinking ends with exactly one non-zero element", f"{ones}/{len(project_shrunk)} seeds", met(ones == len(project_shrunk))),
    ]
    if runs:
        by = {run.workers: run for run in runs}
        auto, serial = by["auto"], by["0"]
        rows.append(("gate with `-n auto` ≤ 60 s (`ci`)", f"{auto.seconds:.1f} s", met(auto.seconds <= 60 and auto.returncode == 0)))
        speedup = _ratio(serial.seconds, auto.seconds)
        rows.append(("`-n auto` ≥ 1.6× faster than `-n 0`", f"{speedup:.2f}×", met(speedup >= 1.6)))
    else:
        rows.append(("gate wall time and `-n auto` speed-up", "not measured", "—"))
    return "### Targets\n\n" + report.table(["target", "measured", "met"], rows, "lll")


def time_commands() -> list[gate.GateRun]:
    runs = []
    for label, command_args in gate.USER_COMMANDS:
        _log(f"commands: {label} ...")
        runs.append(gate.user_command_wall_time(label, command_args))
    return runs


def build_report(args: argparse.Namespace) -> tuple[str, list[gate.GateRun]]:
    started = time.perf_counter()
    machine = report.machine()
    _log("1/4 generation throughput ...")
    rates = generation.throughput(args.examples, args.rounds, _log)
    _log("2/4 shrinking ...")
    shrunk = generation.shrinking(args.seeds)
    _log("3/4 property rates ...")
    prop_rates = gate.property_rates(
        args.property_examples, skip_families=("variants",) if args.quick else (), log=_log
    )
    _log("3b/4 property rates on the gallery ...")
    # --quick: the laws alone (a smoke run must stay short; 17 families x the catalogue is not).
    others = tuple({p.family for p in registered_properties()} - {"laws"})
    gallery_rates = gate.property_rates(
        args.gallery_examples, skip_families=others if args.quick else (), log=_log, specs=gallery.TORCH_SPECS
    )
    runs: list[gate.GateRun] = []
    if not args.skip_gate:
        best: dict[str, gate.GateRun] = {}
        for repeat in range(args.gate_repeats):
            for workers in ("0", "auto") if repeat % 2 == 0 else ("auto", "0"):
                _log(f"4/4 gate with -n {workers} ({repeat + 1}/{args.gate_repeats}) ...")
                run = gate.gate_wall_time(workers)
                if workers not in best or run.seconds < best[workers].seconds:
                    best[workers] = run
        runs = [best["0"], best["auto"]]
    commands = [] if args.skip_commands else time_commands()
    sections = [
        machine,
        generation_section(rates, args),
        shrinking_section(shrunk, args.seeds),
        property_section(prop_rates, args),
        property_section(gallery_rates, args, gallery_examples=args.gallery_examples),
        gate_section(runs, args.gate_repeats),
        commands_section(commands),
        targets_section(rates, shrunk, runs),
    ]
    if args.scaling:
        _log("scaling ...")
        sections.append("### 6. Scaling with cores\n\n" + scaling.render(scaling.measure(quick=args.quick), quick=args.quick))
    footer = (
        f"*{'Quick run' if args.quick else 'Run'} took {time.perf_counter() - started:.0f} s; "
        f"load average (1/5/15 min) at the end: {report.load_average()}.*"
    )
    return "\n\n".join([*sections, footer]) + "\n", commands


def docs_section(body: str) -> str:
    return (
        f"`{COMMAND}` (numpy is needed: `pip install -e \".[bench]\"`) measures, side by side in one run:\n"
        "tensors per second of the project's strategy against Hypothesis' floor (drawing the shape only)\n"
        "and `hypothesis.extra.numpy.arrays` + `torch.from_numpy`; what each shrinks \"some element > 5\" to;\n"
        "examples per second of each property on each layer; and the gate's wall time with `-n 0` and\n"
        "`-n auto`. It prints Markdown tables; `--quick` is a smoke run (tiny counts, no gate timing),\n"
        "`--output FILE` also writes them to a file, `--update-docs` replaces this section. The figures\n"
        "are rates and ratios measured in one run, not timed tests: compare rows of one run, not runs on\n"
        "different machines. On a shared machine they move by a few percent from run to run, so a target\n"
        "met by a small margin in one run may be missed in the next.\n\n"
        "Latest run:\n\n" + body
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise SystemExit('numpy is needed for the benchmarks: pip install -e ".[bench]"') from None
    if args.commands_only:
        commands = time_commands()
        print(commands_section(commands))
        if args.update_docs:
            records.write_section(README, "timings", readme_timings(commands))
            _log(f"updated {README}")
        return 0
    body, commands = build_report(args)
    print("# Benchmarks\n\n" + body)
    if args.output:
        args.output.write_text("# Benchmarks\n\n" + body, encoding="utf-8")
    if args.update_docs:
        records.write_section(DOCS, SECTION, docs_section(body))
        if commands:
            records.write_section(README, "timings", readme_timings(commands))
        _log(f"updated {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
