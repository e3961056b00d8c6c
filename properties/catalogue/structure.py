"""Structure: output shape/dtype/device, the meta device, factory kwargs and
``.to()``, registered tensors, declared parameters."""

from __future__ import annotations

import torch

from properties.claims import no_claim
from properties.cases import LayerCase
from properties.authoring import LayerRaised, first_line, forward
from properties.registry import layer_property
from properties.spec import SpecError, spec_call


@layer_property()
def keeps_dtype_device_and_declared_shape(case: LayerCase) -> None:
    """The output has the input's dtype and device, and the shape the spec declares
    (the input's batch dimensions, then ``output_event_shape``)."""
    __tracebackhide__ = True
    x = case.make_input()
    out = forward(case, case.build(), x)
    name = case.spec.name
    assert out.dtype == case.dtype, f"{name}: a {case.dtype} layer gave a {out.dtype} output (a hard-coded cast?)"
    assert out.device == x.device, f"{name}: an input on {x.device} gave an output on {out.device}"
    if case.spec.output_event_shape is not None:
        want = case.spec.output_shape(case.constructor_args, tuple(x.shape))
        assert tuple(out.shape) == want, f"{name}: input {tuple(x.shape)} gave output {tuple(out.shape)}, declared {want}"


def _constructed(case: LayerCase, device: str) -> torch.nn.Module:
    """The layer built with ``device=`` and the case's ``dtype=``.  Its constructor raising on
    the meta device, where it builds on the case's own, is the layer's failure, not the spec's
    (torch's ``orthogonal`` parametrization calls ``torch.allclose``: ``.item()`` on meta)."""
    try:
        return case.construct(device=device, dtype=case.dtype)
    except SpecError as error:
        if device != "meta" or error.__cause__ is None:
            raise
        case.construct(device=case.device, dtype=case.dtype)  # a constructor that never builds: the spec's error
        raise LayerRaised(
            f"{case.spec.name}: its constructor raised {type(error.__cause__).__name__} with device='meta' "
            f"({first_line(error.__cause__)}); with device={case.device!r} it builds"
        ) from error.__cause__


@layer_property()
def runs_on_the_meta_device(case: LayerCase) -> None:
    """A forward on the meta device gives the same output shape and dtype without
    computing (catches tensors created on a fixed device, .item(), shape bugs, and
    a ``device=`` factory kwarg that is ignored: on every machine, no GPU needed)."""
    __tracebackhide__ = True
    x = case.make_input()
    out = forward(case, case.build(), x)
    # Constructed on the meta device where the spec takes device= (a layer that
    # ignores it keeps real parameters and fails here); moved there otherwise.
    if case.spec.factory_kwargs:
        module = _constructed(case, "meta").train()
    else:
        module = case.build(device="meta")
    meta_input = torch.empty(x.shape, dtype=x.dtype, device="meta")
    try:
        meta_out = forward(case, module, meta_input)
    except LayerRaised as error:
        if x.numel() == 0:
            # torch's own meta kernels are not all written for empty tensors (nn.Upsample's
            # raises TypeError in torch 2.13); what this catches shows on non-empty inputs too.
            no_claim("runs_on_the_meta_device: raised on an empty input")
            return
        raise AssertionError(
            f"{error} -- on the meta device. A tensor created on a fixed device, a .item()/.tolist() round trip, "
            "numpy inside forward, or a device= factory kwarg ignored?"
        ) from None
    assert (meta_out.shape, meta_out.dtype, meta_out.device.type) == (out.shape, out.dtype, "meta"), (
        f"{case.spec.name}: on the meta device the output is {tuple(meta_out.shape)} {meta_out.dtype} "
        f"on {meta_out.device}, on {case.device} {tuple(out.shape)} {out.dtype}"
    )


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@layer_property(requires=("factory_kwargs",))
def honours_factory_kwargs(case: LayerCase) -> None:
    """Constructing with device=/dtype= gives the same parameters and buffers (names,
    shapes, dtypes, devices) as constructing and then calling .to(device, dtype),
    on the meta device (every machine has it: an ignored device= shows without a
    GPU) and on the drawn device."""
    __tracebackhide__ = True

    def layout(module: torch.nn.Module) -> dict[str, tuple]:
        return {n: (tuple(t.shape), t.dtype, t.device.type, t.requires_grad) for n, t in _tensors(module).items()}

    for device in dict.fromkeys(("meta", case.device)):
        direct = _constructed(case, device)
        moved = case.construct().to(device=device, dtype=case.dtype)
        got, want = layout(direct), layout(moved)
        assert got == want, (
            f"{case.spec.name}(..., device={device!r}, dtype={case.dtype}) differs from .to(): "
            f"{ {n: v for n, v in got.items() if want.get(n) != v} } vs { {n: v for n, v in want.items() if got.get(n) != v} }"
        )


