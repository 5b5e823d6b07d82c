"""Derivative fitting (Sobolev training): tangents carried forward, their exact Jacobian.

With derivative data ``G`` (N, q, n_in) the residuals of a sample are the values and the
input derivatives, ``r = [y - t ; lambda (dy/dx - g)]``. The derivatives are tangents
carried forward through the layers from ``Ydot_0 = I`` (n_in, n_in), one row per input
direction ``d`` (docs/derivation.md, "Derivative fitting"):

    Tdot_k = Ydot_{k-1} . W_k            Ydot_k = Tdot_k . f'_k^T  (activation ``jvp``)

so ``dy_i/dx_d = Ydot_n[d, i]``. Their Jacobian with respect to theta comes from one
backward pass over the pair ``(y, Ydot)``: the seed's recursion R-b, R-w carried over the
tangents, plus the activations' second-order term (``hvp``). For a cotangent ``u`` of a
tangent row ``Ydot_k[d]`` and ``v`` of ``y_k``, layer k gives

    s  = u . f'_k                                   cotangent of Tdot_k[d]
    D  = v . f'_k + hvp(t, Tdot_k[d], u)            cotangent of t_k (the bias row)
    dW_k = y_{k-1}^T D + Ydot_{k-1}[d]^T s          (R-w for both members of the pair)
    v <- D . W_k^T,  u <- s . W_k^T                 (R-b for both)

A row of the Jacobian of ``dy_i/dx_d`` starts from ``u = e_i`` in tangent row d and
``v = 0``; it never leaves tangent row d, so each derivative row carries one (m,) pair,
not the n_in rows of every tangent. Memory of a chunk: O(chunk * q * (1 + n_in) * P).

:class:`SobolevObjective` is the :class:`~jacnet.objective.Objective` with derivative data:
the same three ``data_*`` sums (value, gradient, Levenberg-Marquardt's system), so the
full-batch solvers run on it unchanged; :class:`SobolevBackprop` is the mini-batch
gradient (the backward pass above with the residuals as seeds).

LM's system is ``J^T H J`` by syrk on chunks of J, or, with fewer weighted residuals than
parameters, solved in the residual space (:class:`~jacnet.gauss_newton.DualSystem`; with
a penalty :class:`~jacnet.gauss_newton.PenalizedDualSystem`). The values' Kronecker form
does not pay here: a derivative row of layer k is ``a (x) Dd + adot_d (x) s``, two
Kronecker products whose left factors change with the input direction d, so one output's
block sums take 1 + 3 n_in products of the size of the block per sample, against the
1 + n_in rows that syrk adds (the q rows of several outputs share them: only from about
ten outputs on would it pay).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import blas

from .activations import Activation
from .gauss_newton import DualSystem, PrimalSystem, dual_pays
from .jacobian import Cache, default_chunk, param_offsets
from .layers import Dense, blas_matmul, forward_cache
from .losses import Loss, Scaled
from .network import Network
from .objective import Objective
from .validation import check_real

Array = np.ndarray

__all__ = [
    "Tangents", "tangent_forward", "sobolev_rows", "fill_sobolev_jacobian",
    "sobolev_jacobian", "sobolev_loss", "check_derivatives", "as_derivatives",
    "check_second_order", "SobolevData", "SobolevObjective", "SobolevBackprop",
    "derivatives_3d",
]


def _checked(act: Activation, method: str, D: Any, like: Array) -> Array:
    """An activation's ``jvp``/``hvp`` result, checked for ``like``'s shape, in its dtype."""
    if not isinstance(D, np.ndarray) or D.shape != like.shape:
        raise ValueError(f"{type(act).__name__}.{method} must return an array of shape "
                         f"{like.shape}, got {getattr(D, 'shape', type(D).__name__)}")
    return D.astype(like.dtype, copy=False)


def _times(A: Array, W: Array) -> Array:
    """``A . W`` over A's last axis (A of any rank), as one 2-D product."""
    return np.reshape(blas_matmul(np.reshape(A, (-1, A.shape[-1])), W), A.shape[:-1] + (-1,))


# ----------------------------------------------------------------- the tangents
@dataclass(frozen=True)
class Tangents:
    """The tangents of a chunk: per layer ``Ydot_in[k]`` (n, n_in, r_k), the input rows of
    layer k (the identity for the first), and ``Tdot[k]`` (n, n_in, m_k); ``out`` is
    ``Ydot_n`` (n, n_in, q), so that ``dy_i/dx_d = out[:, d, i]``."""

    Ydot_in: list[Array]
    Tdot: list[Array]
    out: Array

    @property
    def dydx(self) -> Array:
        """``dy_{s,i}/dx_{s,d}``, shape (n, q, n_in)."""
        return np.swapaxes(self.out, 1, 2)


