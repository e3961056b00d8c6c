"""The strategies produce what they promise: every dtype and device, edge shapes,
every value regime, special values, and examples that shrink to simple ones."""

import dataclasses
import math
import random

import pytest
import torch
from hypothesis import find, given, settings, strategies as st
from hypothesis.errors import InvalidArgument

from layers.specs import centered_spec, my_linear_spec
from properties.recipes import exponent_range as _exponent_range
from properties.spec import FLOAT_DTYPES
from properties.strategies import (
    available_devices,
    devices,
    dtypes,
    ladder_sizes,
    layer_cases,
    moderate_limit,
    seeded,
    shapes,
    sides,
    special_values,
    tensor_recipes,
    tensors,
)

FIND = settings(max_examples=2000, database=None, deadline=None, derandomize=True)


def reaches(strategy, condition):
    """Hypothesis can produce an example satisfying ``condition``."""
    find(strategy, condition, settings=FIND)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_every_float_dtype_is_drawn(dtype):
    reaches(dtypes(), lambda d: d == dtype)


def test_dtypes_shrink_to_float32():
    assert find(dtypes(), lambda d: True) == torch.float32


def test_cpu_is_always_available_and_devices_are_selectable():
    assert available_devices()[0] == "cpu"
    reaches(devices(), lambda d: d == "cpu")
    for device in available_devices():
        reaches(devices(allowed=(device,)), lambda d, device=device: d == device)


def test_bad_arguments_get_actionable_errors():
    with pytest.raises(InvalidArgument, match="choose"):
        dtypes(allowed=(torch.int32,))
    with pytest.raises(InvalidArgument, match="unknown"):
        devices(allowed=("tpu",))
    with pytest.raises(InvalidArgument, match="min_dims"):
        shapes(min_dims=3, max_dims=1)
    with pytest.raises(InvalidArgument, match="regimes"):
        find(tensor_recipes(shape=(2,), dtype=torch.float32, regimes=("wild",)), lambda r: True)
    with pytest.raises(InvalidArgument, match="max_splices=-1"):
        tensor_recipes(shape=(2,), dtype=torch.float32, max_splices=-1)


@pytest.mark.parametrize(
    "condition",
    [
        lambda s: s == (),  # 0-d
        lambda s: len(s) == 4,  # 4-d
        lambda s: 0 in s,  # empty
        lambda s: 1 in s and len(s) >= 2,  # a size-1 dimension
    ],
    ids=["0-d", "4-d", "empty", "size-1"],
)
def test_edge_shapes_are_drawn(condition):
    reaches(shapes(max_dims=4), condition)


@given(shapes(min_dims=1, max_dims=3, event_shape=(7,), allow_empty=False))
def test_shapes_end_with_the_event_shape(shape):
    assert shape[-1] == 7 and 2 <= len(shape) <= 4 and min(shape) >= 1


def test_empty_shapes_are_a_minority():
    @settings(max_examples=400, database=None)
    @given(shapes(min_dims=3, max_dims=4))
    def count(shape):
        counted.append(0 in shape)

    counted = []
    count()
    assert 0 < sum(counted) < len(counted) / 3


def test_the_size_ladder_is_powers_of_two_and_their_neighbours():
    assert ladder_sizes(4, 64) == (5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64)
    assert ladder_sizes(8, 8) == ()


@pytest.mark.parametrize("side", [17, 257, 4095, 4096])
def test_shapes_climb_the_size_ladder_within_the_budget(side):
    reaches(shapes(min_dims=1, max_dims=3), lambda s: side in s)

    @settings(max_examples=300, database=None)
    @given(shapes(min_dims=1, max_dims=4, event_shape=(8,), max_elements=2**12, max_ladder_side=512))
    def within(shape):
        assert math.prod(shape) <= 2**12 and max(shape) <= 512

    within()


def test_element_counts_reach_the_ladder_too():
    # 3 x 1365 = 4095 = 2**12 - 1: a ladder count from a side that is not on the ladder.
    reaches(shapes(min_dims=2, max_dims=2, max_side=4), lambda s: math.prod(s) == 4095 and max(s) not in ladder_sizes(4, 4096))


def test_the_ladder_is_off_when_asked_and_shrinks_away():
    @settings(max_examples=200, database=None)
    @given(shapes(max_ladder_side=0), sides(max_ladder_side=0))
    def never(shape, side):
        assert max(shape, default=0) <= 4 and side <= 8

    never()
    # A condition that needs a ladder size shrinks to a low rung (not always the
    # lowest: the hash that picks the rung is not monotone in the number).
    assert find(shapes(min_dims=1, max_dims=1), lambda s: s[0] > 4, settings=FIND)[0] in ladder_sizes(4, 64)
    assert find(sides(), lambda n: n > 16, settings=FIND) in ladder_sizes(16, 128)
    # One that does not need the ladder shrinks off it.
    assert find(shapes(min_dims=2, max_dims=2), lambda s: max(s) > 100 or s[0] > 1, settings=FIND) == (2, 1)


