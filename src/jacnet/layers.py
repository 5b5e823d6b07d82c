"""The dense layer of the seed: ``y_k = f_k(y_{k-1} . W_k + b_k)``.

Rows are samples: ``X`` is ``(N, n_in)``, ``W`` is ``(n_in, n_out)``, ``b`` is
``(n_out,)``, ``T = X W + b`` and ``Y = f(T)`` are ``(N, n_out)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import blas

from .activations import ELU, Activation, LeakyReLU, ReLU, get_activation
from .validation import finite_as, positive_int

Array = np.ndarray

__all__ = ["Dense", "forward_cache", "blas_matmul", "matmul_add"]

Product = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (X, W, b) -> X W + b

# He initialisation for the rectifier family (He et al., 2015), Glorot otherwise.
_HE = (ReLU, LeakyReLU, ELU)


class Dense:
    """A fully connected layer ``Y = f(X W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    activation : str or Activation, default "identity"
        A built-in name (see ``jacnet.ACTIVATIONS``) or an instance.

    Attributes
    ----------
    W : ndarray of shape (n_in, n_out)
        Weights. Assigning an array copies it in (the storage is a view into the
        network's flat parameter vector).
    b : ndarray of shape (n_out,)
        Biases, same storage rule.
    """

    def __init__(self, n_in: int, n_out: int, activation: str | Activation = "identity") -> None:
        self.n_in = positive_int(n_in, "n_in")
        self.n_out = positive_int(n_out, "n_out")
        self.activation = get_activation(activation)
        self._W = np.zeros((self.n_in, self.n_out))
        self._b = np.zeros(self.n_out)
        self._owner: weakref.ref[Any] | None = None

    @property
    def W(self) -> Array:
        return self._W

    @W.setter
    def W(self, value: Array) -> None:
        self._assign(self._W, value, "W")

    @property
    def b(self) -> Array:
        return self._b

    @b.setter
    def b(self, value: Array) -> None:
        self._assign(self._b, value, "b")

    @staticmethod
    def _assign(dest: Array, value: Array, name: str) -> None:
        value = np.asarray(value)
        if value.shape != dest.shape:
            raise ValueError(f"{name} must have shape {dest.shape}, got {value.shape}")
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold finite real numbers, got dtype {value.dtype}")
        dest[...] = finite_as(value, dest.dtype, name)

    @property
    def n_params(self) -> int:
        return self.n_in * self.n_out + self.n_out

    def bind(self, W: Array, b: Array, owner: Any = None) -> None:
        """Use ``W`` and ``b`` (views into a flat vector) as storage, keeping the values;
        ``owner``: the :class:`Network` whose theta that vector is."""
        W[...] = self._W
        b[...] = self._b
        self._W, self._b = W, b
        self._owner = None if owner is None else weakref.ref(owner)

    @property
    def bound(self) -> bool:
        """Whether a live :class:`Network` holds this layer's parameters (in its theta).

        A copy of the layer (``copy.deepcopy``, pickle) is not bound: it owns its arrays
        until a network binds it (a copied network rebinds its own copies)."""
        return self._owner is not None and self._owner() is not None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_owner": None}  # a weak reference neither pickles nor copies

    def __copy__(self) -> Dense:
        """A free layer with copies of W and b (a shallow copy would share a network's
        parameters while claiming to own them)."""
        out = Dense.__new__(Dense)
        out.__dict__.update(self.__getstate__())
        out._W, out._b = self._W.copy(), self._b.copy()
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._owner = None  # also for layers pickled before the owner was recorded

    def init_params(self, rng: np.random.Generator) -> None:
        """Draw W (He-normal for rectifiers, Glorot-uniform otherwise); b = 0."""
        if isinstance(self.activation, _HE):
            W = rng.normal(0.0, np.sqrt(2.0 / self.n_in), size=self._W.shape)
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            W = rng.uniform(-limit, limit, size=self._W.shape)
        self._W[...] = W
        self._b[...] = 0

    def pre_activation(
        self, X: Array, product: Product | None = None, out: Array | None = None
    ) -> Array:
        """``T = X W + b``, shape (N, n_out) (seed L2: t_k = y_{k-1} W_k + b_k).

        ``product(X, W, b)`` forms it: :func:`matmul_add` (numpy's BLAS) by default, or
        :func:`blas_matmul` on the paths whose other products run in scipy's BLAS (see
        there). ``out``: a C-contiguous (N, n_out) buffer that numpy's matmul writes ``X W``
        into and ``b`` is added to in place, the same numbers as :func:`matmul_add`.
        """
        if out is None:
            return (product or matmul_add)(X, self._W, self._b)
        if product is not None:
            raise ValueError("pre_activation takes out or product, not both")
        T = np.matmul(X, self._W, out=out)
        return np.add(T, self._b, out=T)

    def forward(
        self, X: Array, product: Product | None = None, out: Array | None = None
    ) -> tuple[Array, Array]:
        """Return ``(T, Y)``: pre-activation ``X W + b`` and output ``f(T)``.

        ``product`` and ``out`` as in :meth:`pre_activation`; with ``out``, see
        :meth:`forward_into`."""
        if out is not None:
            if product is not None:
                raise ValueError("forward takes out or product, not both")
            return self.forward_into(X, out)
        T = self.pre_activation(X, product)
        return T, checked_forward(self.activation, T)

    def forward_into(self, X: Array, out: Array | None) -> tuple[Array, Array]:
        """``(T, Y)`` in the caller's buffer ``out`` (C-contiguous (N, n_out); None: a
        fresh array): numpy's matmul writes ``X W`` into it, and the activation's
        :meth:`Activation.forward_bias_into` adds ``b`` and applies f there, in one
        pass where it has a compiled kernel. It may write ``Y`` over ``T`` (then ``T is
        Y``: the activation's vjp needs only ``Y``). The numbers of :meth:`forward`."""
        T = np.matmul(X, self._W, out=out)
        return T, checked_forward(self.activation, T, in_place=True, bias=self._b)

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, {self.activation!r})"


def checked_vjp(
    act: Activation, T: Array, Y: Array, G: Array, tmp: Array | None = None
) -> Array:
    """``act.vjp(T, Y, G)``, checked to be an array of ``G``'s shape, in ``G``'s dtype
    (as :func:`checked_forward`: a user ``vjp`` in float64 keeps a float32 network
    float32). A vjp that returns ``G`` itself (the identity) returns the same object.

    With ``tmp`` (scratch of ``G``'s shape) it is ``act.vjp_into(T, Y, G, tmp)``, which
    may overwrite ``G`` and ``tmp``: the buffered backprop's call."""
    D = act.vjp(T, Y, G) if tmp is None else act.vjp_into(T, Y, G, tmp)
    if not isinstance(D, np.ndarray) or D.shape != G.shape:
        method = "vjp" if tmp is None else "vjp_into"
        raise ValueError(
            f"{type(act).__name__}.{method} must return an array of G's shape {G.shape}, "
            f"got {getattr(D, 'shape', type(D).__name__)}"
        )
    return D.astype(G.dtype, copy=False)


def checked_forward(
    act: Activation, T: Array, in_place: bool = False, bias: Array | None = None
) -> Array:
    """``act.forward(T)``, checked to be an array of ``T``'s shape and held in ``T``'s dtype.

    A user activation computing in a wider dtype (``np.float64`` constants on a float32
    network) is cast back, as its Jacobian is in :meth:`Activation.vjp`: the network keeps
    one dtype end to end. ``in_place``: ``act.forward_into(T)``, which may write ``Y``
    over ``T`` (a buffer of the caller's); with ``bias`` too, ``act.forward_bias_into(T,
    bias)``, ``T`` holding ``X W`` without its bias.
    """
    if not in_place:
        Y, method = act.forward(T), "forward"
    elif bias is None:
        Y, method = act.forward_into(T), "forward_into"
    else:
        Y, method = act.forward_bias_into(T, bias), "forward_bias_into"
    if not isinstance(Y, np.ndarray) or Y.shape != T.shape:
        raise ValueError(
            f"{type(act).__name__}.{method} must return an array of shape "
            f"{T.shape}, got {getattr(Y, 'shape', type(Y).__name__)}"
        )
    return Y.astype(T.dtype, copy=False)


def matmul_add(X: Array, W: Array, b: Array) -> Array:
    """``X W + b`` (``b`` added to every row) with numpy's matmul."""
    T = np.matmul(X, W)
    T += b
    return T


def blas_matmul(A: Array, B: Array, add: Array | None = None) -> Array:
    """``A @ B`` (plus the row ``add`` on every row) for 2-D arrays through scipy's BLAS
    ``gemm`` when both are float32 or both float64 (numpy's matmul otherwise): for the
    Jacobian, Gauss-Newton and Levenberg-Marquardt paths, whose ``syrk`` runs in scipy's
    BLAS.

    numpy and scipy each load their own OpenBLAS, and a library's threads keep spinning for
    a while after a threaded product. Products that alternate between the two libraries
    fight over the cores: Gauss-Newton's fill in numpy's BLAS slowed its syrk in scipy's,
    and the same forward pass in scipy's BLAS during mini-batch training, whose backprop
    runs in numpy's, slowed training. Each path therefore keeps to one library: mini-batch
    training and ``Network.forward`` numpy's, the paths named above scipy's. ``gemm`` also
    forms an outer product (inner dimension 1, a one-input first layer) faster than numpy's
    matmul. ``add`` is written into the result first and gemm adds the product to it
    (``beta = 1``): a bias added afterwards, broadcast over short rows, can take longer
    than the product. (The measurements: benchmarks/README.md, "Notes moved from the
    code".)
    """
    gemm = _GEMM.get(A.dtype.type)
    if gemm is None or B.dtype != A.dtype or A.ndim != 2 or B.ndim != 2:
        return A @ B if add is None else matmul_add(A, B, add)
    # (A B)^T = B^T A^T in Fortran order is A B in C order: gemm reads B^T and A^T as
    # Fortran arrays with no copy when A and B are C- or F-contiguous (the trans flags).
    b, trans_b = (B.T, 0) if B.flags.c_contiguous else (B, 1) if B.flags.f_contiguous else (
        np.ascontiguousarray(B).T, 0)
    a, trans_a = (A.T, 0) if A.flags.c_contiguous else (A, 1) if A.flags.f_contiguous else (
        np.ascontiguousarray(A).T, 0)
    if add is None:
        return gemm(1.0, b, a, trans_a=trans_b, trans_b=trans_a).T
    C = np.empty((A.shape[0], B.shape[1]), dtype=A.dtype)
    C[...] = add
    # C.T is Fortran-contiguous in gemm's dtype: gemm writes into it (and returns it).
    return gemm(1.0, b, a, beta=1.0, c=C.T, trans_a=trans_b, trans_b=trans_a, overwrite_c=1).T


_GEMM = {np.float64: blas.dgemm, np.float32: blas.sgemm}


def forward_cache(
    layers: list[Dense],
    X: Array,
    product: Product | None = None,
    out: list[Array | None] | None = None,
) -> list[tuple[Array, Array, Array]]:
    """Run the network, keeping ``(input, T, Y)`` of every layer: the forward cache.

    The cache is the only state backprop and the Jacobians need. ``product``: as in
    :meth:`Dense.forward`; ``out``: one buffer (or None) per layer for its ``T``, as
    ``out`` there (the buffered backprop's; ``T`` may then be ``Y``).
    """
    cache = []
    for k, layer in enumerate(layers):
        T, Y = layer.forward(X, product) if out is None else layer.forward_into(X, out[k])
        cache.append((X, T, Y))
        X = Y
    return cache