def tangent_forward(layers: list[Dense], cache: Cache) -> Tangents:
    """Carry ``Ydot_0 = I`` through the layers of a chunk's forward ``cache``:
    ``Tdot_k = Ydot_{k-1} . W_k``, ``Ydot_k = Tdot_k . f'_k^T`` (the activations' jvp)."""
    X = cache[0][0]
    n, n_in = X.shape
    Ydot = np.broadcast_to(np.eye(n_in, dtype=X.dtype), (n, n_in, n_in))
    ins, tdots = [], []
    for k, (layer, (_, T, Y)) in enumerate(zip(layers, cache, strict=True)):
        ins.append(Ydot)
        if k == 0:  # I . W_1: the same rows on every sample
            Tdot = np.empty((n, n_in, layer.n_out), dtype=X.dtype)
            Tdot[...] = layer.W
        else:
            Tdot = _times(Ydot, layer.W)
        tdots.append(Tdot)
        Ydot = _checked(layer.activation, "jvp", layer.activation.jvp(T, Y, Tdot), Tdot)
    return Tangents(ins, tdots, Ydot)


# -------------------------------------------------------- the backward pass over pairs
def sobolev_rows(layers: list[Dense], cache: Cache, tangents: Tangents, A: Array, B: Array
                 ) -> Iterator[tuple[Array, Array, Array]]:
    """The backward pass over ``(y, Ydot)`` for a chunk: yield, for k = n, ..., 1,
    ``(Dv, Dd, S)``.

    ``A`` (n, Rv, q): value rows, cotangents of ``y_n`` (the identity rows for the
    Jacobian, seed 1). ``B`` (n, Rd, n_in, q): derivative rows, ``B[s, r, d]`` the
    cotangent of the tangent row ``Ydot_n[d]``. ``Dv`` (n, Rv, m_k): the value rows' bias
    rows (seed R-b); ``Dd`` (n, Rd, n_in, m_k): the derivative rows' cotangents of t_k
    (their bias rows); ``S`` (n, Rd, n_in, m_k): their cotangents of ``Tdot_k``.
    """
    n, Rd, n_in, _ = B.shape
    V, Vd, U = A, None, B
    for k in range(len(layers) - 1, -1, -1):
        _, T, Y = cache[k]
        act = layers[k].activation
        m = T.shape[1]
        Uf = np.reshape(U, (n, Rd * n_in, m))
        Dv = _checked(act, "vjp", act.vjp(T, Y, V), V)  # seed R-b for the value rows
        S = _checked(act, "vjp", act.vjp(T, Y, Uf), Uf)  # s = u . f'
        Tdot = np.broadcast_to(tangents.Tdot[k][:, None], (n, Rd, n_in, m)).reshape(Uf.shape)
        D = _checked(act, "hvp", act.hvp(T, Y, Tdot, Uf), Uf)  # d/dt <u, f' Tdot[d]>
        if Vd is not None:
            D = D + _checked(act, "vjp", act.vjp(T, Y, Vd), Vd)  # v . f' (seed R-b)
        Dd, S = np.reshape(D, U.shape[:3] + (m,)), np.reshape(S, U.shape[:3] + (m,))
        yield Dv, Dd, S
        if k:
            W = layers[k].W.T
            V, Vd, U = _times(Dv, W), np.reshape(_times(Dd, W), (n, Rd * n_in, -1)), _times(S, W)


