"""The stateful property's steps (its rules), each ``repr`` the Python it stands
for, and the program a sequence of them prints (``properties.catalogue.stateful``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from properties.cases import LayerCase
from properties.recipes import TensorRecipe

# A power of two: lr * grad is exact in every dtype (barring underflow), so an
# SGD step is one rounding of ``p - lr * g``.
LEARNING_RATE = 0.125


# -- the steps (rules); each repr is the Python it stands for --------------------


def _tensor_code(recipe: TensorRecipe) -> str:
    """Python that makes the recipe's tensor: its values where few, else the recipe."""
    dtype = str(recipe.dtype)
    device = "" if recipe.device == "cpu" else f".to({recipe.device!r})"
    if math.prod(recipe.shape) <= 16:
        values = recipe.materialize().cpu().to(torch.float64).flatten().tolist()
        text = ", ".join(repr(v) if math.isfinite(v) else f"float({str(v)!r})" for v in values)
        return f"torch.tensor([{text}], dtype={dtype}).reshape({recipe.shape}){device}"
    fields = ", ".join(
        f"{f.name}={dtype if f.name == 'dtype' else repr(getattr(recipe, f.name))}"
        for f in dataclasses.fields(recipe)
    )
    return f"{type(recipe).__name__}({fields}).materialize()"


@dataclasses.dataclass(frozen=True)
class Forward:
    """A call on a fresh input."""

    input: TensorRecipe

    def __repr__(self) -> str:
        return f"out = module({_tensor_code(self.input)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis' report: the Python, not the fields


@dataclasses.dataclass(frozen=True)
class Backward:
    """A call on a fresh input, then backward of a random projection of the output."""

    input: TensorRecipe
    seed: int

    def __repr__(self) -> str:
        return f"out = module({_tensor_code(self.input)}); out.backward({_projection_code(self.seed)})"

    _repr_pretty_ = Forward._repr_pretty_


def _projection_code(seed: int) -> str:
    return f"torch.randn(out.shape, generator=torch.Generator().manual_seed({seed}), dtype=torch.float64).to(out.dtype)"


def projection(out: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=generator, dtype=torch.float64).to(device=out.device, dtype=out.dtype)


@dataclasses.dataclass(frozen=True)
class Simple:
    """A step without arguments: ``code`` is what it runs."""

    code: str

    def __repr__(self) -> str:
        return self.code

    _repr_pretty_ = Forward._repr_pretty_


OPTIMIZER_STEP = Simple("optimizer.step()")
ZERO_GRAD = Simple("optimizer.zero_grad()")
TRAIN = Simple("module.train()")
EVAL = Simple("module.eval()")
DTYPE_ROUND_TRIP = Simple("module.to(torch.float64).to(dtype)")
CHECKPOINT = Simple("module, optimizer = from_checkpoint(module, optimizer)")
DEEPCOPY = Simple("module = copy.deepcopy(module); optimizer = resumed(optimizer, module)")


def program(case: LayerCase, optimizer: str | None, steps: Sequence[Any], failed: int | None = None) -> str:
    """The sequence as a Python program (``failed``: the index of the step that failed)."""
    spec = case.spec
    layer = getattr(spec.module, "__qualname__", spec.name)
    arguments = [f"{k}={v!r}" for k, v in case.constructor_args.items()]
    if spec.factory_kwargs:
        arguments.append("dtype=dtype")
    body = [
        f"{step!r}" + (f"  # <- step {index + 1} fails" if index == failed else "") for index, step in enumerate(steps)
    ]
    replaces = any(step in (CHECKPOINT, DEEPCOPY) for step in steps)
    lines = ["import copy", ""] if DEEPCOPY in steps else []
    lines += ["import torch", ""]
    if any("TensorRecipe(" in line for line in body):
        lines.append("from properties.strategies import TensorRecipe")
    lines += [
        f"from {getattr(spec.module, '__module__', '?')} import {layer.split('.')[0]}",
        "",
        f"# LayerSpec {spec.name}, constructor_args={dict(case.constructor_args)!r}, {case.dtype} on {case.device}",
        f"dtype = {case.dtype}",
        *([f"# the gate runs each call under torch.manual_seed({case.module_seed + 1}) (random layers)"]
          if spec.train_eval_differ else []),
        "",
        "",
        "def new_module():",
        f"    torch.manual_seed({case.module_seed})",
        f"    return {layer}({', '.join(arguments)}).to({case.device!r}, dtype)",
        "",
        "",
    ]
    helpers = [
        "def resumed(optimizer, module):  # the same optimizer state, over module's parameters",
        f"    new = {OPTIMIZERS[optimizer]}",
        "    new.load_state_dict(optimizer.state_dict())",
        "    return new",
        "",
        "",
    ] if optimizer else ["def resumed(optimizer, module):  # the layer has no parameters", "    return None", "", ""]
    helpers += [
        "def from_checkpoint(module, optimizer):  # a fresh instance loaded with the state_dict, gradients carried over",
        "    fresh = new_module().train(module.training)",
        "    fresh.load_state_dict(module.state_dict())",
        "    for old, new in zip(module.parameters(), fresh.parameters()):",
        "        new.grad = None if old.grad is None else old.grad.clone()",
        "    return fresh, resumed(optimizer, fresh)",
        "",
        "",
    ]
    lines += [
        *(helpers if replaces else []),
        "module = new_module().train()",
        f"optimizer = {OPTIMIZERS[optimizer] if optimizer else 'None  # the layer has no parameters'}",
        *body,
    ]
    return "\n".join(lines)


OPTIMIZERS = {
    "SGD": f"torch.optim.SGD(module.parameters(), lr={LEARNING_RATE})",
    "Adam": "torch.optim.Adam(module.parameters(), lr=1e-3)",
}