def test_feature_counts_climb_the_ladder_sometimes():
    @settings(max_examples=300, database=None, derandomize=True)
    @given(sides())
    def count(side):
        drawn.append(side)

    drawn = []
    count()
    laddered = [n for n in drawn if n > 8]
    assert 0 < len(laddered) < len(drawn) / 2 and set(laddered) <= set(ladder_sizes(8, 4096))


@pytest.mark.parametrize("regime", ["zeros", "constant", "ordinary", "tiny", "huge", "mixed"])
def test_every_regime_is_drawn_and_finite(regime):
    recipe = find(
        tensor_recipes(shape=(4, 4), dtype=torch.float16),
        lambda r: r.regime == regime,
        settings=FIND,
    )
    values = recipe.materialize()
    assert values.dtype == torch.float16 and values.shape == (4, 4)
    assert values.isfinite().all()


def test_regimes_reach_their_magnitudes():
    big = torch.finfo(torch.float32).max
    reaches(tensors(shape=(8,)), lambda t: t.abs().max() > big / 1e3)
    reaches(tensors(shape=(8,)), lambda t: 0 < t.abs().max() < 1e-30)
    reaches(tensors(shape=(8,)), lambda t: t.numel() and bool((t == t.flatten()[0]).all()) and t[0] != 0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_special_values_reach_the_dtype_edges(dtype):
    info = torch.finfo(dtype)
    for edge in (info.max, -info.max, info.tiny):
        reaches(special_values(dtype), lambda v, edge=edge: v == edge)
    reaches(special_values(dtype), lambda v: v == 0 and math.copysign(1, v) < 0)
    reaches(tensors(shape=(3, 4), dtype=dtype), lambda t: bool((t == info.max).any()))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_huge_and_mixed_tensors_stay_finite_unclamped(dtype):
    # Only capped recipes clamp: the largest scale leaves room for a normal
    # sample up to 16, which torch's generator never reaches.
    @settings(max_examples=300, database=None, deadline=None)
    @given(tensor_recipes(shape=(64, 64), dtype=dtype, regimes=("huge", "mixed")))
    def check(recipe):
        assert bool(recipe.materialize().isfinite().all())

    check()
    # The room itself: a sample just below 16 at the largest scale is finite, 16 at the next binade is not.
    high = _exponent_range(dtype)[1]
    assert 2.0**high * 15.9 <= torch.finfo(dtype).max < 2.0 ** (high + 1) * 16


def test_capped_recipes_stay_within_the_cap():
    @given(tensor_recipes(shape=(5,), dtype=torch.float16, limit=moderate_limit(torch.float16)))
    def check(recipe):
        assert recipe.materialize().abs().max() <= 128

    check()


def test_materializing_is_reproducible_and_leaves_global_rng_alone():
    recipe = find(tensor_recipes(shape=(16,), dtype=torch.float32), lambda r: r.regime == "ordinary")
    before = torch.random.get_rng_state()
    assert torch.equal(recipe.materialize(), recipe.materialize())
    assert torch.equal(before, torch.random.get_rng_state())


def test_seeded_restores_the_global_rng():
    before = torch.random.get_rng_state()
    with seeded(7):
        a = torch.randn(3)
    with seeded(7):
        b = torch.randn(3)
    assert torch.equal(a, b)
    assert torch.equal(before, torch.random.get_rng_state())


def test_failing_examples_shrink_to_one_simple_element():
    # Shrinking is a local search: over ten fixed seeds, it must end with a
    # single non-zero element in (nearly) all (the benchmark reports the count).
    ones = 0
    for seed in range(10):
        shrunk = find(
            tensors(shape=(3, 4)),
            lambda t: bool((t > 5).any()),
            settings=settings(max_examples=2000, database=None, deadline=None),
            random=random.Random(seed),
        )
        assert int((shrunk != 0).sum()) <= 2
        ones += int((shrunk != 0).sum()) == 1
    assert ones >= 9


@pytest.mark.parametrize("order", ["magnitude", "largest", "smallest"])
def test_sparse_tensors_keep_their_most_extreme_element(order):
    # A sparse tensor is its dense tensor with all but the most extreme
    # element (in the recipe's order) zeroed: shrinking from dense to sparse
    # keeps an outlier.
    recipe = find(
        tensor_recipes(shape=(6, 5), dtype=torch.float64, regimes=("ordinary", "mixed"), max_splices=0),
        lambda r: r.keep == order,
        settings=FIND,
    )
    kept = recipe.materialize().flatten()
    dense = dataclasses.replace(recipe, keep=None).materialize().flatten()
    index = {"magnitude": dense.abs(), "largest": dense, "smallest": -dense}[order].argmax()
    expected = torch.zeros_like(dense)
    expected[index] = dense[index]
    assert torch.equal(kept, expected) and int((kept != 0).sum()) == 1


def test_a_tensor_costs_one_choice_on_most_draws_whatever_its_size():
    # The choices behind a recipe, counted with a stand-in for Hypothesis'
    # draw: the number, then one per spliced element; never the elements.
    from properties.encoding import draw_recipe as _draw_recipe
    from properties.strategies import ValueDomain

    def choices(shape, number):
        count = []

        def draw(strategy):
            count.append(strategy)
            return number if len(count) == 1 else 1.0

        _draw_recipe(draw, shape, torch.float32, "cpu", ValueDomain())
        return len(count)

    numbers = random.Random(0).sample(range(2**32), 500)
    for shape in [(1,), (8, 8), (256, 256, 4)]:
        counts = [choices(shape, number) for number in numbers]
        assert max(counts) <= 1 + ValueDomain().max_splices
        assert sum(c == 1 for c in counts) > 0.8 * len(counts)
    assert [choices((1,), n) for n in numbers] == [choices((256, 256, 4), n) for n in numbers]


def test_splices_are_few_and_reach_both_kinds():
    # About one tensor in eight gets splices (a quarter of the heads, small
    # numbers being drawn more often); both kinds of value appear.
    edges = {torch.finfo(torch.float32).max, torch.finfo(torch.float32).tiny}

    @settings(max_examples=400, database=None, deadline=None, derandomize=True)
    @given(tensor_recipes(shape=(4, 4), dtype=torch.float32))
    def count(recipe):
        counted.append(len(recipe.splices))
        values.extend(abs(v) for _, v in recipe.splices)

    counted, values = [], []
    count()
    assert 0.03 < sum(map(bool, counted)) / len(counted) < 0.4
    assert max(counted) <= 3 and edges & set(values) and set(values) - edges - {0.0, 1.0}


def test_layer_cases_follow_the_spec():
    @given(layer_cases(my_linear_spec))
    def check(case):
        x = case.make_input()
        assert x.shape[-1] == case.constructor_args["in_units"]
        assert 1 <= x.dim() <= 4
        module = case.build()
        assert module.weight.dtype == x.dtype == case.dtype
        assert str(module.weight.device).startswith(case.device)

    check()
    reaches(layer_cases(centered_spec), lambda c: c.input_recipe.shape == ())
    reaches(layer_cases(centered_spec), lambda c: len(c.input_recipe.shape) == 4)


def test_modules_are_initialized_from_the_drawn_seed():
    case = find(layer_cases(my_linear_spec), lambda c: c.constructor_args["units"] > 1)
    assert torch.equal(case.build().weight, case.build().weight)


def test_public_strategies_show_the_call_that_made_them():
    assert repr(tensors(shape=(2, 3), dtype=torch.float32)) == "tensors(shape=(2, 3), dtype=torch.float32)"
    assert repr(sides(max_side=8)) == "sides(max_side=8)"
    assert repr(shapes(min_dims=1, max_dims=2)) == "shapes(min_dims=1, max_dims=2)"
    assert repr(dtypes()) == "dtypes()"
    assert repr(devices(allowed=("cpu",))) == "devices(allowed=('cpu',))"
    assert repr(tensors(shape=shapes(max_dims=2))) == "tensors(shape=shapes(max_dims=2))"
    assert repr(special_values(torch.float16)) == "special_values(torch.float16)"
    assert repr(tensor_recipes(shape=(2,), dtype=torch.float64)) == "tensor_recipes(shape=(2,), dtype=torch.float64)"


def _drawn(strategy, count=60):
    """The first ``count`` values a derandomized test draws from ``strategy`` (the same
    test source each time, so the same seed)."""
    seen = []

    @settings(max_examples=count, database=None, deadline=None, derandomize=True)
    @given(strategy)
    def collect(value):
        seen.append(value.tolist() if isinstance(value, torch.Tensor) else value)

    collect()
    return seen


@pytest.mark.parametrize(
    "public, arguments",
    [
        (tensors, {"shape": shapes(max_dims=3), "dtype": dtypes()}),
        (sides, {"max_side": 8}),
        (shapes, {"min_dims": 1}),
        (dtypes, {}),
    ],
    ids=["tensors", "sides", "shapes", "dtypes"],
)
def test_a_readable_repr_draws_exactly_what_the_strategy_it_wraps_draws(public, arguments):
    # The repr comes from a wrapper Hypothesis draws through (same label, no span of
    # its own): the same seed gives the same values as the bare strategy.
    assert _drawn(public(**arguments)) == _drawn(public.__wrapped__(**arguments))


def test_layer_cases_draw_only_the_pairs_they_are_given():
    from properties.selection import Selection, run_pairs

    only_float64 = run_pairs(None, my_linear_spec, Selection(dtypes=("float64",)))
    assert only_float64.dtypes == (torch.float64,) and only_float64.only is None

    @given(layer_cases(my_linear_spec, pairs=only_float64))
    def check(case):
        assert case.dtype == torch.float64 and case.device in available_devices()

    check()
    no_device = run_pairs(None, my_linear_spec, Selection(devices=("nope",)))
    with pytest.raises(InvalidArgument, match="nothing to draw"):
        find(layer_cases(my_linear_spec, pairs=no_device), lambda c: True)
