"""A custom layer outside the framework: ReLU followed by a learnable per-feature scale."""

import torch
from torch import nn


class ScaledReLU(nn.Module):
    """``relu(x) * scale``, with ``scale`` of shape ``(features,)`` drawn from U(0, 1)."""

    def __init__(self, features, *, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(features, device=device, dtype=dtype))

    def forward(self, x):
        return torch.relu(x) * self.scale
