"""Initialization: parameters are drawn from the distribution the spec declares."""

from __future__ import annotations

import dataclasses
import math

import torch

from properties.cases import LayerCase
from properties.claims import no_claim
from properties.distributions import IfPresent
from properties.registry import layer_property
from properties.spec import spec_call

# Each example tests every declared parameter with a two-sided
# Kolmogorov-Smirnov statistic against the declared CDF.  The
# Dvoretzky-Kiefer-Wolfowitz inequality, P(D > eps) <= 2 exp(-2 n eps^2),
# holds for every n, so rejecting at eps = sqrt(ln(2 / ALPHA) / (2 n)) has a
# false-alarm rate of at most ALPHA per parameter per example: 1e-6, so even
# the nightly profile's thousands of checks alarm falsely with probability
# below 1%.  (Under the derandomized ci profile the draws are fixed, so a
# given commit either always passes or always fails.)
ALPHA = 1e-6
# Samples pooled over fresh instances (seeds drawn from the example) so the
# test has power even for a 1x1 weight: at n = 2000, eps = 0.059, enough to
# tell randn from randn * 0.8 or from a uniform.
SAMPLES = 2000
MAX_INSTANCES = 256


# Initialization does not depend on the input: a quarter of the profile's examples
# (each pooling hundreds of fresh instances) covers the constructor arguments.
@layer_property(requires=("parameter_init",), dtypes=(torch.float32,), examples_scale=0.25)
def initialized_from_declared_distribution(case: LayerCase) -> None:
    """Parameters are drawn from the declared distribution (a Kolmogorov-Smirnov test
    with a false-alarm rate of at most 1e-6 per check), or equal the declared constant
    or identity exactly."""
    __tracebackhide__ = True
    declared = case.spec.initialization(case.constructor_args)
    module = case.build(device="cpu")
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for name, distribution in list(declared.items()):
        if isinstance(distribution, IfPresent):
            if name in tensors:
                declared[name] = distribution.distribution
            else:
                del declared[name]
        else:
            assert name in tensors, f"{case.spec.name}: parameter_init names {name!r}, which the layer does not have"
    if not declared:
        no_claim("initialized_from_declared_distribution: no declared parameter for these constructor arguments")
        return
    exact = {name: d for name, d in declared.items() if hasattr(d, "expected")}
    pooled: dict[str, list[torch.Tensor]] = {name: [] for name in declared if name not in exact}
    for k in range(MAX_INSTANCES):
        if k:
            module = dataclasses.replace(case, module_seed=case.module_seed + k).build(device="cpu")
            tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        if k == 0:
            # A degenerate distribution is deterministic: one instance shows it, exactly.
            for name, distribution in exact.items():
                actual = tensors[name].detach().double()
                want = spec_call(case.spec, "parameter_init", distribution.expected, tuple(actual.shape))
                wrong = actual != want
                assert not bool(wrong.any()), (
                    f"{case.spec.name}: {name} is not initialized to {distribution}: {int(wrong.sum())} / "
                    f"{actual.numel()} elements differ (e.g. {actual[wrong][0].item()!r} where "
                    f"{want[wrong][0].item()!r} is declared)"
                )
        for name in pooled:
            pooled[name].append(tensors[name].detach().flatten().double())
        if not pooled or min(sum(v.numel() for v in values) for values in pooled.values()) >= SAMPLES:
            break
    for name, values in pooled.items():
        sample = torch.cat(values).sort().values
        n = sample.numel()
        if n == 0:
            continue
        distribution = declared[name]
        cdf = distribution.cdf(sample)
        ranks = torch.arange(1, n + 1, dtype=torch.float64)
        statistic = torch.maximum(ranks / n - cdf, cdf - (ranks - 1) / n).max().item()
        threshold = math.sqrt(math.log(2 / ALPHA) / (2 * n))
        assert statistic <= threshold, (
            f"{case.spec.name}: {name} does not look drawn from {distribution}: Kolmogorov-Smirnov distance "
            f"{statistic:.3f} > {threshold:.3f} over {n} values (mean {sample.mean().item():.3g}, "
            f"std {sample.std().item() if n > 1 else 0.0:.3g}); false-alarm rate <= {ALPHA}"
        )
