"""The names the framework knows: dtypes, devices, value regimes, Hypothesis profiles.

Free of torch, so that the pytest plugin can validate ``--dtypes``/``--devices``
and the report can order what it shows without importing it; every list of
these names elsewhere derives from here.
"""

from __future__ import annotations

__all__ = ["DEVICE_NAMES", "DTYPE_NAMES", "PROFILE_NAMES", "REGIMES", "dtype_name"]

# The floating dtypes a layer may support (``torch.<name>``), in the order examples
# shrink towards (float32 first) and reports list them.
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")
# The devices a layer may support, cpu first (every machine has it).
DEVICE_NAMES = ("cpu", "cuda", "mps")
# The value regimes of ``properties.strategies.tensors``, simplest first (as shrinking goes).
REGIMES = ("zeros", "constant", "ordinary", "tiny", "huge", "mixed")
# The Hypothesis profiles the plugin registers (see properties/plugin.py).
PROFILE_NAMES = ("dev", "ci", "nightly", "soak")


def dtype_name(dtype: object) -> str:
    """``float32`` for ``torch.float32``: a dtype as options, messages and reports name it."""
    return str(dtype).removeprefix("torch.")
