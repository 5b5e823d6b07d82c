"""Gauss-Newton: ``J^T W J`` and ``J^T W r`` streamed over chunks of samples, and LM's system.

``J`` is the (N q, P) stack of the per-output rows ``dy_{s,i}/dtheta`` (seed 1-6, R-b,
R-w; :mod:`jacnet.jacobian`), ``W`` a diagonal of weights and ``r`` the residuals. All of
J never exists at once: memory is O(P^2 + chunk * q * P). The sums come in two forms that
give the same system:

- **syrk**: fill a chunk of J, accumulate ``J^T J`` by BLAS syrk into the upper triangle.
- **Kronecker**: with the bias as a last input 1, the rows of layer k are
  ``a_k ⊗ D_k[i]`` (seed R-w), so block (k, l) of ``J^T J`` is
  ``sum_s (a_k a_l^T) ⊗ (D_k^T D_l)``: one GEMM per block, whose cost does not grow with
  the q rows per sample. A cost model (:func:`_kronecker_pays`) picks it where it is
  expected to be faster.

Levenberg-Marquardt's linear system travels as a :class:`PrimalSystem`
(``(J^T H J + mu I) d = -J^T g``) or, when there are fewer rows than parameters, a
:class:`DualSystem` (``(A A^T + mu I) a = -r``, ``d = A^T a``), and with an L2 penalty on
the weights there a :class:`PenalizedDualSystem` (still in the residual space); each solves
itself for a given ``mu``. :func:`gauss_newton_system` builds the first two from a loss's
Gauss-Newton terms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from . import jacobian as jac
from .jacobian import Cache, default_chunk, param_offsets
from .layers import Dense, blas_matmul, forward_cache
from .losses import LogitModel, Loss

Array = np.ndarray

__all__ = [
    "LinearSystem",
    "Workspace", "normal_equations", "curvature_sums", "logit_curvature_sums",
    "PrimalSystem", "DualSystem", "PenalizedDualSystem", "gauss_newton_system",
    "primal_system", "dual_pays", "PENALIZED_DUAL_SHARE", "cho_solve_shifted",
]


class Workspace:
    """Scratch memory that one caller reuses across calls (Gauss-Newton's chunk of J).

    An iterative solver builds a Gauss-Newton system every iteration; a fresh chunk buffer
    each time can cost page faults and zeroing by the kernel, a large share of a small
    system's time. The buffer grows to the largest request and is held until the workspace
    is dropped. Not for use by two threads at once.
    """

    def __init__(self) -> None:
        self._buf: Array | None = None

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` in held memory."""
        size = math.prod(shape)
        if self._buf is None or self._buf.dtype != dtype or self._buf.size < size:
            self._buf = np.empty(size, dtype=dtype)
        return self._buf[:size].reshape(shape)


# ------------------------------------------------------------- what a call asks for
@dataclass(frozen=True)
class _Terms:
    """What weighs J's rows: ``R`` (N, q) (or (N,) for one output), ``weights`` W's
    diagonal (N,) or (N, q) or None, whether the second sum is ``J^T W r`` or ``J^T r``,
    and ``first(samples)``: a logit model's rows ``A_s`` (n, q, q) to start the recursion
    from (``R`` is then the model's gradient at the logits; see ``losses.LogitModel``)."""

    R: Array
    weights: Array | None = None
    weight_residuals: bool = True
    first: Callable[[slice], Array] | None = None


@dataclass(frozen=True)
class _Stream:
    """How the sums stream: samples per chunk, the forward cache of all of X (used when
    one chunk covers X), the workspace holding the chunk buffers, and whether ``J^T W J``
    is mirrored (else its upper triangle only, zeros strictly below)."""

    chunk: int | None = None
    cache: Cache | None = None
    workspace: Workspace | None = None
    mirror: bool = True

    def scratch(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return (np.empty(shape, dtype=dtype) if self.workspace is None
                else self.workspace.array(shape, np.dtype(dtype)))


# ------------------------------------------------------------------ the sums
def normal_equations(
    layers: list[Dense], X: Array, R: Array, weights: Array | None = None, *,
    chunk: int | None = None, workspace: Workspace | None = None, mirror: bool = True,
) -> tuple[Array, Array]:
    """Streaming ``J^T W J`` (P, P) and ``J^T W r`` (P,) over chunks of samples.

    Parameters
    ----------
    layers : list of Dense
    X : ndarray of shape (N, n_in)
    R : ndarray of shape (N, q)
        Residuals ``r = R.ravel()``.
    weights : ndarray of shape (N,) or (N, q), optional
        W's diagonal: per sample (repeated over the q outputs) or per output.
    chunk : int, optional
        Samples per chunk (default: a bounded number of elements per chunk).
    workspace : Workspace, optional
        Holds the chunk buffer between calls.
    mirror : bool, default True
        False leaves ``J^T W J`` (Fortran order) with its upper triangle only, the strictly
        lower one zero, for a caller that reads one triangle (a Cholesky solve).

    Returns
    -------
    JtWJ : ndarray of shape (P, P)
    JtWr : ndarray of shape (P,)
    """
    return _sums(layers, X, _Terms(R, weights), _Stream(chunk, None, workspace, mirror))


def curvature_sums(
    layers: list[Dense], X: Array, g: Array, H: Array | None = None, *,
    chunk: int | None = None, cache: Cache | None = None, workspace: Workspace | None = None,
    mirror: bool = True,
) -> tuple[Array, Array]:
    """``J^T H J`` (P, P) and ``J^T g`` (P,): a loss's Gauss-Newton model, where ``H``
    (N, q) (None: ones) weighs the curvature only and ``g`` (N, q) is the output gradient.
    ``cache``: the forward cache of all of ``X`` at this theta, used when one chunk covers
    X. Other arguments as :func:`normal_equations`."""
    terms = _Terms(g, H, weight_residuals=False)
    return _sums(layers, X, terms, _Stream(chunk, cache, workspace, mirror))


def logit_curvature_sums(
    layers: list[Dense], X: Array, model: LogitModel, *, chunk: int | None = None,
    cache: Cache | None = None, workspace: Workspace | None = None, mirror: bool = True,
) -> tuple[Array, Array]:
    """A generalised Gauss-Newton model at the logits z (``losses.LogitModel``):
    ``sum_s (A_s J_z,s)^T (A_s J_z,s)`` (P, P) and ``J_z^T g`` (P,), J_z the Jacobian of
    the logits. Other arguments as :func:`curvature_sums`."""
    terms = _Terms(model.g, None, weight_residuals=False, first=model.rows)
    return _sums(layers, X, terms, _Stream(chunk, cache, workspace, mirror))


def _sums(layers: list[Dense], X: Array, terms: _Terms, stream: _Stream) -> tuple[Array, Array]:
    """The system in the form the cost model picks (a logit model's rows A_s are (q, q)
    too, so the same model applies)."""
    if _kronecker_pays(layers, layers[-1].n_out, X.shape[0], stream.chunk):
        # Its factors multiply two inputs (x x') where J's rows multiply an input by a bias
        # row (x d): an input so large that it saturates its unit (x = 3e19 in float32,
        # d = 0) overflows to inf * 0 = NaN there and not in J. A system that is not finite
        # is built again by syrk on J, whose result stands (NaN where J has NaN).
        with np.errstate(over="ignore", invalid="ignore"):
            sums = _kronecker_sums(layers, X, terms, stream)
        if math.isfinite(sums[0].sum()):  # one pass, no temporary; NaN and inf propagate
            return sums
        del sums
    return _syrk_sums(layers, X, terms, stream)


def _syrk_sums(layers: list[Dense], X: Array, terms: _Terms, stream: _Stream
               ) -> tuple[Array, Array]:
    """The sums by BLAS syrk on chunks of J (one chunk buffer, reused)."""
    N, q, dtype = X.shape[0], layers[-1].n_out, X.dtype
    P = sum(layer.n_params for layer in layers)
    R, weights = terms.R, terms.weights
    step = stream.chunk or default_chunk(N, q * P)
    # Every product here goes through scipy's BLAS: numpy links its own OpenBLAS, whose
    # threads spin for a while after a large product and then compete with the next syrk.
    syrk, gemv = blas.get_blas_funcs(("syrk", "gemv"), dtype=dtype)
    JtJ = np.zeros((P, P), dtype=dtype, order="F")
    Jtr = np.zeros(P, dtype=dtype)
    buf = stream.scratch((min(step, N), q, P), dtype)
    for start in range(0, N, step):
        Xc = X[start : start + step]
        n = Xc.shape[0]
        Jc = buf[:n]
        A = Jc.reshape(n * q, P)  # a view: what the fill writes into Jc
        # A.T is (P, n q) and Fortran-contiguous: gemv and syrk take it with no copy.
        if terms.first is not None:  # a logit model: A_s J_z filled directly, J_z^T r by vjp
            c = (stream.cache if n == N else None) or forward_cache(layers, Xc, blas_matmul)
            jac.fill_jacobian(layers, Xc, Jc, c, terms.first(slice(start, start + n)))
            Jtr += jac.logit_vjp(layers, c, R[start : start + n])
        else:
            jac.fill_jacobian(layers, Xc, Jc, stream.cache if n == N else None)
            r = R[start : start + n].reshape(n * q)
            if weights is not None:
                if not terms.weight_residuals:
                    Jtr = gemv(1.0, A.T, r, beta=1.0, y=Jtr, overwrite_y=1)
                wc = np.sqrt(weights[start : start + n])
                sw = (wc.reshape(n * q) if wc.ndim == 2 else np.repeat(wc, q)).astype(
                    dtype, copy=False)
                A *= sw[:, None]
                if terms.weight_residuals:
                    Jtr = gemv(1.0, A.T, r * sw, beta=1.0, y=Jtr, overwrite_y=1)
            else:
                Jtr = gemv(1.0, A.T, r, beta=1.0, y=Jtr, overwrite_y=1)
        JtJ = syrk(1.0, A.T, beta=1.0, c=JtJ, trans=0, lower=0, overwrite_c=1)
    return (_mirror_upper(JtJ) if stream.mirror else JtJ), Jtr


def _mirror_upper(C: Array, block: int = 128) -> Array:
    """Copy the upper triangle of the square, contiguous ``C`` onto its strictly lower one,
    in place.

    ``C``'s strictly lower triangle must be zero (syrk with ``lower=0`` into zeros leaves
    it so). Block by block, so each transposed copy stays in cache (``triu(C) + triu(C, 1).T``
    would stream the whole matrix through memory several times, at large P a sizeable share
    of the syrk work). A diagonal block adds its own transpose (zeros below the diagonal
    make that the mirror) and halves its diagonal, which doubled: both exact in floating
    point.
    """
    if not (C.flags.c_contiguous or C.flags.f_contiguous):
        raise ValueError("C must be C- or Fortran-contiguous")
    P = C.shape[0]
    flat = C.ravel(order="K")  # a view (C is contiguous): the diagonal is every (P+1)-th
    for a in range(0, P, block):
        b = min(a + block, P)
        diag = C[a:b, a:b]
        diag += diag.T  # numpy buffers the overlapping transpose
        flat[a * (P + 1) : b * (P + 1) : P + 1] *= 0.5
        C[b:, a:b] = C[a:b, b:].T
    return C


# ------------------------------------------------------- the Kronecker form's cost model
# Per sample, in flops of syrk on J (q P^2): the Kronecker form's GEMM flops, plus
# _KRONECKER_FORMING flops' worth per element of its factors formed (each one a memory
# pass rather than arithmetic; a diagonal block's factor sums q rows of D), plus
# _KRONECKER_PLACING per entry of J^T J put in place (done once per call, so P^2 / N per
# sample: a strided copy per entry). It takes the Kronecker form where that totals at most
# _KRONECKER_SHARE of syrk's (below 1: syrk runs closer to the machine's peak than the
# GEMMs on the thin factors, and the model's terms are estimates). The three numbers were
# fitted on measured times of both forms; the networks, the fit and the figures are in
# benchmarks/README.md, and `python -m benchmarks.gn_forms` checks them on a machine.
_KRONECKER_FORMING = 25
_KRONECKER_PLACING = 100
_KRONECKER_SHARE = 0.45
# Its Python loops run once per block and row per chunk: with chunks of a few samples they
# cost more than the work saved, so a chunk given below this many samples keeps syrk.
_KRONECKER_MIN_CHUNK = 64


def _kronecker_pays(layers: list[Dense], rows: int, n: int, chunk: int | None = None) -> bool:
    """Whether :func:`_kronecker_sums` is expected to build the system of ``n`` samples
    with ``rows`` rows each, in chunks of ``chunk`` samples, faster than syrk on chunks of J
    (the cost model above)."""
    if chunk is not None and chunk < min(n, _KRONECKER_MIN_CHUNK):
        return False
    return _kronecker_cheaper(tuple((layer.n_in, layer.n_out) for layer in layers), rows, n)


@functools.lru_cache(maxsize=64)
def _kronecker_cheaper(shapes: tuple[tuple[int, int], ...], rows: int, n: int) -> bool:
    """:func:`_kronecker_pays`'s cost model on the layers' ``(n_in, n_out)`` (held per
    shape: a solver asks the same question every iteration)."""
    P = sum(a * m + m for a, m in shapes)
    gemm = formed = 0
    for k, l, u, v in _blocks_of(shapes):
        gemm += 2 * u * v
        formed += u + (rows * v if k == l else v)  # a diagonal block sums q rows of D
    kronecker = gemm + _KRONECKER_FORMING * formed + _KRONECKER_PLACING * P * P / max(n, 1)
    return kronecker <= _KRONECKER_SHARE * rows * P * P


def _kronecker_blocks(layers: list[Dense]) -> list[tuple[int, int, int, int]]:
    """``(k, l, u, v)`` for each block ``k <= l`` of :func:`_kronecker_sums`: the widths
    of its two factors per sample, ``a_k a_l`` and ``m_k m_l`` (``a = n_in + 1``,
    ``m = n_out``), or the pairs ``i <= j`` of each on a diagonal block."""
    return _blocks_of(tuple((layer.n_in, layer.n_out) for layer in layers))


def _blocks_of(shapes: tuple[tuple[int, int], ...]) -> list[tuple[int, int, int, int]]:
    """:func:`_kronecker_blocks` of the layers' ``(n_in, n_out)``."""
    a = [n_in + 1 for n_in, _ in shapes]
    m = [n_out for _, n_out in shapes]
    return [(k, l, a[k] * (a[k] + 1) // 2, m[k] * (m[k] + 1) // 2) if k == l
            else (k, l, a[k] * a[l], m[k] * m[l])
            for k in range(len(a)) for l in range(k, len(a))]


@functools.lru_cache(maxsize=32)
def _pair_positions(a: int) -> Array:
    """The (a, a) table of the position of the pair ``(min(i, j), max(i, j))`` among the
    pairs ``i <= j`` of ``range(a)`` in ``np.triu_indices`` order, flattened (read-only)."""
    i, j = np.triu_indices(a)
    where = np.empty((a, a), dtype=np.intp)
    where[i, j] = where[j, i] = np.arange(i.size)
    where.flags.writeable = False
    return where.ravel()


# ------------------------------------------------------------ the Kronecker form
def _kronecker_sums(layers: list[Dense], X: Array, terms: _Terms, stream: _Stream
                    ) -> tuple[Array, Array]:
    """:func:`_sums`'s system from the Kronecker structure of J, never J itself.

    With ``a_k = [y_{k-1}, 1]`` (a layer's input and a 1 for its bias, (n_k + 1,)) and
    ``D_k`` the (q, m_k) bias rows of a sample (seed R-b), the rows of J for layer k are
    ``a_k ⊗ D_k[i]`` (seed R-w, the bias as the last input), so the (k, l) block is

        sum_s sum_i (a_k ⊗ D_k[i]) (a_l ⊗ D_l[i])^T = sum_s (a_k a_l^T) ⊗ (D_k^T D_l),

    one GEMM over the samples between the rows ``vec(a_k a_l^T)`` and ``vec(D_k^T D_l)``.
    Its cost does not grow with the q rows per sample (they are summed in ``D_k^T D_l``
    first), where syrk on J does q times the work; on a diagonal block both factors are
    symmetric, so only their pairs ``i <= j`` enter the GEMM, a quarter of its entries.
    Returns ``J^T W J`` (Fortran order; without ``stream.mirror`` its upper triangle, zeros
    below) and ``J^T W r``. Memory: O(P^2 + chunk * width), width the largest block's two
    factors (at most about ``(n_in + 1)^2 / 2 + n_out^2 / 2`` of a layer, or
    ``(n_in + 1) (n_in' + 1) + n_out n_out'`` of two).
    """
    N, dtype = X.shape[0], X.dtype
    P = param_offsets(layers)[-1][2]
    if N == 0:  # as syrk on no rows of J
        return np.zeros((P, P), dtype=dtype, order="F"), np.zeros(P, dtype=dtype)
    R = terms.R.reshape(N, -1)  # one output may come as (N,)
    # A diagonal block's sum is kept transposed, (pairs of D, pairs of a): its rows (pairs of
    # a, then) are contiguous for placing (see _place_blocks).
    sums = {(k, l): np.zeros((v, u) if k == l else (u, v), dtype=dtype, order="F")
            for k, l, u, v in _kronecker_blocks(layers)}
    width = max(c.shape[0] + c.shape[1] for c in sums.values())
    step = min(stream.chunk or default_chunk(N, width), N)
    # One scratch array for the two factors of every block and chunk, and the rows of a
    # product: fresh arrays would cost page faults on every chunk.
    widest = max(max(layer.n_in + 1, layer.n_out) for layer in layers)
    scratch = stream.scratch((step * (width + widest),), dtype)
    tmp = scratch[step * width :].reshape(-1, step)
    Jtr = np.zeros(P, dtype=dtype)
    for start in range(0, N, step):
        rows = slice(start, min(start + step, N))
        c = ((stream.cache if rows.stop - start == N else None)
             or forward_cache(layers, X[rows], blas_matmul))
        D, Jtr_chunk = _kronecker_rows(layers, c, terms, R, rows)
        Jtr += Jtr_chunk
        _add_block_products(sums, c, D, scratch, tmp)
    return _place_blocks(layers, sums, P, upper_only=not stream.mirror), Jtr


def _kronecker_rows(layers: list[Dense], cache: Cache, terms: _Terms, R: Array, rows: slice
                    ) -> tuple[list[Array], Array]:
    """The bias rows ``D_k`` (n, q, m_k) of one chunk, times ``sqrt(w)`` when weighted,
    and the chunk's share of ``J^T W r`` (or ``J^T r``), (P,)."""
    recursion = jac.bias_rows(layers, cache,
                              first=None if terms.first is None else terms.first(rows))
    D: list[Array] = [np.empty(0)] * len(layers)
    for k in range(len(layers) - 1, -1, -1):
        D[k] = next(recursion)
    if terms.first is not None:
        return D, jac.logit_vjp(layers, cache, R[rows])
    r, w = R[rows], None
    if terms.weights is not None:
        w = terms.weights[rows]
        w = (w if w.ndim == 2 else w[:, None]).astype(cache[0][0].dtype, copy=False)
        if terms.weight_residuals:
            r = r * w
    # J^T r = sum_s sum_i r_i (a_k ⊗ D_k[i]): per layer the rows sum_i r_i D_k[i]
    Jtr = jac.rows_to_params(layers, cache, [np.einsum("sim,si->sm", Dk, r) for Dk in D])
    if w is not None:  # J^T W J: the rows of every sample and output times sqrt(w)
        sw = np.sqrt(w)[:, :, None]  # once per chunk, not once per layer
        D = [Dk * sw for Dk in D]
    return D, Jtr


def _add_block_products(sums: dict[tuple[int, int], Array], cache: Cache, D: list[Array],
                        scratch: Array, tmp: Array) -> None:
    """Add one chunk's GEMM ``U V`` to each block's sum in ``sums`` (in place): ``U`` the
    rows ``vec(a_k a_l^T)`` and ``V`` the rows ``vec(D_k^T D_l)`` of the chunk's samples,
    both formed in ``scratch`` (``tmp``: scratch rows for :func:`_symmetric_rows`)."""
    n, dtype = D[0].shape[0], cache[0][0].dtype
    a = [c[0].shape[1] + 1 for c in cache]
    m = [Dk.shape[2] for Dk in D]
    gemm = blas.get_blas_funcs("gemm", dtype=dtype)
    # The factors with the samples along rows (each row contiguous over the chunk):
    # a_k^T (a_k, n) and D_k as (q, m_k, n).
    At = []
    for k, (X_in, _, _) in enumerate(cache):
        Ak = np.empty((a[k], n), dtype=dtype)
        Ak[:-1] = X_in.T
        Ak[-1] = 1
        At.append(Ak)
    Dt = [np.ascontiguousarray(Dk.transpose(1, 2, 0)) for Dk in D]
    for k, l in list(sums):
        S = sums[k, l]
        U = scratch[: S.shape[0] * n].reshape(S.shape[0], n)
        V = scratch[U.size : U.size + S.shape[1] * n]
        if k == l:  # both factors (., n), rows along the samples; U holds D's pairs
            _symmetric_rows(U, tmp, *Dt[k])
            V = _symmetric_rows(V.reshape(S.shape[1], n), tmp, At[k])
            trans_b = 0
        else:  # U (a_k a_l, n); V (n, m_k m_l) from one stacked product per sample
            np.multiply(At[k][:, None, :], At[l][None, :, :], out=U.reshape(a[k], a[l], n))
            V = np.matmul(D[k].transpose(0, 2, 1), D[l], out=V.reshape(n, m[k], m[l]))
            V = V.reshape(n, -1)
            trans_b = 1
        # U, V are C-contiguous: U.T is a Fortran (n, .) array, and so is V.T where V
        # is (., n) (trans_b = 0); a V of (n, .) gives a Fortran (., n) (trans_b = 1).
        sums[k, l] = gemm(1.0, U.T, V.T, beta=1.0, c=S, trans_a=1, trans_b=trans_b,
                          overwrite_c=1)


def _place_blocks(layers: list[Dense], sums: dict[tuple[int, int], Array], P: int,
                  upper_only: bool) -> Array:
    """``J^T W J`` (P, P), Fortran order, from the blocks' sums (each freed once placed):
    entry ``((i, j), (i', j'))`` of block (k, l), ``i`` an input of layer k and ``j`` a
    unit, is the sum's entry at the pair ``(i, i')`` of a and ``(j, j')`` of D."""
    offsets = param_offsets(layers)
    a = [layer.n_in + 1 for layer in layers]
    m = [layer.n_out for layer in layers]
    JtJ = (np.zeros if upper_only else np.empty)((P, P), dtype=next(iter(sums.values())).dtype,
                                                 order="F")
    for k, l in list(sums):
        S = sums.pop((k, l))  # each block's sum is freed once it is in place
        rk = slice(offsets[k][0], offsets[k][2])
        rl = slice(offsets[l][0], offsets[l][2])
        if k == l:  # entry ((i, j), (i', j')) is S[pair(j, j'), pair(i, i')]
            # S.T is C-ordered (pairs of a, pairs of D): the row of a pair (i, i') of a
            # becomes the symmetric (m, m) sub-block at (i, i') of the layer's block. The
            # block of Fortran-ordered JtJ, transposed, is C-ordered over (i', j', i, j),
            # j innermost and contiguous in both: one strided copy per column stripe i',
            # through a temporary of one stripe only.
            dest = np.reshape(JtJ[rk, rk].T, (a[k], m[k], a[k], m[k]), copy=False)
            where = _pair_positions(a[k]).reshape(a[k], a[k])
            for i in range(a[k]):  # column stripe i' = i: rows (i, j), pair (i, i')
                stripe = np.take(np.take(S.T, where[i], axis=0), _pair_positions(m[k]), axis=1)
                dest[i] = stripe.reshape(a[k], m[k], m[k]).transpose(1, 0, 2)
            if upper_only:
                for j in range(rk.start, rk.stop - 1):
                    JtJ[j + 1 : rk.stop, j] = 0  # a contiguous stretch of a column
        else:  # entry ((i, j), (i', j')) is S[(i, i'), (j, j')]
            block = S.reshape(a[k], a[l], m[k], m[l], order="C").transpose(0, 2, 1, 3)
            np.reshape(JtJ[rk, rl], (a[k], m[k], a[l], m[l]), copy=False)[...] = block
            if not upper_only:
                JtJ[rl, rk] = JtJ[rk, rl].T
    return JtJ


def _symmetric_rows(out: Array, tmp: Array, *factors: Array) -> Array:
    """Write ``sum_f f[i] * f[j]`` for the pairs ``i <= j`` (``np.triu_indices`` order) of
    the rows of each (r, n) factor ``f`` into ``out`` (r (r + 1) / 2, n): the distinct rows
    of ``sum_f f f^T`` taken sample by sample. ``tmp``: scratch of at least (r, n)."""
    r, n = factors[0].shape
    pos = 0
    for i in range(r):
        rows = out[pos : pos + r - i]
        np.multiply(factors[0][i], factors[0][i:], out=rows)
        for f in factors[1:]:
            rows += np.multiply(f[i], f[i:], out=tmp[: r - i, :n])
        pos += r - i
    return out


# ------------------------------------------------------- Levenberg-Marquardt's system
def _same_scale(a: float, b: float) -> float:
    if a != b:
        raise ValueError(f"systems of one model share its scale; got {a!r} and {b!r} (a mean "
                         "loss's scale depends on the whole data set's weight: set it first)")
    return a


class LinearSystem:
    """What every form of Levenberg-Marquardt's system gives the solver: the gradient's
    norm and the step for a damping ``mu`` (each form supplies ``Jtg``, ``scale`` and
    :meth:`step`: the primal form, the dual form and the dual form with a penalty)."""

    Jtg: Array
    scale: float

    def step(self, mu: float) -> Array:
        raise NotImplementedError

    @property
    def grad_norm(self) -> float:
        """``||scale * J^T g||``: the norm of the loss's gradient."""
        return self.scale * float(np.linalg.norm(self.Jtg))

    def solve(self, mu: float) -> Array | None:
        """The step ``d`` (P,), or None where the damped matrix is not positive definite
        (the caller raises mu)."""
        try:
            return self.step(mu)
        except linalg.LinAlgError:
            return None


@dataclass(frozen=True, eq=False)
class PrimalSystem(LinearSystem):
    """``(J^T H J + mu I) d = -J^T g``, Levenberg-Marquardt's system in parameter space.

    Attributes
    ----------
    JtHJ : ndarray of shape (P, P)
        Contiguous; only its upper triangle is read (here the strictly lower one is zero).
    Jtg : ndarray of shape (P,)
    scale : float
        The model's factor: the loss's gradient is ``scale * Jtg``.

    ``J^T H J`` and ``J^T g`` are sums over samples (``H``, ``g`` are not normalised), so
    the system of a data set is the sum (``+``) of its partitions' systems.
    """

    JtHJ: Array
    Jtg: Array
    scale: float

    def step(self, mu: float) -> Array:
        """``d = -(J^T H J + mu I)^-1 J^T g`` (P,) by Cholesky; LinAlgError when the
        matrix is not positive definite."""
        return cho_solve_shifted(self.JtHJ.copy(order="K"), mu, -self.Jtg)

    def __add__(self, other: Any) -> PrimalSystem:
        """The system of both operands' samples (new arrays: the operands stay as they are)."""
        if not isinstance(other, PrimalSystem):
            return NotImplemented
        return PrimalSystem(self.JtHJ + other.JtHJ, self.Jtg + other.Jtg,
                            _same_scale(self.scale, other.scale))


@dataclass(frozen=True, eq=False)
class DualSystem(LinearSystem):
    """The dual form of :class:`PrimalSystem` for fewer rows than parameters (``N q < P``):
    ``(A A^T + mu I) a = -r``, ``d = A^T a``, with ``A = H^(1/2) J`` and ``r = H^(-1/2) g``
    (so ``A^T A = J^T H J`` and ``A^T r = J^T g``): the same step from an (N q, N q) solve.
    ``A A^T`` is formed once (BLAS syrk) for every trial of ``mu``.

    Attributes
    ----------
    A : ndarray of shape (N q, P)
    r : ndarray of shape (N q,)
    Jtg : ndarray of shape (P,)
        ``A^T r``.
    scale : float
        As :class:`PrimalSystem`'s.
    """

    A: Array
    r: Array
    Jtg: Array
    scale: float

    @functools.cached_property
    def gram(self) -> Array:
        """``A A^T`` (N q, N q), upper triangle, Fortran order."""
        return _gram(self.A)

    def step(self, mu: float) -> Array:
        """``d = A^T a`` (P,) with ``(A A^T + mu I) a = -r`` by Cholesky; LinAlgError when
        the matrix is not positive definite."""
        return self.A.T @ cho_solve_shifted(self.gram.copy(order="F"), mu, -self.r)

    def primal(self) -> PrimalSystem:
        """The same system as a :class:`PrimalSystem`: ``A^T A`` (P, P) by syrk, upper
        triangle (for a caller that needs ``J^T H J`` itself, or sums partitions)."""
        syrk = blas.get_blas_funcs("syrk", dtype=self.A.dtype)
        return PrimalSystem(syrk(1.0, self.A.T, trans=0, lower=0), self.Jtg, self.scale)

    def penalized(self, c: float, mask: Array, theta: Array) -> PenalizedDualSystem:
        """This system with the penalty ``(c / 2) ||m theta||^2`` added (``c`` in the
        model's units, ``m`` the 0/1 ``mask`` of the penalised parameters), still solved
        in the residual space."""
        return PenalizedDualSystem(self.A, self.r, self.Jtg + c * mask * theta, self.scale,
                                   c, mask > 0)

    def __add__(self, other: Any) -> DualSystem:
        """The system of both operands' samples: their rows stacked."""
        if not isinstance(other, DualSystem):
            return NotImplemented
        return DualSystem(np.concatenate([self.A, other.A]), np.concatenate([self.r, other.r]),
                          self.Jtg + other.Jtg, _same_scale(self.scale, other.scale))


@dataclass(frozen=True, eq=False)
class PenalizedDualSystem(LinearSystem):
    """``(A^T A + c diag(m) + mu I) d = -Jtg`` solved in the residual space: LM's system
    with a penalty ``c`` on the parameters where ``m`` holds (the weights; the biases
    ``f`` free), for ``A`` (n, P) with fewer rows n than parameters P.

    With ``nu = mu + c``, ``M = A_w A_w^T + nu I`` (n, n) and the blocks of the weights
    ``w`` and the free parameters ``f``, block elimination and the Woodbury identity on
    the weights' block give (derivation in docs/derivation.md, D1-D3)

        Z = M^-1 A_f,   y = M^-1 A_w b_w                       (one Cholesky of M)
        (mu I + nu A_f^T Z) d_f = A_f^T y - b_f                (P_f square)
        d_w = -(b_w - A_w^T y) / nu - A_w^T Z d_f

    ``b = Jtg``. Cost per mu: n^3 / 3 + 2 n^2 P_f, against P^3 / 3 for the primal form;
    ``A_w A_w^T`` is formed once (syrk). Built by :meth:`DualSystem.penalized`.

    Attributes
    ----------
    A : ndarray of shape (n, P)
        ``H^(1/2) J``, the rows of positive weight.
    r : ndarray of shape (n,)
        ``H^(-1/2) g``.
    Jtg : ndarray of shape (P,)
        ``A^T r + c m theta``: the penalised gradient over ``scale``.
    scale : float
        The loss's gradient is ``scale * Jtg``.
    c : float
        The penalty's Hessian on the weights, in the model's units (> 0).
    weights : ndarray of bool, shape (P,)
        Where the penalty applies (``m``).
    """

    A: Array
    r: Array
    Jtg: Array
    scale: float
    c: float
    weights: Array

    @functools.cached_property
    def _blocks(self) -> tuple[Array, Array, Array]:
        """``A_w`` (n, P_w), ``A_f`` (n, P_f) and ``A_w A_w^T`` (upper triangle)."""
        Aw = np.ascontiguousarray(self.A[:, self.weights])
        return Aw, self.A[:, ~self.weights], _gram(Aw)

    def step(self, mu: float) -> Array:
        """The step ``d`` (P,); LinAlgError where a factor is not positive definite."""
        Aw, Af, K = self._blocks
        bw, bf = self.Jtg[self.weights], self.Jtg[~self.weights]
        nu = mu + self.c
        Y = cho_solve_shifted(K.copy(order="F"), nu, np.column_stack([Af, Aw @ bw]))
        Z, y = Y[:, :-1], Y[:, -1]
        d = np.empty_like(self.Jtg)
        df = np.zeros(0, dtype=d.dtype)
        if Af.shape[1]:
            S = nu * (Af.T @ Z)  # the Schur complement, less mu I (symmetric, contiguous)
            df = cho_solve_shifted(S, mu, Af.T @ y - bf)
        d[~self.weights] = df
        d[self.weights] = -(bw - Aw.T @ y) / nu - Aw.T @ (Z @ df)
        return d


def _gram(A: Array) -> Array:
    """``A A^T`` (n, n) of an (n, P) ``A`` by BLAS syrk, upper triangle only, Fortran
    order (the Cholesky factor reads that triangle)."""
    syrk = blas.get_blas_funcs("syrk", dtype=A.dtype)
    return syrk(1.0, A.T, trans=1, lower=0)


def gauss_newton_system(
    layers: list[Dense], X: Array, T: Array, loss: Loss, w: Array | None, Y: Array, *,
    chunk: int | None = None, cache: Cache | None = None, workspace: Workspace | None = None,
    penalized: bool = False,
) -> PrimalSystem | DualSystem:
    """The loss's Gauss-Newton system on ``(X, T, w)`` at ``Y = net(X)``, no penalty: the
    dual form where it is the faster (:func:`dual_pays`) and loses nothing (``H > 0``),
    else the primal.

    Parameters
    ----------
    layers : list of Dense
        The network's layers at the current theta.
    X : ndarray of shape (N, n_in)
    T : ndarray of shape (N, q)
    loss : Loss
    w : ndarray of shape (N,) or None
        Sample weights.
    Y : ndarray of shape (N, q)
        The network's outputs on ``X``.
    chunk : int, optional
        Samples per chunk of the streamed sums.
    cache : list, optional
        The forward cache of ``X`` at this theta when there is one, so the Jacobian does
        not run the forward pass again.
    workspace : Workspace, optional
        Where the sums keep their chunk buffers between calls.
    penalized : bool, default False
        Whether the caller adds an L2 penalty (:meth:`DualSystem.penalized`), whose
        dual form pays on fewer rows.

    Returns
    -------
    PrimalSystem or DualSystem
        A primal system's ``J^T H J`` holds its upper triangle only.
    """
    return _system(layers, X, T, loss, w, Y, _Stream(chunk, cache, workspace, False), True,
                   penalized)


def primal_system(
    layers: list[Dense], X: Array, T: Array, loss: Loss, w: Array | None, Y: Array, *,
    chunk: int | None = None, cache: Cache | None = None, workspace: Workspace | None = None,
) -> PrimalSystem:
    """:func:`gauss_newton_system` always in the primal form (to add a penalty's diagonal,
    or to sum partitions' systems)."""
    system = _system(layers, X, T, loss, w, Y, _Stream(chunk, cache, workspace, False), False,
                     False)
    assert isinstance(system, PrimalSystem)
    return system


#: The share of P below which the residual-space form with a penalty is the faster: its
#: step carries the Schur complement of the free biases besides the n x n factor. Measured
#: per LM epoch, one thread (docs/architecture.md, "The residual-space systems").
PENALIZED_DUAL_SHARE = 0.8


def dual_pays(n_rows: int, P: int, penalized: bool) -> bool:
    """Whether LM's system of ``n_rows`` residuals (those of positive weight) and ``P``
    parameters is faster in the residual space (n x n) than as ``P x P``: below ``P``
    rows, or ``0.8 P`` with a penalty (:data:`PENALIZED_DUAL_SHARE`)."""
    return n_rows < (PENALIZED_DUAL_SHARE if penalized else 1.0) * P


def _system(layers: list[Dense], X: Array, T: Array, loss: Loss, w: Array | None, Y: Array,
            stream: _Stream, dual: bool, penalized: bool) -> PrimalSystem | DualSystem:
    P = sum(layer.n_params for layer in layers)
    model = loss.logit_model(layers[-1].activation, Y, T, w)
    if model is not None:  # a fused output pair: from the Jacobian of the logits
        (N, q) = model.g.shape
        if dual and dual_pays(N * q, P, penalized) and model.dual_r is not None:
            J = jac.param_jacobian(layers, X, stream.chunk, stream.cache, first=model.rows)
            A, r = J.reshape(N * q, P), model.dual_r.reshape(N * q)
            return DualSystem(A, r, A.T @ r, model.scale)
        terms = _Terms(model.g, None, weight_residuals=False, first=model.rows)
        return PrimalSystem(*_sums(layers, X, terms, stream), model.scale)
    H, g, scale = loss.gauss_newton_terms(Y, T, w)
    nq = Y.size
    if dual and dual_pays(nq, P, penalized) and bool(np.all(H > 0)):
        h = np.sqrt(H).reshape(nq, 1)
        A = jac.param_jacobian(layers, X, stream.chunk, stream.cache).reshape(nq, P) * h
        r = g.reshape(nq) / h[:, 0]
        return DualSystem(A, r, A.T @ r, scale)
    weights = None if loss.sum_of_squares and w is None else H
    return PrimalSystem(*_sums(layers, X, _Terms(g, weights, weight_residuals=False), stream),
                        scale)


def cho_solve_shifted(M: Array, mu: float, rhs: Array) -> Array:
    """Solve ``(M + mu I) x = rhs`` by Cholesky from ``M``'s upper triangle, overwriting ``M``.

    ``M`` is square and contiguous (C or Fortran order); only its upper triangle is read, so
    a Gauss-Newton matrix that was never mirrored will do. ``M`` and ``rhs`` are finite by
    construction (the loss at theta was finite), so the factor and solve go to LAPACK's
    potrf/potrs directly: scipy's ``cho_factor`` and ``cho_solve`` would check finiteness
    and convert their arguments again, a large share of a small solve. Raises
    ``LinAlgError`` when ``M + mu I`` is not positive definite.
    """
    n = M.shape[0]
    if not (M.flags.c_contiguous or M.flags.f_contiguous):
        raise ValueError("M must be C- or Fortran-contiguous")
    M.ravel(order="K")[:: n + 1] += mu  # the diagonal, in either order (a view: contiguous)
    # LAPACK reads Fortran order. A C-ordered M is the Fortran array M.T, whose lower
    # triangle is M's upper one.
    F, lower = (M, 0) if M.flags.f_contiguous else (M.T, 1)
    potrf, potrs = linalg.get_lapack_funcs(("potrf", "potrs"), (F,))
    factor, info = potrf(F, lower=lower, clean=0, overwrite_a=1)
    if info != 0:
        raise linalg.LinAlgError(f"potrf: leading minor {info} is not positive definite")
    x, info = potrs(factor, rhs, lower=lower)
    if info != 0:  # pragma: no cover - potrs fails only on invalid arguments
        raise ValueError(f"potrs: argument {-info} is invalid")
    return x