@layer_property(dtypes=(torch.float32,))
def tensors_are_registered(case: LayerCase) -> None:
    """Every tensor the layer holds is a parameter or a buffer, so .to(), state_dict
    and optimizers see it; after .to(float64) a float64 input runs through."""
    __tracebackhide__ = True
    module = case.build()
    for owner_name, owner in module.named_modules():
        registered = set(owner._parameters) | set(owner._buffers)
        prefix = f"{owner_name}." if owner_name else ""
        plain = [prefix + k for k, v in vars(owner).items() if isinstance(v, torch.Tensor) and k not in registered]
        assert not plain, (
            f"{case.spec.name}: {', '.join(plain)} "
            "is a plain tensor attribute, neither a parameter nor a buffer: .to(), state_dict and "
            "optimizers do not see it (use nn.Parameter or register_buffer)"
        )
    module = module.to(torch.float64)
    x = case.make_input()
    x = x.to(torch.float64) if x.is_floating_point() else x
    args, kwargs = case.arguments(x, float_dtype=torch.float64)  # per_sample_weights with indices: float64 too
    try:
        with torch.no_grad():
            out = case.call(module, args, kwargs)
    except Exception as error:
        raise AssertionError(
            f"{case.spec.name}: after .to(torch.float64), a float64 input fails ({type(error).__name__}: {error}); "
            "a tensor the layer uses did not move"
        ) from None
    assert out.dtype == torch.float64, f"{case.spec.name}: after .to(torch.float64) the output is {out.dtype}"


@layer_property(requires=("parameter_shapes",), dtypes=(torch.float32,))
def declares_its_parameters(case: LayerCase) -> None:
    """The trainable parameters are exactly the declared ones, with the declared
    shapes, and state_dict holds them."""
    __tracebackhide__ = True
    module = case.build()
    declared = dict(spec_call(case.spec, "parameter_shapes", case.spec.parameter_shapes, case.constructor_args))
    declared = {n: tuple(s) for n, s in declared.items()}
    parameters = dict(module.named_parameters())
    frozen = sorted(n for n in declared if n in parameters and not parameters[n].requires_grad)
    assert not frozen, f"{case.spec.name}: {', '.join(frozen)} is frozen (requires_grad=False), so it never learns"
    trainable = {n: tuple(p.shape) for n, p in parameters.items() if p.requires_grad}
    missing = sorted(set(declared) - set(trainable))
    extra = sorted(set(trainable) - set(declared))
    assert not missing, f"{case.spec.name}: declared parameters {missing} are not registered parameters"
    assert not extra, f"{case.spec.name}: trainable parameters {extra} are not declared"
    wrong = {n: (trainable[n], declared[n]) for n in declared if trainable[n] != declared[n]}
    assert not wrong, f"{case.spec.name}: parameter shapes (actual, declared): {wrong}"
    state = module.state_dict()
    absent = sorted(n for n in declared if n not in state or tuple(state[n].shape) != declared[n])
    assert not absent, f"{case.spec.name}: state_dict lacks {absent} with the declared shapes"
