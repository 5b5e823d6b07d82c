"""Per-output Jacobians of the network: the seed's formulas 1-6 and recursion R-b, R-w.

For output ``i`` of sample ``s`` the bias row ``D_k[s, i] = dy_{n,i}/db_k`` starts at
the last layer as the row ``f'_{n,i}`` (seed 1) and is carried down by

    R-b   dy_{n,i}/db_{k-1} = dy_{n,i}/db_k . W_k^T . f'_{k-1}
    R-w   dy_{n,i}/dW_k     = y_{k-1}^T . dy_{n,i}/db_k          (an outer product)

All outputs and all samples of a chunk are carried at once as an ``(n, q, m)`` array,
so no Python loop runs over samples or outputs; each ``. f'`` is an activation's vjp.
Carrying R-b one step past the first layer gives the input Jacobian ``dy/dx``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.linalg import blas
from threadpoolctl import ThreadpoolController

from .layers import Dense, blas_matmul, checked_vjp, forward_cache

Array = np.ndarray

__all__ = [
    "param_offsets", "param_jacobian", "input_jacobian", "gauss_newton", "default_chunk",
    "Workspace",
]

# Elements of one chunk of J (n * q * P): 4 Mi elements, 32 MiB in float64.
_CHUNK_ELEMENTS = 1 << 22
# Below this many elements of J a call runs on the calling thread alone.
_PARALLEL_ELEMENTS = 1 << 21

_controller: ThreadpoolController | None = None
_THREADED_FILL = threading.Lock()


def _blas_threads() -> int:
    """The BLAS thread count now in force (``threadpoolctl`` limits and environment included).

    The Jacobian fill is numpy work outside BLAS; it uses as many threads as BLAS may, so
    one setting (``threadpool_limits``, ``OPENBLAS_NUM_THREADS``) governs the whole call.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    counts = [lib.num_threads for lib in _controller.lib_controllers if lib.user_api == "blas"]
    return max(1, min(counts)) if counts else 1