def fill_sobolev_jacobian(layers: list[Dense], X: Array, J: Array, cache: Cache | None = None,
                          tangents: Tangents | None = None) -> Tangents:
    """Write the Jacobian of a chunk's residuals into ``J`` (n, q (1 + n_in), P): per sample
    the q value rows ``dy_i/dtheta`` (seed 1-6), then the q n_in derivative rows
    ``d(dy_i/dx_d)/dtheta`` in the order of ``G[s, i, d]``. ``cache`` and ``tangents``:
    the chunk's forward pass and tangents at this theta when the caller holds them.
    Returns the chunk's tangents."""
    cache = forward_cache(layers, X, blas_matmul) if cache is None else cache
    tangents = tangent_forward(layers, cache) if tangents is None else tangents
    n, n_in = X.shape
    q = layers[-1].n_out
    eye = np.eye(q, dtype=J.dtype)
    A = np.broadcast_to(eye, (n, q, q))
    B = np.broadcast_to(eye[:, None, :], (n, q, n_in, q))
    rows = sobolev_rows(layers, cache, tangents, A, B)
    for k, (Dv, Dd, S) in zip(range(len(layers) - 1, -1, -1), rows, strict=True):
        w0, b0, end = param_offsets(layers)[k]
        Xin, Yin = cache[k][0], tangents.Ydot_in[k]
        r, m = layers[k].n_in, layers[k].n_out
        np.einsum("sa,srb->srab", Xin, Dv, out=J[:, :q, w0:b0].reshape(n, q, r, m))  # R-w
        J[:, :q, b0:end] = Dv
        # R-w for the pair: y_{k-1}^T D + Ydot_{k-1}[d]^T s, as one (r, 2) x (2, m) product
        left = np.stack([np.broadcast_to(Xin[:, None], Yin.shape), Yin], axis=-1)
        right = np.stack([Dd, S], axis=-2)  # (n, q, n_in, 2, m)
        Jd = J[:, q:, w0:b0].reshape(n, q, n_in, r, m)  # a view: q n_in rows of J
        np.matmul(left[:, None], right, out=Jd)
        J[:, q:, b0:end] = Dd.reshape(n, q * n_in, m)
    return tangents


def sobolev_jacobian(net: Network, X: Any, chunk: int | None = None) -> Array:
    """The Jacobian of the values and input derivatives of ``net`` at ``X``, shape
    (N, q (1 + n_in), P): row ``i`` of a sample is ``dy_i/dtheta``, row ``q + i n_in + d``
    is ``d(dy_i/dx_d)/dtheta``."""
    X = net.check_X(X)
    check_second_order(net)
    N, q = X.shape[0], net.n_out
    R = q * (1 + net.n_in)
    J = np.empty((N, R, net.n_params), dtype=net.dtype)
    step = chunk or default_chunk(N, R * net.n_params)
    for start in range(0, N, step):
        fill_sobolev_jacobian(net.layers, X[start : start + step], J[start : start + step])
    return J


# ------------------------------------------------------------------ the data
def check_second_order(net: Network, name: str = "dTdX") -> None:
    """Raise ValueError naming the first layer whose activation has no second-order term
    (``hvp``): fitting derivatives needs it in every layer."""
    for k, layer in enumerate(net.layers):
        t = np.zeros((1, layer.n_out), dtype=net.dtype)
        try:  # a probe on one zero row: only whether hvp exists is asked
            with np.errstate(all="ignore"):
                layer.activation.hvp(t, layer.activation.forward(t), t, t)
        except NotImplementedError as e:
            raise ValueError(f"{name} needs the second-order term of every layer's "
                             f"activation; layers[{k}]: {e}") from None


def check_derivatives(G: Any, net: Network, n_rows: int, name: str = "dTdX") -> Array:
    """``G`` as an (N, q, n_in) array of the network's dtype: NaN marks an unobserved
    derivative, an infinite entry is a ValueError; (N, n_in) is accepted for one output."""
    return as_derivatives(G, n_rows, net.n_out, net.n_in, net.dtype, name)


def as_derivatives(G: Any, n_rows: int, q: int, n_in: int, dtype: Any = np.float64,
                   name: str = "dTdX", dims: tuple[str, str] = ("n_out", "n_in")) -> Array:
    """:func:`check_derivatives` without a network: ``G`` as an (n_rows, q, n_in) array of
    ``dtype`` (an (n_rows, n_in) one for ``q = 1``), NaN kept, an infinite entry refused;
    errors name the argument ``name`` and the dimensions ``dims`` (e.g. the estimators'
    ``("n_outputs", "n_features")``)."""
    arr = np.asarray(G)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = derivatives_3d(arr, n_rows, q, n_in, name, dims).astype(dtype)
    if np.isinf(arr).any():
        raise ValueError(f"{name} must hold finite numbers or NaN (not observed), got an "
                         "infinite entry")
    return arr


