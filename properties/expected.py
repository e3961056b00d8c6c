"""A property a layer is known to fail, where, and why: ``ExpectedFailure``.

Free of torch (the dtypes it names are compared, never made), so that what a
run draws (``properties.selection``) can be worked out around it without
importing torch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from properties.names import dtype_name

if TYPE_CHECKING:
    import torch

__all__ = ["ExpectedFailure"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExpectedFailure:
    """A property the layer is known to fail, where, and why (PyTorch's ``DecorateInfo``).

    ``property``: its name; ``reason``: why, in words a reader can check (a
    known kernel limitation, an open upstream issue); ``dtypes``/``devices``:
    where (None: everywhere).  The gate draws the property's ordinary
    examples outside these dtypes and devices, and runs a separate test on
    them, reported as xfail when it fails and failing (strict) when it
    passes: a fixed limitation does not stay declared.
    """

    property: str
    reason: str
    dtypes: tuple[torch.dtype, ...] | None = None
    devices: tuple[str, ...] | None = None

    def covers(self, dtype: torch.dtype, device: str) -> bool:
        return (self.dtypes is None or dtype in self.dtypes) and (self.devices is None or device in self.devices)

    def __str__(self) -> str:
        where = [", ".join(dtype_name(d) for d in self.dtypes)] if self.dtypes else []
        where += [", ".join(self.devices)] if self.devices else []
        return f"{self.property} expected to fail{' on ' + ' / '.join(where) if where else ''}: {self.reason}"