class Workspace:
    """Scratch memory that one caller reuses across calls (Gauss-Newton's chunk of J).

    An iterative solver builds a Gauss-Newton system every iteration; a fresh chunk buffer
    each time can cost page faults and zeroing by the kernel: 44% of ``gauss_newton`` for
    a 1000-row chunk at P = 61 in a fresh process (800 against 450 us), about 5% of an LM
    iteration once the allocator's heap is warm. The buffer grows to the largest request
    and is held until the workspace is dropped. Not for use by two threads at once.
    """

    def __init__(self) -> None:
        self._buf: Array | None = None

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` in held memory."""
        size = math.prod(shape)
        if self._buf is None or self._buf.dtype != dtype or self._buf.size < size:
            self._buf = np.empty(size, dtype=dtype)
        return self._buf[:size].reshape(shape)


def param_offsets(layers: list[Dense]) -> list[tuple[int, int, int]]:
    """``(start of W_k, start of b_k, end)`` in theta = [W_1.ravel(), b_1, W_2.ravel(), ...]."""
    out = []
    pos = 0
    for layer in layers:
        w0 = pos
        b0 = w0 + layer.n_in * layer.n_out
        pos = b0 + layer.n_out
        out.append((w0, b0, pos))
    return out


def default_chunk(n_rows: int, width: int) -> int:
    """Samples per chunk so that one chunk of ``width`` columns per sample stays bounded."""
    return max(1, min(n_rows, _CHUNK_ELEMENTS // max(1, width)))


def _bias_rows(
    layers: list[Dense], cache: list[tuple[Array, Array, Array]], E: Array | None = None,
    first: Array | None = None,
) -> Iterator[Array]:
    """Yield ``D_k`` (n, q, m_k) = dy_n/db_k for k = n, n-1, ..., 1, then dy_n/dx.

    ``E``: the identity rows of :func:`_identity_rows` when the caller holds them (a yielded
    ``D`` that *is* ``E`` marks an identity output). ``first`` (n, q', m_n): rows to start
    from instead of the output activation's f'_n: the recursion then gives ``first``
    times the Jacobian of the last layer's pre-activation."""
    _, T, Y = cache[-1]
    n, q = Y.shape
    if first is not None:
        D, q = first, first.shape[1]
    else:
        E = _identity_rows(n, q, Y.dtype) if E is None else E
        D = checked_vjp(layers[-1].activation, T, Y, E)  # seed 1: the rows f'_{n,i}
    for k in range(len(layers) - 1, -1, -1):
        yield D
        if D is E:  # an identity output passes E through, and E W^T is W^T on every sample
            G = np.empty((n, q, layers[k].n_in), dtype=Y.dtype)
            G[...] = layers[k].W.T
        else:
            # One (n q, m) x (m, m') product: numpy runs a stacked (n, q, m) @ W^T as n
            # small products, 2.6 times slower for a 1000-row chunk of a 1-20-1 network.
            G = np.reshape(blas_matmul(np.reshape(D, (n * q, -1)), layers[k].W.T), (n, q, -1))
        if k == 0:
            yield G  # dy/dx: the recursion carried one step further
        else:
            _, T, Y = cache[k - 1]
            D = checked_vjp(layers[k - 1].activation, T, Y, G)  # seed R-b


Cache = list[tuple[Array, Array, Array]]


@functools.lru_cache(maxsize=4)
def _identity_rows(n: int, q: int, dtype: np.dtype) -> Array:
    """The read-only (n, q, q) stack of identities whose vjp gives the rows of f'_n: one
    q x q identity broadcast over the samples (held per shape: ``np.eye`` and
    ``np.broadcast_to`` afresh took 4-7 us, 2% of a Gauss-Newton system at P = 61)."""
    return np.broadcast_to(np.eye(q, dtype=dtype), (n, q, q))


def _fill_jacobian(layers: list[Dense], X: Array, J: Array, cache: Cache | None = None,
                   first: Array | None = None) -> None:
    """Write dy/dtheta of the chunk ``X`` (n, n_in) into ``J`` (n, q, P); ``cache`` is the
    forward cache of ``X`` when the caller has it already. With ``first`` (n, q, q_n) the
    rows written are ``first`` times the Jacobian of the logits (see :func:`_bias_rows`)."""
    cache = forward_cache(layers, X, blas_matmul) if cache is None else cache
    n, q = J.shape[:2]
    offsets = param_offsets(layers)
    E = _identity_rows(n, q, J.dtype) if first is None else None
    rows = _bias_rows(layers, cache, E, first)  # the same E, so `D is E` below is certain
    for k in range(len(layers) - 1, -1, -1):
        D = next(rows)
        w0, b0, end = offsets[k]
        Xin = cache[k][0]
        Jw = np.reshape(J[:, :, w0:b0], (n, q, layers[k].n_in, layers[k].n_out), copy=False)
        if D is E:  # an identity output: dy_i/dW[a, j] is x_a where j = i, else 0
            if q > 1:
                Jw[...] = 0
            for i in range(q):
                Jw[:, i, :, i] = Xin
        else:
            # seed R-w: one outer product per sample, output by output (q is small).
            # einsum's kernel writes these up to 1.4 times faster than np.multiply.
            for i in range(q):
                np.einsum("sa,sb->sab", Xin, D[:, i], out=Jw[:, i])
        J[:, :, b0:end] = D


def param_jacobian(
    layers: list[Dense], X: Array, chunk: int | None = None, cache: Cache | None = None,
    out: Array | None = None, first: Callable[[slice], Array] | None = None,
) -> Array:
    """``J[s, i, p] = dy_{s,i} / dtheta_p``, shape (N, n_out, P), chunk by chunk.

    ``cache``: the forward cache of all of ``X``, used when one chunk covers X. ``out``:
    a C-contiguous array of that shape and X's dtype to write J into (checked by the
    caller). ``first(samples)``: rows to start the recursion from instead of the output
    activation's f' (see :func:`gauss_newton`)."""
    N = X.shape[0]
    q = layers[-1].n_out
    P = sum(layer.n_params for layer in layers)
    J = np.empty((N, q, P), dtype=X.dtype) if out is None else out
    step = chunk or default_chunk(N, q * P)

    def fill(start: int, chunk_cache: Cache | None = None) -> None:
        rows = slice(start, start + step)
        _fill_jacobian(layers, X[rows], J[rows], chunk_cache,
                       None if first is None else first(rows))

    if cache is not None and step >= N:
        fill(0, cache)
        return J
    starts = range(0, N, step)
    threads = min(_blas_threads(), len(starts)) if J.size >= _PARALLEL_ELEMENTS else 1
    # One threaded fill at a time per process: two would each save and restore the BLAS
    # thread count around the other's change and could leave it at one thread.
    if threads == 1 or not _THREADED_FILL.acquire(blocking=False):
        for start in starts:
            fill(start)
        return J
    try:
        _fill_threaded(fill, starts, threads)
    finally:
        _THREADED_FILL.release()
    return J


def _fill_threaded(fill: Callable[[int], None], starts: range, threads: int) -> None:
    """:func:`param_jacobian`'s chunks ``fill(start)`` on ``threads`` threads."""
    # As many fillers as BLAS may use threads, on the same chunks as one thread would
    # fill, each into its own rows of J: the result is bit-identical. numpy releases the
    # GIL in these loops. Meanwhile BLAS is held to one thread per filler (process-wide,
    # for the duration of this call), so fillers and BLAS threads do not contend.
    assert _controller is not None
    with _controller.limit(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fill, starts):  # re-raises a filler's exception
            pass


def input_jacobian(layers: list[Dense], X: Array, chunk: int | None = None) -> Array:
    """``dy_{s,i} / dx_{s,j}``, shape (N, n_out, n_in)."""
    N = X.shape[0]
    q = layers[-1].n_out
    out = np.empty((N, q, layers[0].n_in), dtype=X.dtype)
    widest = max(layer.n_out for layer in layers) + layers[0].n_in
    step = chunk or default_chunk(N, q * widest)
    for start in range(0, N, step):
        Xc = X[start : start + step]
        rows = _bias_rows(layers, forward_cache(layers, Xc, blas_matmul))
        for _ in layers:
            next(rows)
        out[start : start + step] = next(rows)
    return out


def gauss_newton(
    layers: list[Dense],
    X: Array,
    R: Array,
    weights: Array | None = None,
    chunk: int | None = None,
    weight_residuals: bool = True,
    cache: Cache | None = None,
    workspace: Workspace | None = None,
    mirror: bool = True,
    first: Callable[[slice], Array] | None = None,
) -> tuple[Array, Array]:
    """Streaming ``J^T W J`` (P, P) and ``J^T W r`` (P,) over chunks of samples.

    ``J`` is the (N * n_out, P) Jacobian of the outputs, ``r = R.ravel()`` and ``W`` the
    diagonal of weights: per sample ``(N,)`` (repeated over outputs) or per output
    ``(N, n_out)``. Only one chunk of J exists at a time; ``J^T J`` is accumulated by BLAS syrk
    into the upper triangle and mirrored at the end. Memory: O(P^2 + chunk * n_out * P).
    Where a cost model expects it to be faster (several rows per sample, layers not too
    narrow; ``_kronecker_pays``) the same system comes from the Kronecker structure of J
    instead, which never forms J and does not do q times the work for q rows
    (:func:`_kronecker_system`); memory then at most 1.5 P^2 entries. A Kronecker system
    that is not finite (its products of two inputs overflow where J's rows do not) is built
    again by syrk. With ``weight_residuals=False`` the second result is ``J^T r`` (the
    weights enter ``J^T W J`` only). ``cache`` is the forward cache of all of ``X``, used
    when one chunk covers X. ``workspace`` holds the chunk buffer (or the Kronecker form's
    factors) between calls. ``mirror=False`` skips the mirror: ``J^T W J`` (Fortran order)
    then holds its upper triangle only, the strictly lower one zero, for a caller that reads
    one triangle (Levenberg-Marquardt's Cholesky solve; the mirror takes 8-14 us at P = 61,
    2% of an LM iteration). ``first(samples)`` (instead of ``weights``): per sample, the
    rows ``A_s`` (n, q, q) of a generalised Gauss-Newton model at the logits z (see
    ``losses.LogitModel``); the system is then ``sum (A_s J_z,s)^T (A_s J_z,s)`` and
    ``J_z^T r``, J_z the Jacobian of the logits (``r``: the model's gradient in z).
    """
    N = X.shape[0]
    q = layers[-1].n_out
    P = sum(layer.n_params for layer in layers)
    dtype = X.dtype
    if _kronecker_pays(layers, q, N, chunk):  # a logit model's rows A_s are (q, q) too
        # Its factors multiply two inputs (x x') where J's rows multiply an input by a bias
        # row (x d): an input so large that it saturates its unit (x = 3e19 in float32,
        # d = 0) overflows to inf * 0 = NaN there and not in J. A system that is not finite
        # is built again by syrk on J, whose result stands (NaN where J has NaN).
        with np.errstate(over="ignore", invalid="ignore"):
            system = _kronecker_system(layers, X, R, weights, chunk, weight_residuals, cache,
                                       first, workspace, upper_only=not mirror)
        if math.isfinite(system[0].sum()):  # one pass, no temporary; NaN and inf propagate
            return system
        del system
    step = chunk or default_chunk(N, q * P)
    # Every product here goes through scipy's BLAS: numpy links its own OpenBLAS, whose
    # threads spin for a while after a large product and, on two cores, slowed the next
    # syrk by 1.7 times.
    syrk, gemv = blas.get_blas_funcs(("syrk", "gemv"), dtype=dtype)
    JtJ = np.zeros((P, P), dtype=dtype, order="F")
    Jtr = np.zeros(P, dtype=dtype)
    shape = (min(step, N), q, P)
    buf = np.empty(shape, dtype=dtype) if workspace is None else workspace.array(shape, dtype)
    for start in range(0, N, step):
        Xc = X[start : start + step]
        n = Xc.shape[0]
        Jc = buf[:n]
        A = Jc.reshape(n * q, P)  # a view: what the fill writes into Jc
        # A.T is (P, n q) and Fortran-contiguous: gemv and syrk take it with no copy.
        if first is not None:  # a logit model: A_s J_z filled directly, J_z^T r by backprop
            c = (cache if n == N else None) or forward_cache(layers, Xc, blas_matmul)
            _fill_jacobian(layers, Xc, Jc, c, first(slice(start, start + n)))
            Jtr += _logit_vjp(layers, c, R[start : start + n])
        else:
            _fill_jacobian(layers, Xc, Jc, cache if n == N else None)
            r = R[start : start + n].reshape(n * q)
            if weights is not None:
                if not weight_residuals:
                    Jtr = gemv(1.0, A.T, r, beta=1.0, y=Jtr, overwrite_y=1)
                wc = np.sqrt(weights[start : start + n])
                sw = (wc.reshape(n * q) if wc.ndim == 2 else np.repeat(wc, q)).astype(
                    dtype, copy=False)
                A *= sw[:, None]
                if weight_residuals:
                    Jtr = gemv(1.0, A.T, r * sw, beta=1.0, y=Jtr, overwrite_y=1)
            else:
                Jtr = gemv(1.0, A.T, r, beta=1.0, y=Jtr, overwrite_y=1)
        JtJ = syrk(1.0, A.T, beta=1.0, c=JtJ, trans=0, lower=0, overwrite_c=1)
    return (_mirror_upper(JtJ) if mirror else JtJ), Jtr


# The cost model that picks the form of a Gauss-Newton system, per sample and in flops of
# syrk on J (q P^2): the Kronecker form's GEMM flops, plus _KRONECKER_FORMING flops'
# worth per element of its factors formed (a memory pass each, q for a diagonal block's
# rows of D), plus _KRONECKER_PLACING per entry of J^T J put in place once per call (P^2 / N
# per sample). It takes the Kronecker form where that totals at most _KRONECKER_SHARE of
# syrk's. Fitted on 29 networks (two threads, float64, 2026-11-30): it picks the faster
# form for 27 and never the slower one; the two others it leaves to syrk where the
# Kronecker form was a little faster (4-30-3: 0.88 of syrk's time; 10-40-2: 0.98).
# Measured, Kronecker against syrk: 64-16-10 N = 1257,
# 42 against 268 ms; 13-32-32-3 N = 5000, 270 against 447 ms; 8-64-64-2 N = 2000, 585
# against 940 ms. Left to syrk: one output (8-64-64-1, N = 10,000: 2.7 against 2.3 s), a
# wide layer fed by few inputs (4-100-3: 162 against 79 ms; its rows of D cost m^2 / 2 per
# sample where J's cost a m), and small P (4-10-3: 0.43 against 0.21 ms).
_KRONECKER_FORMING = 25
_KRONECKER_PLACING = 100
_KRONECKER_SHARE = 0.45
# Its Python loops run once per block and row per chunk: with chunks of a few samples they
# cost more than the work saved (13-32-32-3, N = 1000, chunk 3: 0.52 against 0.33 s), so a
# chunk given below this many samples keeps syrk.
_KRONECKER_MIN_CHUNK = 64


def _kronecker_pays(layers: list[Dense], rows: int, n: int, chunk: int | None = None) -> bool:
    """Whether :func:`_kronecker_system` is expected to build the system of ``n`` samples
    with ``rows`` rows each, in chunks of ``chunk`` samples, faster than syrk on chunks of J
    (the cost model above)."""
    if chunk is not None and chunk < min(n, _KRONECKER_MIN_CHUNK):
        return False
    P = sum(layer.n_params for layer in layers)
    gemm = formed = 0
    for k, l, u, v in _kronecker_blocks(layers):
        gemm += 2 * u * v
        formed += u + (rows * v if k == l else v)  # a diagonal block sums q rows of D
    kronecker = gemm + _KRONECKER_FORMING * formed + _KRONECKER_PLACING * P * P / max(n, 1)
    return kronecker <= _KRONECKER_SHARE * rows * P * P


def _kronecker_blocks(layers: list[Dense]) -> list[tuple[int, int, int, int]]:
    """``(k, l, u, v)`` for each block ``k <= l`` of :func:`_kronecker_system`: the widths
    of its two factors per sample, ``a_k a_l`` and ``m_k m_l`` (``a = n_in + 1``,
    ``m = n_out``), or the pairs ``i <= j`` of each on a diagonal block."""
    a = [layer.n_in + 1 for layer in layers]
    m = [layer.n_out for layer in layers]
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


def _kronecker_system(
    layers: list[Dense], X: Array, R: Array, weights: Array | None, chunk: int | None,
    weight_residuals: bool, cache: Cache | None, first: Callable[[slice], Array] | None,
    workspace: Workspace | None = None, upper_only: bool = False,
) -> tuple[Array, Array]:
    """:func:`gauss_newton`'s system from the Kronecker structure of J, never J itself.

    With ``a_k = [y_{k-1}, 1]`` (a layer's input and a 1 for its bias, (n_k + 1,)) and
    ``D_k`` the (q, m_k) bias rows of a sample (seed R-b), the rows of J for layer k are
    ``a_k ⊗ D_k[i]`` (seed R-w, the bias as the last input), so the (k, l) block is

        sum_s sum_i (a_k ⊗ D_k[i]) (a_l ⊗ D_l[i])^T = sum_s (a_k a_l^T) ⊗ (D_k^T D_l),

    one GEMM over the samples between the rows ``vec(a_k a_l^T)`` and ``vec(D_k^T D_l)``.
    Its cost does not grow with the q rows per sample (they are summed in ``D_k^T D_l``
    first), where syrk on J does q times the work; on a diagonal block both factors are
    symmetric, so only their pairs ``i <= j`` enter the GEMM, a quarter of its entries.
    Returns ``J^T W J`` (Fortran order; with ``upper_only`` its upper triangle, zeros
    below, as :func:`gauss_newton` with ``mirror=False``) and ``J^T W r``. Memory:
    O(P^2 + chunk * width), width the largest block's two factors (at most about
    ``(n_in + 1)^2 / 2 + n_out^2 / 2`` of a layer, or ``(n_in + 1) (n_in' + 1) + n_out n_out'``
    of two).
    """
    N, L, dtype = X.shape[0], len(layers), X.dtype
    offsets = param_offsets(layers)
    P = offsets[-1][2]
    if N == 0:  # as syrk on no rows of J
        return np.zeros((P, P), dtype=dtype, order="F"), np.zeros(P, dtype=dtype)
    R = R.reshape(N, -1)  # one output may come as (N,)
    a = [layer.n_in + 1 for layer in layers]
    m = [layer.n_out for layer in layers]
    gemm = blas.get_blas_funcs("gemm", dtype=dtype)
    # A diagonal block's sum is kept transposed, (pairs of D, pairs of a): its rows (pairs of
    # a, then) are contiguous for placing (see below).
    sums = {(k, l): np.zeros((v, u) if k == l else (u, v), dtype=dtype, order="F")
            for k, l, u, v in _kronecker_blocks(layers)}
    blocks = list(sums)
    width = max(c.shape[0] + c.shape[1] for c in sums.values())
    step = min(chunk or default_chunk(N, width), N)
    # One scratch array for the two factors of every block and chunk, and the rows of a
    # product (fresh arrays cost page faults on every chunk, a third of the time here).
    size = step * (width + max(a + m))
    scratch = (np.empty(size, dtype=dtype) if workspace is None
               else workspace.array((size,), np.dtype(dtype)))
    tmp = scratch[step * width :].reshape(-1, step)
    Jtr = np.zeros(P, dtype=dtype)
    for start in range(0, N, step):
        rows = slice(start, min(start + step, N))
        n = rows.stop - start
        c = (cache if n == N else None) or forward_cache(layers, X[rows], blas_matmul)
        recursion = _bias_rows(layers, c, first=None if first is None else first(rows))
        D: list[Array] = [np.empty(0)] * L
        for k in range(L - 1, -1, -1):
            D[k] = next(recursion)
        if first is not None:
            Jtr += _logit_vjp(layers, c, R[rows])
        else:
            r, w = R[rows], None
            if weights is not None:
                w = weights[rows]
                w = (w if w.ndim == 2 else w[:, None]).astype(dtype, copy=False)
                if weight_residuals:
                    r = r * w
            # J^T r = sum_s sum_i r_i (a_k ⊗ D_k[i]): per layer the rows sum_i r_i D_k[i]
            Jtr += _rows_to_params(layers, c, [np.einsum("sim,si->sm", Dk, r) for Dk in D])
            if w is not None:  # J^T W J: the rows of every sample and output times sqrt(w)
                sw = np.sqrt(w)[:, :, None]  # once per chunk, not once per layer
                D = [Dk * sw for Dk in D]
        # The factors with the samples along rows (each row contiguous over the chunk):
        # a_k^T (a_k, n) and D_k as (q, m_k, n).
        At = []
        for k in range(L):
            Ak = np.empty((a[k], n), dtype=dtype)
            Ak[:-1] = c[k][0].T
            Ak[-1] = 1
            At.append(Ak)
        Dt = [np.ascontiguousarray(Dk.transpose(1, 2, 0)) for Dk in D]
        for k, l in blocks:
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
    JtJ = (np.zeros if upper_only else np.empty)((P, P), dtype=dtype, order="F")
    for k, l in blocks:
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
    return JtJ, Jtr


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


def _logit_vjp(layers: list[Dense], cache: Cache, G: Array) -> Array:
    """``sum_s G_s . dz_s/dtheta`` (P,): the rows ``G`` (n, q) at the last layer's
    pre-activation z carried back through the network (backprop, on this chunk's cache)."""
    rows = _bias_rows(layers, cache, first=G[:, None, :])
    D = [next(rows)[:, 0, :] for _ in layers][::-1]  # the recursion yields the last first
    return _rows_to_params(layers, cache, D)


def _rows_to_params(layers: list[Dense], cache: Cache, D: list[Array]) -> Array:
    """``sum_s`` of each layer's bias-row ``D[k]`` (n, m_k) and its outer product with the
    layer's input (seed R-w), laid out as theta (P,)."""
    out = np.empty(sum(layer.n_params for layer in layers), dtype=D[0].dtype)
    for (w0, b0, end), (X_in, _, _), Dk in zip(param_offsets(layers), cache, D, strict=True):
        out[w0:b0] = blas_matmul(X_in.T, Dk).ravel()  # seed R-w for the rows D_k
        out[b0:end] = Dk.sum(axis=0)
    return out


def _mirror_upper(C: Array, block: int = 128) -> Array:
    """Copy the upper triangle of the square, contiguous ``C`` onto its strictly lower one,
    in place.

    ``C``'s strictly lower triangle must be zero (syrk with ``lower=0`` into zeros leaves
    it so). Block by block, so each transposed copy stays in cache: for P = 4801 this
    takes 0.08 s where ``triu(C) + triu(C, 1).T`` took 1.8 s, a third of the syrk work.
    A diagonal block adds its own transpose (zeros below the diagonal make that the
    mirror) and halves its diagonal, which doubled: both exact in floating point.
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