def derivatives_3d(G: Any, n_rows: int, q: int, n_in: int, name: str = "dTdX",
                   dims: tuple[str, str] = ("n_out", "n_in")) -> Any:
    """``G`` (numpy or dask) of shape (n_rows, q, n_in), an (n_rows, n_in) one taken for
    ``q = 1``; any other shape is a ValueError naming ``name`` and the dimensions ``dims``."""
    given = G.shape
    if G.ndim == 2 and q == 1:
        G = G[:, None, :]
    if G.shape != (n_rows, q, n_in):
        one = f" or (N, {dims[1]}) = {(n_rows, n_in)}" if q == 1 else ""
        raise ValueError(f"{name} must have shape (N, {dims[0]}, {dims[1]}) = "
                         f"{(n_rows, q, n_in)}{one}, got {given}")
    return G


@dataclass(frozen=True)
class SobolevData:
    """Derivative data of a set: ``G`` (N, q, n_in) with NaN where not observed, and the
    weight ``lam`` (lambda) of the derivative residuals ``lam (dy/dx - g)``."""

    G: Array
    lam: float

    def __post_init__(self) -> None:
        check_real(self.lam, "derivative_weight", "a non-negative number", lambda v: v >= 0)

    @property
    def observed(self) -> Array:
        """1 where a derivative is observed, else 0, (N, q, n_in)."""
        return (~np.isnan(self.G)).astype(self.G.dtype)

    def rows(self, rows: slice | Array) -> SobolevData:
        return SobolevData(self.G[rows], self.lam)


def _norm(loss: Loss, w: Array | None, N: int) -> float:
    """What a sum-of-squares loss divides by: 1 (sse), or the total sample weight (mse);
    a :class:`~jacnet.losses.Scaled` loss (the estimators' half mean) divides that by its
    factor."""
    norm = float(N) if w is None else float(w.sum())
    norm = norm if loss.mean_over_samples else 1.0
    return norm / loss.factor if isinstance(loss, Scaled) else norm


def _chunk_terms(Y: Array, T: Array, dydx: Array, data: SobolevData, w: Array | None
                 ) -> tuple[Array, Array]:
    """Residuals ``e`` and weights ``H`` (n, q (1 + n_in)) of a chunk: values ``y - t``
    with weight ``w_s``, derivatives ``dy/dx - g`` with weight ``lam^2 w_s`` where observed
    (0 and residual 0 where not)."""
    n, q = Y.shape
    seen = ~np.isnan(data.G)
    e = np.concatenate([Y - T, np.where(seen, dydx - np.where(seen, data.G, 0), 0
                                        ).reshape(n, -1)], axis=1)
    H = np.concatenate([np.ones_like(Y), (data.lam**2) * seen.reshape(n, -1)], axis=1)
    if w is not None:
        H *= w[:, None]
    return e, H.astype(Y.dtype, copy=False)


def _require_squares(loss: Loss) -> None:
    if not loss.sum_of_squares:
        raise ValueError(f"derivative data (dTdX) needs a sum-of-squares loss ('sse' or "
                         f"'mse'), got loss={loss.name!r}")


def _slices(net: Network, N: int, chunk: int | None) -> Iterator[slice]:
    """Chunks of samples for the tangents' forward and backward passes, each bounded in
    memory like a chunk of the values' Jacobian."""
    step = chunk or default_chunk(N, net.n_out * (1 + net.n_in) * max(net.n_params, net.n_in))
    return (slice(s, s + step) for s in range(0, N, step))


@dataclass(frozen=True)
class _Pass:
    """A chunk's forward pass and tangents at one theta, and its sum of weighted squares."""

    cache: Cache
    tangents: Tangents
    sq: float


def _chunk_pass(layers: list[Dense], X: Array, T: Array, w: Array | None, data: SobolevData
                ) -> _Pass:
    cache = forward_cache(layers, X, blas_matmul)
    tangents = tangent_forward(layers, cache)
    e, H = _chunk_terms(cache[-1][2], T, tangents.dydx, data, w)
    return _Pass(cache, tangents, float(np.vdot(H * e, e)))


def sobolev_loss(net: Network, X: Array, T: Array, loss: Loss, w: Array | None,
                 data: SobolevData, chunk: int | None = None, norm: float | None = None
                 ) -> float:
    """The values-and-derivatives loss of :class:`SobolevObjective` (no penalty) on checked
    arrays; ``norm``: what it divides by (default: the loss's, from ``w``)."""
    _require_squares(loss)
    total = 0.0
    for rows in _slices(net, X.shape[0], chunk):
        total += _chunk_pass(net.layers, X[rows], T[rows], None if w is None else w[rows],
                             data.rows(rows)).sq
    return total / (_norm(loss, w, X.shape[0]) if norm is None else norm)


