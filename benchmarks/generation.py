"""Tensor generation: throughput of three strategies, and what each shrinks to.

Throughput: each strategy draws its shape from the *same* shape strategy (2-d,
sides 1..N) and is run by a ``@given`` test whose body only records the time.
The floor draws that shape and nothing else: it is what Hypothesis itself
costs per example.  Rates are steady-state: (n - 1) examples over the time
from the first to the last call of the body, so Hypothesis' per-run start-up
is left out and everything per example (engine, drawing, materializing) is in.
Rounds are interleaved (every strategy and size once per round), so all
strategies see the same machine conditions, and each strategy's median round
is kept: a single lucky or unlucky round (the machine is shared) moves a
maximum or a minimum by 10-20%, the median hardly.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, find, given, settings, strategies as st

from properties import strategies
from properties.strategies import tensors

SIDES = (8, 64, 256)
FLOOR, PROJECT, PROJECT_1T, ARRAYS, ONE_CHOICE, SEED_ONLY = (
    "shape only (floor)",
    "project `tensors()`",
    "project `tensors()`, torch 1 thread",
    "`arrays` + `from_numpy`",
    "shape + the project's one choice, no tensor",
    "shape + seed, `torch.randn` (seed only)",
)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads (None: leave torch's setting alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class Rate:
    examples: int = 0
    per_second: float = 0.0


def measure(strategy: st.SearchStrategy[Any], examples: int) -> Rate:
    """Steady-state examples per second of a do-nothing ``@given`` test."""
    stamps: list[float] = []

    @settings(
        max_examples=examples,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def body(value: Any) -> None:
        stamps.append(time.perf_counter())

    body()
    if len(stamps) < 2:
        return Rate(len(stamps), 0.0)
    return Rate(len(stamps), (len(stamps) - 1) / (stamps[-1] - stamps[0]))


def seed_only(shape: st.SearchStrategy[tuple[int, ...]], scale: float = 1.0) -> st.SearchStrategy[torch.Tensor]:
    """Draw a shape and a seed, then ``torch.randn(shape, generator=...)`` (times ``scale``)."""
    generator = torch.Generator()

    @st.composite
    def draw_tensor(draw: Any) -> torch.Tensor:
        size = draw(shape)
        values = torch.randn(size, generator=generator.manual_seed(draw(strategies._NUMBERS)))
        return values if scale == 1.0 else values.mul_(scale)

    return draw_tensor()


def strategies_for(side: int) -> dict[str, tuple[st.SearchStrategy[Any], int | None]]:
    """name -> (strategy, torch thread count or None), all over one shared shape strategy."""
    import numpy as np
    from hypothesis.extra.numpy import arrays

    shape = st.tuples(st.integers(1, side), st.integers(1, side))
    project = tensors(shape=shape, dtype=torch.float32)
    return {
        FLOOR: (shape, None),
        PROJECT: (project, None),
        ARRAYS: (arrays(np.float32, shape).map(torch.from_numpy), None),
        # Diagnostics: the same strategy with torch's intra-op parallelism off
        # (large fills and clamps parallelize; on a loaded machine that costs);
        # what the project's one choice per tensor costs Hypothesis alone,
        # before any tensor is made; and the seed-only strategy (fast, but a
        # failure stays a dense random tensor).
        PROJECT_1T: (project, 1),
        ONE_CHOICE: (st.tuples(shape, strategies._NUMBERS), None),
        SEED_ONLY: (seed_only(shape), None),
    }


def throughput(examples: int, rounds: int, log: Callable[[str], None]) -> dict[int, dict[str, Rate]]:
    """The median-of-``rounds`` rate of each strategy at each maximum side."""
    cases = {side: strategies_for(side) for side in SIDES}
    for side, named in cases.items():  # warm-up: imports, caches, first-draw costs
        for strategy, threads in named.values():
            with torch_threads(threads):
                measure(strategy, 5)
    measured: dict[int, dict[str, list[Rate]]] = {side: {name: [] for name in named} for side, named in cases.items()}
    for round_ in range(rounds):
        for side, named in cases.items():
            for name, (strategy, threads) in named.items():
                # Every measurement starts from a collected heap: otherwise a
                # full collection of the previous one's garbage lands in
                # whichever strategy happens to run next.
                gc.collect()
                with torch_threads(threads):
                    measured[side][name].append(measure(strategy, examples))
        log(f"  generation round {round_ + 1}/{rounds} done")
    return {
        side: {name: sorted(rates, key=lambda r: r.per_second)[len(rates) // 2] for name, rates in named.items()}
        for side, named in measured.items()
    }


def shrinking_strategies() -> dict[str, st.SearchStrategy[torch.Tensor]]:
    import numpy as np
    from hypothesis.extra.numpy import arrays

    shape = (3, 4)
    return {
        PROJECT: tensors(shape=shape, dtype=torch.float32),
        f"{SEED_ONLY}, times 10": seed_only(st.just(shape), scale=10.0),  # so that an element can exceed 5
        "`arrays` (default float32 elements) + `from_numpy`": arrays(np.float32, shape).map(torch.from_numpy),
        "`arrays` (`elements=floats(-10, 10, width=32)`) + `from_numpy`": arrays(
            np.float32, shape, elements=st.floats(-10, 10, width=32)
        ).map(torch.from_numpy),
    }


@dataclasses.dataclass
class Shrunk:
    nonzeros: list[int]
    typical: str
    typical_count: int
    seconds: float


def _values(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:g}" for v in tensor.flatten().tolist()) + "]"


def shrinking(seeds: int) -> dict[str, Shrunk]:
    """``find`` a 3x4 float32 tensor with some element > 5, once per seed, for each strategy."""
    results = {}
    for name, strategy in shrinking_strategies().items():
        nonzeros, shown = [], collections.Counter()
        start = time.perf_counter()
        for seed in range(seeds):
            found = find(
                strategy,
                lambda t: bool((t > 5).any()),
                settings=settings(database=None, deadline=None, max_examples=1000),
                random=random.Random(seed),
            )
            nonzeros.append(int(torch.count_nonzero(found)))
            shown[_values(found)] += 1
        typical, count = shown.most_common(1)[0]
        results[name] = Shrunk(nonzeros, typical, count, time.perf_counter() - start)
    return results
