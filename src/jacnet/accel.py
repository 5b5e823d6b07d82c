"""Optional compiled kernels: numba, loaded lazily, chosen once per call by ``JACNET_NUMBA``.

jacnet's engine is numpy and scipy. Where numpy needs several passes over memory for what
is one loop (Adam's update, a bias with its activation, a Jacobian's outer products), a
module may also give a compiled kernel of the same loop, written with :func:`kernel`. The
kernel must give bit-identical results to the numpy path: the same operations in the same
order, no ``fastmath``, no reassociation; the tests compare both paths.

``JACNET_NUMBA`` picks the path:

- unset or empty: numba when it is installed (``pip install "jacnet[fast]"``), numpy otherwise;
- ``0``: numpy, even with numba installed;
- ``1``: numba, and an ImportError naming the extra when it is missing.

The variable is read at each :func:`enabled` call, so a test or a user can switch paths
within one process. numba is imported on the first kernel call, never when jacnet is
imported, and each kernel compiles on its first call (cached on disk by numba).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = ["Kernel", "available", "enabled", "kernel"]

ENV = "JACNET_NUMBA"


@cache
def available() -> bool:
    """Whether numba can be imported (checked once, without importing it)."""
    return importlib.util.find_spec("numba") is not None


def enabled() -> bool:
    """Whether compiled kernels run now, from ``JACNET_NUMBA`` and numba's presence."""
    setting = os.environ.get(ENV, "").strip()
    if setting == "":
        return available()
    if setting == "0":
        return False
    if setting == "1":
        if not available():
            raise ImportError(
                f"{ENV}=1 asks for compiled kernels, but numba is not installed; "
                'install it with pip install "jacnet[fast]", or unset the variable'
            )
        return True
    raise ValueError(f"{ENV} must be 0, 1 or unset, got {setting!r}")


class Kernel:
    """A Python function compiled by ``numba.njit`` on its first call.

    Parameters
    ----------
    func : callable
        The loop, written in the subset of Python and numpy that numba compiles. It is also
        callable as plain Python (``kernel.py_func``) for debugging.
    options : dict
        Extra ``numba.njit`` options (``parallel=True`` for example); ``fastmath`` is
        refused, since it would break the bit-identity with the numpy path.
    """

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        if options.get("fastmath"):
            raise ValueError("a jacnet kernel must not use fastmath: results must equal numpy's")
        self.py_func = func
        self.options = {"cache": True, "nogil": True, **options}
        self.compiled: Callable[..., Any] | None = None
        self.__name__ = getattr(func, "__name__", "kernel")
        self.__doc__ = func.__doc__

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            import numba

            self.compiled = numba.njit(**self.options)(self.py_func)
        return self.compiled(*args)

    def __repr__(self) -> str:
        return f"Kernel({self.__name__})"


def kernel(**options: Any) -> Callable[[Callable[..., Any]], Kernel]:
    """Decorator: ``@kernel()`` or ``@kernel(parallel=True)``: a lazily compiled :class:`Kernel`."""

    def wrap(func: Callable[..., Any]) -> Kernel:
        return Kernel(func, **options)

    return wrap
