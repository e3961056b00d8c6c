"""Serialization: state_dict, torch.save/torch.load and deepcopy keep the layer's function."""

from __future__ import annotations

import copy
import dataclasses
import io

import torch

from properties.cases import LayerCase
from properties.authoring import assert_identical, forward
from properties.registry import layer_property


@layer_property()
def survives_serialization(case: LayerCase) -> None:
    """A state_dict loaded into a fresh instance, a torch.save/torch.load round trip and
    copy.deepcopy all give the identical output."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    want = forward(case, module, x)
    name = case.spec.name
    # A fresh instance from another seed: its own parameters must all be overwritten.
    fresh = dataclasses.replace(case, module_seed=case.module_seed + 1).build()
    fresh.load_state_dict(module.state_dict())
    assert_identical(forward(case, fresh, x), want, what=f"{name}: after load_state_dict into a fresh instance")
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = dataclasses.replace(case, module_seed=case.module_seed + 2).build()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert_identical(forward(case, fresh, x), want, what=f"{name}: after torch.save/torch.load of the state_dict")
    assert_identical(forward(case, copy.deepcopy(module), x), want, what=f"{name}: a copy.deepcopy")