# ------------------------------------------------------------------ the objective
class SobolevObjective(Objective):
    """The :class:`~jacnet.objective.Objective` on values and input derivatives.

    ``J = (1 / c) sum_s w_s (||y_s - t_s||^2 + lam^2 sum_observed (dy_si/dx_d - g_sid)^2)``
    plus the penalty, with ``c = 1`` for ``sse`` and the total sample weight (N without
    weights) for ``mse``: mse divides by the samples as without derivatives, and a
    sample's derivatives add to its error like more outputs. ``data`` holds ``G`` (N, q,
    n_in) (NaN: not observed, weight 0) and ``lam``.

    Levenberg-Marquardt's system takes the smaller of two forms: the primal ``J^T H J``
    (P, P), or, with fewer weighted residuals ``N_e`` than parameters, the dual form in the
    residual space (``N_e`` square; with a penalty,
    :class:`~jacnet.gauss_newton.PenalizedDualSystem`).
    """

    def __init__(self, net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float = 0.0,
                 chunk: int | None = None, *, data: SobolevData) -> None:
        _require_squares(loss)
        check_second_order(net)
        super().__init__(net, X, T, loss, w, alpha, chunk)
        self.data = data
        self.norm = _norm(loss, w, X.shape[0])
        #: residuals with a positive weight: observed values and derivatives (N_e)
        self.n_values = int(X.shape[0] * net.n_out + np.count_nonzero(~np.isnan(data.G)))
        #: the values the data count as (Bayesian regularization's N_e): with sample
        #: weights ``sum_s w_s (q + observed derivatives of s)``, an integer weight being
        #: that many repeated rows; ``n_values`` without weights
        self.n_weighted = float(self.n_values) if self.w is None else float(
            self.w @ (net.n_out + np.count_nonzero(~np.isnan(data.G), axis=(1, 2))))

    def _chunks(self) -> Iterator[slice]:
        return _slices(self.net, self.X.shape[0], self.chunk)

    def data_value(self) -> tuple[float, Any]:
        """The loss over the samples, and as its state the forward pass and tangents when
        one chunk held every row (the system at this theta reuses them; else None)."""
        chunks = list(self._chunks())
        if len(chunks) > 1:
            return sobolev_loss(self.net, self.X, self.T, self.loss, self.w, self.data,
                                self.chunk, self.norm), None
        done = _chunk_pass(self.net.layers, self.X, self.T, self.w, self.data)
        return done.sq / self.norm, done

    def data_value_and_grad(self) -> tuple[float, Array]:
        bp = SobolevBackprop(self.net, self.loss, grad=self.grad)
        value = 0.0
        acc = np.zeros_like(self.grad)
        for rows in self._chunks():
            value += bp.sums(self.X[rows], self.T[rows], None if self.w is None else
                             self.w[rows], self.data.rows(rows), self.norm)
            acc += self.grad
        self.grad[...] = acc
        return value, self.grad

    def data_system(self, state: Any, chunk: int | None) -> PrimalSystem | DualSystem:
        """Levenberg-Marquardt's system of the values and derivatives: ``J^T H J`` and
        ``J^T H e`` (scale ``2 / c``), streamed over chunks (syrk on each chunk of J); the
        dual form from the weighted rows where that is faster
        (:func:`~jacnet.gauss_newton.dual_pays`; the penalty, if any, enters in
        :meth:`Objective.system`).
        ``state``: :meth:`data_value`'s at this theta (its forward pass is reused)."""
        N, P = self.X.shape[0], self.net.n_params
        step = self._step(chunk)
        if dual_pays(self.n_values, P, self.mask is not None):
            A, r = self._dual_rows(step, state)
            return DualSystem(A, r, A.T @ r, 2.0 / self.norm)
        syrk, gemv = blas.get_blas_funcs(("syrk", "gemv"), dtype=self.net.dtype)
        JtJ = np.zeros((P, P), dtype=self.net.dtype, order="F")
        Jtg = np.zeros(P, dtype=self.net.dtype)
        for start in range(0, N, step):
            A, e, H = self._weighted_rows(slice(start, start + step), state)
            if not np.all(H == 1):  # else sqrt(H) A is A itself
                sw = np.sqrt(H)
                A *= sw[:, None]
                e = sw * e
            Jtg = gemv(1.0, A.T, e, beta=1.0, y=Jtg, overwrite_y=1)
            JtJ = syrk(1.0, A.T, beta=1.0, c=JtJ, trans=0, lower=0, overwrite_c=1)
        return PrimalSystem(JtJ, Jtg, 2.0 / self.norm)

    def _step(self, chunk: int | None) -> int:
        N, R = self.X.shape[0], self.net.n_out * (1 + self.net.n_in)
        return chunk or self.chunk or default_chunk(N, R * self.net.n_params)

    def _weighted_rows(self, rows: slice, state: Any = None) -> tuple[Array, Array, Array]:
        """A chunk's Jacobian rows (n R, P), residuals and weights (n R,); ``state``: the
        pass of :meth:`data_value`, used when it covers the chunk (all rows)."""
        Xc = self.X[rows]
        n, P = Xc.shape[0], self.net.n_params
        R = self.net.n_out * (1 + self.net.n_in)
        J = self._workspace.array((n, R, P), self.net.dtype)
        if isinstance(state, _Pass) and n == self.X.shape[0]:
            cache, tangents = state.cache, state.tangents
        else:
            cache = forward_cache(self.net.layers, Xc, blas_matmul)
            tangents = tangent_forward(self.net.layers, cache)
        fill_sobolev_jacobian(self.net.layers, Xc, J, cache, tangents)
        e, H = _chunk_terms(cache[-1][2], self.T[rows], tangents.dydx, self.data.rows(rows),
                            None if self.w is None else self.w[rows])
        return J.reshape(n * R, P), e.reshape(-1), H.reshape(-1)

    def _dual_rows(self, step: int, state: Any) -> tuple[Array, Array]:
        """The rows of positive weight for the dual forms: ``A = H^(1/2) J`` (N_e, P) and
        ``r = H^(1/2) e`` (N_e,)."""
        As, rs = [], []
        for start in range(0, self.X.shape[0], step):
            A, e, H = self._weighted_rows(slice(start, start + step), state)
            keep = H > 0
            sw = np.sqrt(H[keep])
            As.append(A[keep] * sw[:, None])
            rs.append(sw * e[keep])
        return np.concatenate(As), np.concatenate(rs)


