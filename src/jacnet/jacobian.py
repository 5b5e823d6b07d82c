"""Per-output Jacobians of the network: the seed's formulas 1-6 and recursion R-b, R-w.

For output ``i`` of sample ``s`` the bias row ``D_k[s, i] = dy_{n,i}/db_k`` starts at
the last layer as the row ``f'_{n,i}`` (seed 1) and is carried down by

    R-b   dy_{n,i}/db_{k-1} = dy_{n,i}/db_k . W_k^T . f'_{k-1}
    R-w   dy_{n,i}/dW_k     = y_{k-1}^T . dy_{n,i}/db_k          (an outer product)

All outputs and all samples of a chunk are carried at once as an ``(n, q, m)`` array,
so no Python loop runs over samples or outputs; each ``. f'`` is an activation's vjp.
Carrying R-b one step past the first layer gives the input Jacobian ``dy/dx``. Each
element of J is written once, straight into J: a layer's block by one broadcast multiply,
or, with compiled kernels on (:mod:`jacnet.accel`), row after row of J with the same bits.

The products built on the recursion live here too: :func:`param_jacobian` (all of J, chunk
by chunk), :func:`input_jacobian`, and :func:`logit_vjp` (``u^T J`` for rows ``u`` at the
logits). The streaming Gauss-Newton sums that consume the bias rows are in
:mod:`jacnet.gauss_newton`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from . import accel
from .layers import Dense, blas_matmul, checked_vjp, forward_cache

Array = np.ndarray

__all__ = [
    "param_offsets", "param_jacobian", "input_jacobian", "default_chunk", "bias_rows",
    "fill_jacobian", "logit_vjp", "rows_to_params", "Cache",
]

#: The forward cache of a chunk: per layer ``(input, pre-activation T, output Y)``.
Cache = list[tuple[Array, Array, Array]]

# Elements of one chunk of J (n * q * P): 4 Mi elements, 32 MiB in float64.
_CHUNK_ELEMENTS = 1 << 22
# param_jacobian fills J itself chunk by chunk, about this many elements of J at a time, so
# that the chunks of two fillers and their bias rows stay in the shared cache while written;
# but at least _FILL_ROWS samples, since each chunk costs a forward pass and Python calls.
_FILL_ELEMENTS = 1 << 20
_FILL_ROWS = 16
# Below this many elements of J a call runs on the calling thread alone.
_PARALLEL_ELEMENTS = 1 << 21
# Below this many elements of a chunk the fill stays in numpy even with compiled kernels on:
# the kernel would save microseconds, and its first call in a process loads numba (its
# import and the cached machine code), which costs far more.
_COMPILED_ELEMENTS = 1 << 16

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


def bias_rows(
    layers: list[Dense], cache: Cache, E: Array | None = None, first: Array | None = None,
) -> Iterator[Array]:
    """Yield ``D_k`` (n, q, m_k) = dy_n/db_k for k = n, n-1, ..., 1, then dy_n/dx (n, q, n_in):
    seed 1 (the rows f'_n), then R-b layer by layer.

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
            # One (n q, m) x (m, m') product: numpy would run a stacked (n, q, m) @ W^T
            # as n small products, each paying a call's overhead.
            G = np.reshape(blas_matmul(np.reshape(D, (n * q, -1)), layers[k].W.T), (n, q, -1))
        if k == 0:
            yield G  # dy/dx: the recursion carried one step further
        else:
            _, T, Y = cache[k - 1]
            D = checked_vjp(layers[k - 1].activation, T, Y, G)  # seed R-b


@functools.lru_cache(maxsize=4)
def _identity_rows(n: int, q: int, dtype: np.dtype) -> Array:
    """The read-only (n, q, q) stack of identities whose vjp gives the rows of f'_n: one
    q x q identity broadcast over the samples (held per shape: an LM run asks for the
    same shape every iteration, and building it afresh is pure overhead)."""
    return np.broadcast_to(np.eye(q, dtype=dtype), (n, q, q))


def fill_jacobian(layers: list[Dense], X: Array, J: Array, cache: Cache | None = None,
                  first: Array | None = None) -> None:
    """Write dy/dtheta of the chunk ``X`` (n, n_in) into ``J`` (n, q, P) (seed 1-6: the bias
    rows of :func:`bias_rows` and their R-w outer products); ``cache`` is the
    forward cache of ``X`` when the caller has it already. With ``first`` (n, q, q_n) the
    rows written are ``first`` times the Jacobian of the logits (see :func:`bias_rows`).

    Each element of J is written once. With compiled kernels on (:mod:`jacnet.accel`) and
    a chunk of at least ``_COMPILED_ELEMENTS`` elements, :func:`_fill_rows` writes each row
    of J from its start to its end, every layer's block in turn; numpy writes the same
    products, bit for bit, layer by layer in one broadcast multiply each."""
    cache = forward_cache(layers, X, blas_matmul) if cache is None else cache
    n, q = J.shape[:2]
    offsets = param_offsets(layers)
    E = _identity_rows(n, q, J.dtype) if first is None else None
    rows = bias_rows(layers, cache, E, first)  # the same E, so `D is E` below is certain
    if (J.size >= _COMPILED_ELEMENTS and J.dtype.type in (np.float32, np.float64)
            and accel.enabled()):
        Ds = [next(rows) for _ in layers][::-1]  # the recursion yields the last layer first
        identity = np.array([D is E for D in Ds])
        # One pass over J's memory, row after row: a fresh J's pages are filled while the
        # kernel's zeroing of them is still in cache, and no line of a row is written twice.
        _fill_rows(J, np.concatenate([c[0] for c in cache], axis=1).astype(J.dtype, copy=False),
                   np.cumsum([0] + [layer.n_in for layer in layers]),
                   np.concatenate(Ds, axis=2).astype(J.dtype, copy=False),
                   np.cumsum([0] + [layer.n_out for layer in layers]),
                   np.array([w0 for w0, _, _ in offsets]),
                   np.array([b0 for _, b0, _ in offsets]), identity)
        return
    for k in range(len(layers) - 1, -1, -1):
        D = next(rows)
        w0, b0, end = offsets[k]
        Xin = cache[k][0]
        if D is E:  # an identity output: dy_i/dW[a, j] is x_a where j = i, else 0
            Jw = np.reshape(J[:, :, w0:b0], (n, q, layers[k].n_in, q), copy=False)
            if q > 1:
                Jw[...] = 0
            for i in range(q):
                Jw[:, i, :, i] = Xin
        else:
            # seed R-w: one outer product per sample and output, y_{k-1}[a] * D[i, j]
            Jw = np.reshape(J[:, :, w0:b0], (n, q, layers[k].n_in, layers[k].n_out), copy=False)
            np.multiply(Xin[:, None, :, None], D[:, :, None, :], out=Jw)
        J[:, :, b0:end] = D


@accel.kernel()
def _fill_rows(J: Array, Xs: Array, x_off: Array, Ds: Array, d_off: Array, w_off: Array,
               b_off: Array, identity: Array) -> None:
    """J's rows (n, q, P), each from its start to its end: for layer k, with its input
    ``x = Xs[s, x_off[k]:x_off[k + 1]]`` and bias rows ``d = Ds[s, i, d_off[k]:d_off[k + 1]]``
    (m of them), ``J[s, i, w_off[k] + a m + j] = x[a] * d[j]`` (seed R-w) and
    ``J[s, i, b_off[k] + j] = d[j]``; an ``identity`` layer (f' = I, ``d`` the unit row i)
    gets the numpy path's copies and zeros instead of products by 0 and 1. The numpy path's
    bits, in one pass. Compiled without bounds checks: the offsets are the network's
    (``param_offsets``) in a J of its width."""
    n, q = J.shape[0], J.shape[1]
    for s in range(n):
        xs = Xs[s]
        for i in range(q):
            row, ds = J[s, i], Ds[s, i]
            for k in range(w_off.shape[0]):
                x = xs[x_off[k] : x_off[k + 1]]
                m = d_off[k + 1] - d_off[k]
                # 1-D views indexed from 0: the compiler then vectorises the inner loops
                w = row[w_off[k] : w_off[k] + x.shape[0] * m]
                b = row[b_off[k] : b_off[k] + m]
                if identity[k]:
                    for a in range(x.shape[0]):
                        out = w[a * m : a * m + m]
                        out[:] = 0.0
                        out[i] = x[a]
                    b[:] = 0.0
                    b[i] = 1.0
                    continue
                d = ds[d_off[k] : d_off[k + 1]]
                for a in range(x.shape[0]):
                    out, xa = w[a * m : a * m + m], x[a]
                    for j in range(m):
                        out[j] = xa * d[j]
                for j in range(m):
                    b[j] = d[j]


def param_jacobian(
    layers: list[Dense], X: Array, chunk: int | None = None, cache: Cache | None = None,
    out: Array | None = None, first: Callable[[slice], Array] | None = None,
) -> Array:
    """``J[s, i, p] = dy_{s,i} / dtheta_p``, shape (N, n_out, P), chunk by chunk.

    ``cache``: the forward cache of all of ``X``, used when one chunk covers X. ``out``:
    a C-contiguous array of that shape and X's dtype to write J into (checked by the
    caller). ``first(samples)``: rows to start the recursion from instead of the output
    activation's f' (see :func:`bias_rows`)."""
    N = X.shape[0]
    q = layers[-1].n_out
    P = sum(layer.n_params for layer in layers)
    J = np.empty((N, q, P), dtype=X.dtype) if out is None else out
    step = chunk or min(N, max(_FILL_ROWS, _FILL_ELEMENTS // (q * P)))

    def fill(start: int, chunk_cache: Cache | None = None) -> None:
        rows = slice(start, start + step)
        fill_jacobian(layers, X[rows], J[rows], chunk_cache,
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
        rows = bias_rows(layers, forward_cache(layers, Xc, blas_matmul))
        for _ in layers:
            next(rows)
        out[start : start + step] = next(rows)
    return out


def logit_vjp(layers: list[Dense], cache: Cache, G: Array) -> Array:
    """``sum_s G_s . dz_s/dtheta`` (P,): the rows ``G`` (n, q) at the last layer's
    pre-activation z carried back through the network (backprop, on this chunk's cache)."""
    rows = bias_rows(layers, cache, first=G[:, None, :])
    D = [next(rows)[:, 0, :] for _ in layers][::-1]  # the recursion yields the last first
    return rows_to_params(layers, cache, D)


def rows_to_params(layers: list[Dense], cache: Cache, D: list[Array]) -> Array:
    """``sum_s`` of each layer's bias-row ``D[k]`` (n, m_k) and its outer product with the
    layer's input (seed R-w), laid out as theta (P,)."""
    out = np.empty(sum(layer.n_params for layer in layers), dtype=D[0].dtype)
    for (w0, b0, end), (X_in, _, _), Dk in zip(param_offsets(layers), cache, D, strict=True):
        out[w0:b0] = blas_matmul(X_in.T, Dk).ravel()  # seed R-w for the rows D_k
        out[b0:end] = Dk.sum(axis=0)
    return out
