"""Layers over time: one instance through a drawn sequence of calls, backward
passes, optimizer steps, mode switches, checkpoints, deep copies and dtype
round trips, with invariants checked after every step.

This is a rule-based state machine in the sense of ``hypothesis.stateful``,
run inside the gate's ordinary per-example check rather than as a
``RuleBasedStateMachine``: ``run_state_machine_as_test`` is a ``@given`` test of
its own and cannot run inside the one that draws the layer.  Here the property
draws the case as every property does, then one list of steps (the rules) from
the runner's ``DataObject``, and interprets it.  So it stays one Hypothesis test
per property x layer (same profiles, example database key, xdist
distribution, ``check_layer``), and Hypothesis shrinks the list to the
shortest failing sequence, as it shrinks a state machine's run.  The step count
is bounded per profile (``MAX_STEPS``).  A failure prints the shrunk sequence
as a Python program (``program``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hypothesis import event, strategies as st

from properties import tolerances
from properties.authoring import assert_identical, call_backward, call_layer, reference
from properties.catalogue._steps import (
    CHECKPOINT,
    DEEPCOPY,
    DTYPE_ROUND_TRIP,
    EVAL,
    LEARNING_RATE,
    OPTIMIZER_STEP,
    OPTIMIZERS,
    TRAIN,
    ZERO_GRAD,
    Backward,
    Forward,
    program,
    projection,
)
from properties.cases import LayerCase
from properties.profiles import profile_name
from properties.registry import layer_property
from properties.domains import ValueDomain
from properties.strategies import input_recipes

__all__ = ["MAX_STEPS", "program"]

# Steps per sequence, by profile: enough for "two backwards, a step, then a
# call" in dev; nightly explores long histories (a warm-up after 20 calls).
# "default" (check_layer outside pytest, the benchmarks) is ci's length.
MAX_STEPS = {"dev": 8, "ci": 12, "soak": 12, "nightly": 30, "default": 12}

# Inputs of this property: no "huge" regime and magnitudes capped at about the
# square root of the dtype's range, so that outputs, gradients and a few
# optimizer steps stay mostly finite and the invariants have something to
# claim; where values do overflow, elements are left out (representable).
_VALUES = dict(regimes=("zeros", "constant", "ordinary", "tiny", "mixed"), limit="moderate")

def steps_for(case: LayerCase, max_steps: int, *, optimizer: bool = True) -> st.SearchStrategy[list[Any]]:
    """Sequences of up to ``max_steps`` steps; inputs drawn as the case's are.

    Without an ``optimizer`` (a layer without parameters) there are no
    optimizer steps nor ``zero_grad``.

    A fresh input keeps the case's shape or takes another the spec allows
    (same-shape inputs catch caches keyed on shape).
    """
    # Inside the spec's declared input domain (sizes, magnitudes, index ranges).
    domain = dict(dtype=case.dtype, device=case.device, values=ValueDomain(**_VALUES))
    inputs = st.one_of(
        input_recipes(case.spec, case.constructor_args, shape=case.input_recipe.shape, **domain),
        input_recipes(case.spec, case.constructor_args, **domain),
    )
    step = st.one_of(
        inputs.map(Forward),
        st.builds(Backward, inputs, st.integers(0, 2**16)),
        st.sampled_from([*([OPTIMIZER_STEP, ZERO_GRAD] if optimizer else []), EVAL, TRAIN, DTYPE_ROUND_TRIP, CHECKPOINT, DEEPCOPY]),
    )
    return st.lists(step, min_size=1, max_size=max_steps)


def _make_optimizer(kind: str, module: torch.nn.Module) -> torch.optim.Optimizer:
    if kind == "SGD":
        return torch.optim.SGD(module.parameters(), lr=LEARNING_RATE)
    return torch.optim.Adam(module.parameters(), lr=1e-3)


# -- what is checked -------------------------------------------------------------


def _hook_count(module: torch.nn.Module) -> int:
    """Hooks registered on the module, its submodules and its parameters."""
    count = 0
    for sub in module.modules():
        for table in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            count += len(getattr(sub, table, {}) or {})
    for parameter in module.parameters():
        count += len(parameter._backward_hooks or {})
        count += len(getattr(parameter, "_post_accumulate_grad_hooks", None) or {})
    return count


def _snapshot(tensors: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    return {name: None if t is None else t.detach().clone() for name, t in tensors.items()}


class _Sequence:
    """One module (and its optimizer) through the steps, checked after each."""

    def __init__(self, case: LayerCase, module: torch.nn.Module, optimizer: str | None) -> None:
        self.case, self.kind = case, optimizer
        self.name = case.spec.name
        self.module = module
        self.hooks = _hook_count(self.module)
        self.optimizer = _make_optimizer(optimizer, self.module) if optimizer else None
        self._rebase()
        self.fresh_seed = case.module_seed
        self.position = 0  # the number of the step running, from 1

    def _after(self, step: Any) -> str:
        """Where a failure happened: the step's number in the printed program, and what it was."""
        kind = {Forward: "a call", Backward: "a call and backward"}.get(type(step), f"`{step!r}`")
        return f"{self.name}: after step {self.position} ({kind})"

    def _rebase(self) -> None:
        """Where the parameters live now (after a step that may legitimately move them)."""
        self.storage = {name: p.data_ptr() for name, p in self.module.named_parameters()}

    def _fresh(self) -> torch.nn.Module:
        """Another instance (its own initialization) holding the current state."""
        self.fresh_seed += 1
        twin = dataclasses.replace(self.case, module_seed=self.fresh_seed).build()
        twin.load_state_dict(self.module.state_dict())
        return twin.train(self.module.training)

    # Invariants after every step.
    def check_invariants(self, step: Any) -> None:
        held = [p for group in self.optimizer.param_groups for p in group["params"]] if self.optimizer else []
        named = dict(self.module.named_parameters())
        replaced = [name for name, p in named.items() if not any(p is h for h in held)]
        if replaced or len(held) != len(named):
            raise AssertionError(
                f"{self._after(step)}, parameter(s) {replaced or list(named)} are not the objects the "
                "optimizer holds: a parameter was replaced (a new nn.Parameter assigned) instead of updated in "
                "place, so optimizer steps no longer reach the layer"
            )
        moved = [name for name, p in named.items() if self.storage.get(name) != p.data_ptr()]
        if moved:
            raise AssertionError(
                f"{self._after(step)}, parameter(s) {moved} point at new storage: "
                "parameters must be updated in place (param.data was reassigned)"
            )
        # Fewer is fine (a lazy module removes its initialization hook after the first call).
        hooks = _hook_count(self.module)
        if hooks > self.hooks:
            raise AssertionError(
                f"{self._after(step)}, the module has {hooks} hooks where it had "
                f"{self.hooks}: something registers hooks on every call (they accumulate)"
            )
        self.hooks = hooks

    # The rules.
    def call(self, step: Forward | Backward) -> None:
        case, module = self.case, self.module
        x = step.input.materialize()
        parameters = _snapshot(dict(module.named_parameters()))
        buffers = _snapshot(dict(module.named_buffers()))
        # A stochastic layer's reference describes eval mode; in train mode the
        # fresh twin, run under the same seed, draws the same mask.
        differs = case.spec.train_eval_differ or case.spec.stochastic
        uses_reference = case.spec.reference is not None and not (differs and module.training)
        # A fresh instance with the same state: the output without a reference,
        # and a backward's own gradient.
        twin = self._fresh() if not uses_reference or isinstance(step, Backward) else None
        if isinstance(step, Forward):
            with torch.no_grad():
                twin_out = None if twin is None else call_layer(case, twin, x)
                out = call_layer(case, module, x)
        else:
            before = _snapshot({name: p.grad for name, p in module.named_parameters()})
            twin_out, single = self._single_gradient(twin, step, x)
            out = call_layer(case, module, x)
            if out.requires_grad:
                call_backward(case, out, projection(out, step.seed), x)
        what = self._after(step)
        # The expected output from the state after the call, as matches_reference takes it
        # (spectral_norm's train-mode call advances its power iteration, then uses it).
        expected = reference(case, module, x) if uses_reference else None
        if expected is not None:
            tolerances.assert_within_bound(
                out, expected, what=f"{what}, the output against the reference from the current parameters"
            )
        else:
            assert_identical(out, twin_out, what=f"{what}, the output against a fresh instance with the same state_dict")
        for name, value in module.named_parameters():
            assert_identical(value, parameters[name], what=f"{what}, parameter {name} (a call changed it)")
        if not module.training:
            for name, value in module.named_buffers():
                if name in buffers:
                    assert_identical(value, buffers[name], what=f"{what} in eval mode, buffer {name} (eval must not change it)")
        if isinstance(step, Backward):
            self._check_accumulated(before, single, what)

    def _single_gradient(
        self, twin: torch.nn.Module, step: Backward, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """The output and the gradient one backward of this step gives on its own (on a fresh instance)."""
        out = call_layer(self.case, twin, x)
        if out.requires_grad:
            call_backward(self.case, out, projection(out, step.seed), x)
        return out.detach(), {name: p.grad for name, p in twin.named_parameters()}

    def _check_accumulated(self, before: Mapping[str, Any], single: Mapping[str, Any], what: str) -> None:
        """Each gradient is the earlier one plus this backward's own.

        Autograd adds the new gradient to ``.grad``: one rounding of the exact
        sum, at most ``u * |sum|`` (plus underflow); ``SLACK`` covers float16
        and bfloat16 sums rounded through float32 first (``u + u_float32``).
        The fresh instance's gradient equals the layer's bit for bit: the same
        kernels on the same operands (the determinism ``survives_serialization``
        relies on).
        """
        for name, parameter in self.module.named_parameters():
            got, earlier, own = parameter.grad, before[name], single[name]
            if own is None:
                if got is not None and earlier is None:
                    raise AssertionError(f"{what}, parameter {name} has a gradient a fresh instance does not get")
                continue
            if got is None:
                raise AssertionError(
                    f"{what}, parameter {name} has no gradient after backward, where a fresh instance's "
                    "backward gives it one (cleared inside forward, or left out of this call?)"
                )
            own64 = own.detach().cpu().to(torch.float64)
            earlier64 = torch.zeros_like(own64) if earlier is None else earlier.cpu().to(torch.float64)
            total = earlier64 + own64
            dtype = got.dtype
            bound = tolerances.unit_roundoff(dtype) * total.abs() + torch.finfo(dtype).tiny
            representable = earlier64.isfinite() & own64.isfinite() & (total.abs() * (1 + 1e-3) < torch.finfo(dtype).max)
            if not bool(representable.all()):
                event("stateful: a gradient overflowed (no claim on those elements)")
            expected = tolerances.Bounded(total, bound, representable, dtype)
            tolerances.assert_within_bound(
                got,
                expected,
                what=f"{what}, the gradient of {name} is not the earlier gradient plus this backward's "
                "(gradients must accumulate over backward passes until zero_grad)",
            )

    def optimizer_step(self, step: Any) -> None:
        named = dict(self.module.named_parameters())
        old = _snapshot(named)
        grads = _snapshot({name: p.grad for name, p in named.items()})
        self.optimizer.step()
        if self.kind != "SGD":
            return  # Adam: identity and in-place storage are checked after every step
        for name, parameter in named.items():
            if grads[name] is None:
                assert_identical(parameter, old[name], what=f"{self._after(step)}, {name}, which has no gradient, changed")
                continue
            # One rounding of p - lr*g (lr*g is exact: lr is a power of two); SLACK
            # covers float16/bfloat16 updates rounded through float32 first.
            p64, g64 = old[name].cpu().to(torch.float64), grads[name].cpu().to(torch.float64)
            update = LEARNING_RATE * g64
            want = p64 - update
            dtype = parameter.dtype
            bound = tolerances.unit_roundoff(dtype) * (update.abs() + want.abs()) + torch.finfo(dtype).tiny
            representable = want.isfinite() & (want.abs() < torch.finfo(dtype).max / 2)
            tolerances.assert_within_bound(
                parameter,
                tolerances.Bounded(want, bound, representable, dtype),
                what=f"{self._after(step)}, parameter {name} is not p - lr * grad (the optimizer's update did not land)",
            )

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def mode(self, train: bool) -> None:
        self.module.train(train)

    def dtype_round_trip(self, step: Any) -> None:
        """float64 holds every value of the narrower dtypes: the round trip is exact."""
        named = dict(self.module.named_parameters())
        old = _snapshot(named)
        grads = _snapshot({name: p.grad for name, p in named.items()})
        buffers = _snapshot(dict(self.module.named_buffers()))
        self.module.to(torch.float64).to(self.case.dtype)
        self._rebase()
        what = self._after(step)
        for name, parameter in self.module.named_parameters():
            assert_identical(parameter, old[name], what=f"{what}, parameter {name}")
            if grads.get(name) is not None:
                assert_identical(parameter.grad, grads[name], what=f"{what}, the gradient of {name}")
        for name, buffer in self.module.named_buffers():
            if buffers.get(name) is not None and buffer.is_floating_point():
                assert_identical(buffer, buffers[name], what=f"{what}, buffer {name}")

    def replace(self, step: Any, successor: torch.nn.Module) -> None:
        """Continue with ``successor`` (a checkpoint or a copy), checked to continue exactly.

        One probe call on both: identical outputs and identical buffers after it.
        """
        probe = self.case.make_input()
        with torch.no_grad():
            want = call_layer(self.case, self.module, probe)
            got = call_layer(self.case, successor, probe)
        what = f"{self._after(step)}, a call on the layer's own input"
        assert_identical(got, want, what=f"{what}: the output differs from the original's (state outside the state_dict?)")
        mine = dict(self.module.named_buffers())
        for name, buffer in successor.named_buffers():
            if name in mine:
                assert_identical(buffer, mine[name], what=f"{what}: buffer {name} differs from the original's")
        self.module = successor
        if self.optimizer is not None:
            state = self.optimizer.state_dict()
            self.optimizer = _make_optimizer(self.kind, successor)
            self.optimizer.load_state_dict(state)
        self._rebase()

    def checkpoint(self, step: Any) -> None:
        fresh = self._fresh()
        # Gradients are not part of a checkpoint; carried over so that later
        # backward passes go on accumulating (as in a resumed micro-batch loop).
        own = dict(self.module.named_parameters())
        for name, parameter in fresh.named_parameters():
            if own[name].grad is not None:
                parameter.grad = own[name].grad.detach().clone()
        self.replace(step, fresh)

    def run(self, steps: Sequence[Any]) -> None:
        for step in steps:
            self.position += 1
            if isinstance(step, (Forward, Backward)):
                self.call(step)
            elif step is OPTIMIZER_STEP:
                self.optimizer_step(step)
            elif step is ZERO_GRAD:
                self.zero_grad()
            elif step in (TRAIN, EVAL):
                self.mode(step is TRAIN)
            elif step is DTYPE_ROUND_TRIP:
                self.dtype_round_trip(step)
            elif step is CHECKPOINT:
                self.checkpoint(step)
            elif step is DEEPCOPY:
                self.replace(step, copy.deepcopy(self.module))
            self.check_invariants(step)


@layer_property(extra=st.data(), **_VALUES)
def behaves_the_same_over_time(case: LayerCase, data: st.DataObject) -> None:
    """One instance through a drawn sequence of calls, backward passes, optimizer steps,
    zero_grad, train/eval switches, checkpoints, deep copies and dtype round trips:
    every output matches the reference from the current parameters, gradients
    accumulate, optimizer steps land in place, eval leaves buffers alone, a checkpoint
    or copy continues exactly."""
    __tracebackhide__ = True
    module = case.build()
    optimizer = None
    if any(True for _ in module.parameters()):
        optimizer = data.draw(st.sampled_from(sorted(OPTIMIZERS, reverse=True)), label="optimizer")  # SGD first
    max_steps = MAX_STEPS.get(profile_name(), MAX_STEPS["ci"])
    steps = data.draw(steps_for(case, max_steps, optimizer=optimizer is not None), label="steps")
    # Every sequence ends with a call in eval mode, so that "eval leaves buffers alone"
    # is checked whatever was drawn (a running statistic updated in eval needs both).
    steps = [*steps, EVAL, Forward(case.input_recipe)]
    sequence = _Sequence(case, module, optimizer)
    done = 0
    try:
        for done, step in enumerate(steps):
            sequence.run([step])
    except AssertionError as failure:
        text = f"{failure.args[0] if failure.args else failure}\nThe sequence, as a program:\n" + program(
            case, optimizer, steps[: done + 1], failed=done
        )
        failure.args = (text, *failure.args[1:])
        raise