# ------------------------------------------------------------- the mini-batch gradient
class SobolevBackprop:
    """The gradient of the values-and-derivatives loss on a batch: ``bp(X, T, w, data)``
    returns the loss (as :class:`SobolevObjective` defines it, on the batch) and writes
    ``dJ/dtheta`` into ``bp.grad``.

    The backward pass over ``(y, Ydot)`` with the weighted residuals as its seeds (one
    value row and one derivative row per sample): about ``1 + n_in`` times the work of
    the values' backprop (each tangent row is carried), in fresh arrays.
    """

    def __init__(self, net: Network, loss: Loss, grad: Array | None = None) -> None:
        _require_squares(loss)
        self.net, self.loss = net, loss
        self.grad = np.empty(net.n_params, dtype=net.dtype) if grad is None else grad

    def __call__(self, X: Array, T: Array, w: Array | None, data: SobolevData) -> float:
        return self.sums(X, T, w, data, _norm(self.loss, w, X.shape[0]))

    def sums(self, X: Array, T: Array, w: Array | None, data: SobolevData, norm: float
             ) -> float:
        """``(1 / norm) sum_s ...`` on the rows given, its gradient into ``self.grad``."""
        layers = self.net.layers
        cache = forward_cache(layers, X, blas_matmul)
        tangents = tangent_forward(layers, cache)
        e, H = _chunk_terms(cache[-1][2], T, tangents.dydx, data, w)
        n, q, n_in = X.shape[0], self.net.n_out, self.net.n_in
        g = (2.0 / norm) * H * e  # dJ/d(residual)
        A = g[:, None, :q]
        B = np.swapaxes(g[:, q:].reshape(n, 1, q, n_in), 2, 3)  # (n, 1, n_in, q)
        offsets = param_offsets(layers)
        rows = sobolev_rows(layers, cache, tangents, A, B)
        for k, (Dv, Dd, S) in zip(range(len(layers) - 1, -1, -1), rows, strict=True):
            w0, b0, end = offsets[k]
            D = Dv[:, 0] + Dd[:, 0].sum(axis=1)  # every row's bias cotangent, summed
            Yin = tangents.Ydot_in[k]
            dW = blas_matmul(cache[k][0].T, D)  # seed R-w, values and derivatives
            dW += blas_matmul(Yin.reshape(-1, Yin.shape[2]).T, S[:, 0].reshape(-1, S.shape[3]))
            self.grad[w0:b0] = dW.ravel()
            self.grad[b0:end] = D.sum(axis=0)
        return float(np.vdot(H * e, e)) / norm
