"""Layers kept broken on purpose: they are not in the default gate.

The self-tests register them and assert that the gate fails on them.
"""

import torch
import torch.nn.functional as F
from torch import nn


class TextbookMyLinear(nn.Module):
    """``MyLinear`` exactly as the lesson writes it.

    ``forward`` reads ``self.weight.data`` and ``self.bias.data``, which are
    detached from autograd: the numbers are right, but the parameters never
    receive a gradient, so training never changes them.
    """

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.randn(in_units, units, **factory_kwargs))
        self.bias = nn.Parameter(torch.randn(units, **factory_kwargs))

    def forward(self, X):
        linear = torch.matmul(X, self.weight.data) + self.bias.data
        return F.relu(linear)
