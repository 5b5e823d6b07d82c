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
imported, and each kernel compiles on its first call for the dtypes it meets (float32,
float64), cached on disk by numba (``cache=True``) so that later processes load it.

Every kernel is compiled with ``error_model="numpy"``: a float division by zero gives
inf or NaN as numpy's does, where numba's default (Python's rule) tests every divisor to
raise ZeroDivisionError, a branch that also keeps LLVM from vectorising the loop. The
kernels run on the calling thread (``parallel`` is off): each is one short pass between
BLAS calls that hold the threads, where a parallel launch measured no faster, and far
slower when another process holds a core (docs/architecture.md, "Compiled kernels").
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import cache
from types import FunctionType
from typing import Any

import numpy as np

__all__ = ["Kernel", "available", "enabled", "fits", "kernel"]

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


#: The dtypes kernels compile for; other arrays take the numpy path.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fits(*arrays: Any) -> bool:
    """Whether a kernel may take ``arrays``: C-contiguous ndarrays of one dtype, float32
    or float64 (what the kernels are written and compiled for; views of other layouts
    and other dtypes take the numpy path)."""
    first = arrays[0]
    if not isinstance(first, np.ndarray) or first.dtype not in DTYPES:
        return False
    return all(
        isinstance(a, np.ndarray) and a.dtype == first.dtype and a.flags.c_contiguous
        for a in arrays
    )


class Kernel:
    """A Python function compiled by ``numba.njit`` on its first call.

    Parameters
    ----------
    func : callable
        The loop, written in the subset of Python and numpy that numba compiles. It is also
        callable as plain Python (``kernel.py_func``) for debugging.
    options : dict
        Extra ``numba.njit`` options; ``fastmath`` is refused, since it would break the
        bit-identity with the numpy path. The defaults are ``cache=True``, ``nogil=True``
        and ``error_model="numpy"`` (module docstring).
    """

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        if options.get("fastmath"):
            raise ValueError("a jacnet kernel must not use fastmath: results must equal numpy's")
        self.py_func = func
        self.options = {"cache": True, "nogil": True, "error_model": "numpy", **options}
        self.compiled: Callable[..., Any] | None = None
        self.__name__ = getattr(func, "__name__", "kernel")
        self.__doc__ = func.__doc__

    def __call__(self, *args: Any) -> Any:
        compiled = self.compiled if self.compiled is not None else self.dispatcher()
        return compiled(*args)

    def dispatcher(self) -> Callable[..., Any]:
        """numba's dispatcher of the loop (made on the first call; numba compiles it
        for each new signature). A kernel may call another: the compiled loop sees the
        other's dispatcher where its Python code names the Kernel."""
        if self.compiled is None:
            import numba

            func = self.py_func
            calls = {name: value.dispatcher() for name in func.__code__.co_names
                     if isinstance(value := func.__globals__.get(name), Kernel)}
            if calls:
                func = FunctionType(func.__code__, {**func.__globals__, **calls},
                                    func.__name__, func.__defaults__, func.__closure__)
                func.__qualname__ = self.py_func.__qualname__
            self.compiled = numba.njit(**self.options)(func)
        return self.compiled

    def __repr__(self) -> str:
        return f"Kernel({self.__name__})"


def kernel(**options: Any) -> Callable[[Callable[..., Any]], Kernel]:
    """Decorator: ``@kernel()`` (``numba.njit`` options as keywords): a lazily compiled
    :class:`Kernel`."""

    def wrap(func: Callable[..., Any]) -> Kernel:
        return Kernel(func, **options)

    return wrap
