"""The custom layers of *Dive into Deep Learning* §5.4, as the lesson writes them,
with one correction: ``MyLinear.forward`` uses the parameters themselves, not
their ``.data`` (see ``layers.known_bad.TextbookMyLinear`` for the original)."""

import torch
import torch.nn.functional as F
from torch import nn


class CenteredLayer(nn.Module):
    """Subtracts the mean of the whole input: a layer without parameters."""

    def forward(self, X):
        return X - X.mean()


class MyLinear(nn.Module):
    """``relu(X @ weight + bias)`` with ``weight`` stored as ``(in_units, units)``.

    Parameters are drawn from a standard normal, as in the lesson.
    """

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.randn(in_units, units, **factory_kwargs))
        self.bias = nn.Parameter(torch.randn(units, **factory_kwargs))

    def forward(self, X):
        linear = torch.matmul(X, self.weight) + self.bias
        return F.relu(linear)


class MyLinearWithBuiltin(nn.Module):
    """The same layer through ``nn.Linear`` (whose weight is ``(units, in_units)``)."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__()
        self.linear = nn.Linear(in_units, units, device=device, dtype=dtype)

    def forward(self, X):
        linear = self.linear(X)
        return F.relu(linear)
