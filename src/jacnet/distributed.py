"""Data-parallel full-batch training on Dask: L-BFGS, Levenberg-Marquardt and br at any scale.

Every quantity the full-batch solvers need is a sum over samples. With the samples split
into partitions ``p`` (the row blocks of a ``dask.array``), a weighted mean loss is

    L = sum_p (W_p / W) L_p,       dL/dtheta = sum_p (W_p / W) dL_p/dtheta

(``W_p`` the partition's total sample weight, ``W = sum_p W_p``), and LM's Gauss-Newton
system, whose ``H`` and ``g`` are not normalised (``Loss.gauss_newton_terms``, or
``Loss.logit_model`` at the logits for softmax, sigmoid and exp outputs), is

    J^T H J = sum_p J_p^T H_p J_p,   J^T g = sum_p J_p^T g_p,   scale = c / W.

So each evaluation runs the single-machine engine on every partition where the partition
lives (one task per worker thread, over the partitions that worker holds, asked to run
there), and only P-sized (L-BFGS) or P x P (LM) results travel, summed by a tree
reduction on the workers; the client receives one of them. theta is sent once per evaluation, as
the argument of one small task that every partition's task depends on, so it is not
re-sent with each task. The data are persisted on the workers once and never gathered.

Nothing a run needs lives only in a worker's memory: theta and the model are task
results, not scattered data, so when a worker dies mid-evaluation Dask recomputes them,
and the lost partitions from their lineage, and the evaluation completes. (Scattered data
cannot be recomputed, and Dask's active memory manager may leave a single replica of a
broadcast, so a scatter would not survive the loss of the worker holding it.)

The solver logic is not repeated here: :class:`DaskObjective` replaces the three sums of
:class:`~jacnet.objective.Objective`, and the single-machine solvers and loop
(:class:`jacnet.training.Run`, given the Dask objective as its ``objective`` factory) run
on it, so the record, stop reasons and theta are those of ``jacnet.train`` up to
floating-point summation order. Derivative data add residuals per sample, so their sums
split the same way: :class:`DaskSobolevObjective` replaces the sums of
:class:`~jacnet.sobolev.SobolevObjective`, each partition dividing by the whole set's
``c`` (``W`` for ``mse``, 1 for ``sse``). A regressor's posterior needs two more sums,
``J^T W J`` and ``E_D`` at the fitted theta (:func:`posterior_sums`), taken by the same
map and reduction at the end of an estimator's fit.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.core import flatten
    from distributed import Client, Future, default_client, futures_of, wait
except ImportError as exc:  # pragma: no cover - the extra is part of dev
    raise ImportError(
        "jacnet.distributed needs Dask: pip install 'jacnet[distributed]'"
    ) from exc

from .evidence import curvature
from .gauss_newton import DualSystem, PrimalSystem, primal_system
from .losses import Loss, get_loss
from .network import Network
from .objective import Objective
from .record import TrainingRecord
from .sobolev import SobolevData, SobolevObjective, check_second_order, derivatives_3d
from .solvers import Solver
from .stopping import stop_rules
from .training import SOLVERS, STOCHASTIC, Callback, Run, configure, finish
from .uncertainty import FitSums

Array = np.ndarray

__all__ = ["SCALABLE_SOLVERS", "POSTERIOR_MAX_PARAMS", "DaskObjective", "DaskSobolevObjective",
           "Partitions", "train", "fit_estimator", "posterior_sums"]

#: The solvers that train on a Dask cluster: the full-batch ones.
SCALABLE_SOLVERS: tuple[str, ...] = tuple(n for n in SOLVERS if n not in STOCHASTIC)

_FAN_IN = 4  # partial results summed per task of the tree reduction


# ------------------------------------------------------------ on the workers
@dataclass
class _Model:
    """What every task needs besides theta and its partition; sent once per run."""

    net: Network
    loss: Loss
    chunk: int | None
    scale: float  # the Gauss-Newton scale of the whole data set (see _global_scale)
    lam: float = 0.0  # derivative data: the weight of the derivative residuals
    norm: float = 1.0  # derivative data: what the whole set's loss divides by (2 / scale)


def _held(obj: Any) -> Any:
    """A task whose result is its argument: data Dask can recompute if its worker dies."""
    return obj


def _local_net(model: _Model, theta: Array) -> Network:
    # A worker may run several tasks in threads: each gets its own network, the shared
    # one held by the worker is never written to.
    net = copy.deepcopy(model.net)
    net.theta[...] = theta
    return net


# Every partition function takes (model, theta, X, T, w, G, share): the partition's rows,
# its sample weights and derivative data (None without), and its share of a mean loss.
def _part_value(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                G: None, share: float) -> float:
    """The partition's share of the loss: ``(W_p / W) L_p``."""
    return share * _local_net(model, theta).evaluate(X, T, model.loss, w, model.chunk)[0]


def _part_value_and_grad(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                         G: None, share: float) -> tuple[float, Array]:
    """The partition's share of the loss and of its gradient (P,)."""
    bp = _local_net(model, theta).backprop(model.loss)
    value = bp(X, T, w)
    grad = bp.grad
    return share * value, share * grad


def _part_system(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                 G: None, share: float) -> PrimalSystem:
    """The partition's primal system: ``J_p^T H_p J_p`` (P, P) and ``J_p^T g_p`` (P,) are
    plain sums, so the partitions' systems add up to the whole's (``+``); it carries the
    whole data set's scale. As in the one-process objective, ``J_p^T H_p J_p`` holds its
    upper triangle only (the sum of the partitions' is then the upper triangle of the
    whole, which LM's solve reads)."""
    net = _local_net(model, theta)
    Y = net.evaluate(X, T, model.loss, w, model.chunk)[1]
    system = primal_system(net.layers, X, T, model.loss, w, Y, chunk=model.chunk)
    return PrimalSystem(system.JtHJ, system.Jtg, model.scale)


def _sobolev(model: _Model, theta: Array, X: Array, T: Array, w: Array | None, G: Array
             ) -> SobolevObjective:
    """The one-machine objective of values and derivatives on the partition, dividing by
    the whole set's ``norm``: its three sums are then the partition's terms of the whole's."""
    obj = SobolevObjective(_local_net(model, theta), X, T, model.loss, w, 0.0, model.chunk,
                           data=SobolevData(G, model.lam))
    obj.norm = model.norm
    return obj


def _sobolev_value(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                   G: Array, share: float) -> float:
    """The partition's terms of the values-and-derivatives loss."""
    return _sobolev(model, theta, X, T, w, G).data_value()[0]


def _sobolev_value_and_grad(model: _Model, theta: Array, X: Array, T: Array,
                            w: Array | None, G: Array, share: float) -> tuple[float, Array]:
    """The partition's terms of the values-and-derivatives loss and of its gradient (P,)."""
    return _sobolev(model, theta, X, T, w, G).data_value_and_grad()


def _sobolev_system(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                    G: Array, share: float) -> PrimalSystem:
    """The partition's primal system of values and derivatives (upper triangle). A
    partition of fewer weighted residuals than parameters gets the dual form from the
    one-machine objective: its ``A^T A`` is the same ``J^T H J``."""
    system = _sobolev(model, theta, X, T, w, G).data_system(None, model.chunk)
    if isinstance(system, DualSystem):
        system = system.primal()
    return PrimalSystem(system.JtHJ, system.Jtg, model.scale)


def _part_curvature(model: _Model, theta: Array, X: Array, T: Array, w: Array | None,
                    G: Array | None, share: float) -> tuple[Array, float]:
    """The partition's terms of a posterior's sums (:class:`jacnet.uncertainty.FitSums`):
    ``J^T W J`` (P, P), both triangles, and ``E_D``: of the values, and of the
    lambda-weighted derivative residuals where the fit had derivative data, as a
    one-machine fit's posterior (:func:`jacnet.evidence.curvature`)."""
    net = _local_net(model, theta)
    if G is not None:
        curv = curvature(net, X, T, w, chunk=model.chunk, derivatives=SobolevData(G, model.lam))
        upper = np.triu(curv.G[0])
        return upper + np.triu(upper, 1).T, float(curv.E_D[0])
    R = net.evaluate(X, T, model.loss, w, model.chunk)[1] - T
    JtWJ = net.gauss_newton(X, R, w, model.chunk)[0]
    sq = R * R if w is None else R * R * w[:, None]
    return JtWJ, float(np.sum(sq, dtype=np.float64))


def _each_block(fn: Callable[..., Any], n_fixed: int, width: int, *args: Any) -> list[Any]:
    """``[fn(*fixed, *block) for block]``: ``args`` are ``n_fixed`` arguments for every call,
    then the partitions' arguments flat, ``width`` per partition, in order (one group's
    partitions, one task; futures must be top-level arguments to be resolved)."""
    fixed, flat = args[:n_fixed], args[n_fixed:]
    return [fn(*fixed, *flat[i : i + width]) for i in range(0, len(flat), width)]


def _sum_blocks(fn: Callable[..., Any], n_fixed: int, width: int, *args: Any) -> Any:
    """The sum of :func:`_each_block`'s results: one worker's share of a reduction."""
    parts = _each_block(fn, n_fixed, width, *args)
    return parts[0] if len(parts) == 1 else _add(*parts)


#: The columns of :func:`_part_stats`.
_STATS = ("rows", "weight", "X", "T", "sample_weight", "G", "observed", "weighted_observed")


def _part_stats(X: Array, T: Array, w: Array | None, G: Array | None) -> Array:
    """One partition's :data:`_STATS`: its rows, total weight, the non-finite entries of X
    and T, the negative or non-finite weights, the infinite derivatives, the observed
    (not NaN) derivatives and their count weighted by the rows' sample weights."""
    bad_w = 0 if w is None else int(np.sum(~np.isfinite(w) | (w < 0)))
    weight = X.shape[0] if w is None else float(np.sum(w, dtype=np.float64))
    inf_g = seen = seen_w = 0.0
    if G is not None:
        per_row = np.count_nonzero(~np.isnan(G), axis=(1, 2))
        inf_g, seen = float(np.sum(np.isinf(G))), float(per_row.sum())
        seen_w = seen if w is None else float(w @ per_row)
    return np.array([X.shape[0], weight, np.sum(~np.isfinite(X)), np.sum(~np.isfinite(T)),
                     bad_w, inf_g, seen, seen_w], dtype=np.float64)


def _add(*parts: Any) -> Any:
    """Elementwise sum of partial results (floats, arrays, Gauss-Newton systems or tuples
    of them)."""
    if isinstance(parts[0], tuple):
        return tuple(_add(*items) for items in zip(*parts, strict=True))
    total = parts[0]
    for p in parts[1:]:
        total = total + p  # a new object: task results must stay unchanged for retries
    return total


# ------------------------------------------------------------- on the client
class Partitions:
    """Training rows on a Dask cluster: persisted once, checked once, summed in place.

    ``X``, ``T``, ``w`` and ``G`` (None: none) are dask arrays with the same row chunks,
    already validated (see :func:`train`). They are persisted on the workers here, once,
    and one pass over them (placed as every evaluation is) checks them and counts the
    weight; every sum is then a map over the partitions and a tree reduction.

    Parameters
    ----------
    client : distributed.Client
    X, T, w, G : dask arrays of shapes (N, n_in), (N, n_out), (N,) or None, and
        (N, n_out, n_in) or None
    mean : bool
        Whether the partitions' terms are shares of a mean, ``W_p / W`` (else 1).
    name : str
        The derivative data's name in errors (``dTdX``, or the estimators' ``dydx``).

    Attributes
    ----------
    X, T, w, G : the persisted arrays
    stats : ndarray of shape (n_partitions, 8)
        Each partition's :data:`_STATS`.
    total_weight : float
        ``W``, the rows' total sample weight (N without weights).
    blocks : list of tuples
        The partitions of positive weight as ``(X_p, T_p, w_p, G_p, share_p)`` (futures,
        None where absent): the last arguments of every partition function.
    """

    def __init__(self, client: Client, X: Any, T: Any, w: Any, G: Any, mean: bool,
                 name: str = "dTdX") -> None:
        self.client = client
        given = [a for a in (X, T, w, G) if a is not None]
        persisted = client.persist(given)
        # The partitions must exist before they can be placed: asked while still being
        # computed, who_has finds no holder, and an unplaced task may copy its partition
        # to another worker (a CI run of the placement test caught it).
        wait(persisted)
        found = iter(persisted)
        self.X, self.T = next(found), next(found)
        self.w: Any = None if w is None else next(found)
        self.G: Any = None if G is None else next(found)
        xs, ts = _block_futures(self.X), _block_futures(self.T)
        ws, gs = ([None] * len(xs) if a is None else _block_futures(a) for a in (self.w, self.G))
        self.stats = self._check(xs, ts, ws, gs, name)
        weights = [float(s[1]) for s in self.stats]
        self.total_weight = math.fsum(weights)
        # Empty partitions add nothing (and a mean over zero weight is undefined).
        self.blocks = [(x, t, wp, g, (wt / self.total_weight) if mean else 1.0)
                       for x, t, wp, g, wt in zip(xs, ts, ws, gs, weights, strict=True)
                       if wt > 0]

    def _check(self, xs: list[Any], ts: list[Any], ws: list[Any], gs: list[Any], name: str
               ) -> Array:
        """The one pass over the data before training: each partition's statistics,
        checked (a ValueError names the first partition with bad values)."""
        groups = self._placement(xs)
        futures = [
            self.client.submit(_each_block, _part_stats, 0, 4,
                               *(a for i in idx for a in (xs[i], ts[i], ws[i], gs[i])),
                               pure=False, **_on(worker))
            for worker, idx in groups
        ]
        stats: list[Any] = [None] * len(xs)
        for (_, idx), found in zip(groups, self.client.gather(futures), strict=True):
            for i, st in zip(idx, found, strict=True):
                stats[i] = st
        table = np.asarray(stats).reshape(len(xs), len(_STATS))
        _check_partitions(table, self.X.chunks[0], self.w is not None, name)
        return table

    def hold(self, obj: Any) -> Future:
        """``obj`` on the cluster as a recomputable task result (see the module notes)."""
        return self.client.submit(_held, obj, pure=False)

    def groups(self) -> list[tuple[str | None, list[int]]]:
        """The blocks as ``(worker, block indices)`` groups: see :meth:`_placement`."""
        return self._placement([x for x, *_ in self.blocks])

    def _placement(self, xs: list[Future]) -> list[tuple[str | None, list[int]]]:
        """The partitions ``xs`` as ``(worker, block indices)`` groups, where they are now.

        Each worker gets as many groups as it has threads (contiguous runs of the blocks
        it holds); a block held by several workers (a replica, made by a gather, say) goes
        to the one with the fewest blocks so far, so the work stays even; a block that no
        worker holds at this moment (lost, being recomputed) is a group of its own, with
        no worker named.
        """
        who = self.client.who_has(xs)
        threads = self.client.nthreads()
        holders = [sorted(who.get(x.key, ())) for x in xs]
        load = Counter(h[0] for h in holders if len(h) == 1)
        by_worker: dict[str | None, list[int]] = {}
        for i, h in enumerate(holders):
            worker = h[0] if len(h) == 1 else None
            if len(h) > 1:
                worker = min(h, key=lambda a: (load[a], a))
                load[worker] += 1
            by_worker.setdefault(worker, []).append(i)
        groups: list[tuple[str | None, list[int]]] = []
        for worker, idx in by_worker.items():
            if worker is None:
                groups += [(None, [i]) for i in idx]
                continue
            k = max(1, min(threads.get(worker, 1), len(idx)))
            groups += [(worker, list(run)) for run in np.array_split(idx, k)]
        return sorted(groups, key=lambda g: g[1][0])

    def reduce(self, fn: Callable[..., Any], model: Future, theta: Array) -> Any:
        """``sum_p fn(model, theta, X_p, T_p, w_p, G_p, share_p)``.

        One task per group of partitions that a worker holds (one group per thread),
        asked to run on that worker: Dask's scheduler would otherwise move a partition to
        an idle worker when its cost model prefers the transfer to the wait (it moved half
        the data in one LM iteration when tried), and the data must stay put.
        The restriction is loose, so a lost worker's share runs wherever Dask recomputes
        its partitions.
        """
        client = self.client
        # a fresh key per evaluation (pure=False): the same theta twice must not share a key
        # that is being released
        held_theta = self.hold(theta)
        parts = [
            client.submit(_sum_blocks, fn, 2, 5, model, held_theta,
                          *(a for i in idx for a in self.blocks[i]), pure=False,
                          **_on(worker))
            for worker, idx in self.groups()
        ]
        held = list(parts)  # every level stays referenced until the result is in
        while len(parts) > 1:  # the tree: fan-in _FAN_IN, on the workers
            parts = [client.submit(_add, *parts[i:i + _FAN_IN], pure=False)
                     if len(parts[i:i + _FAN_IN]) > 1 else parts[i]
                     for i in range(0, len(parts), _FAN_IN)]
            held += parts
        result = parts[0].result()
        client.cancel(held + [held_theta])  # release theta and the partial sums now, not at GC
        return result


class _PartitionSums:
    """The three ``data_*`` sums of an :class:`~jacnet.objective.Objective` as reductions
    over its :class:`Partitions`: a subclass names its partition functions (the value,
    the value and gradient, the primal system) in ``_SUMS``."""

    parts: Partitions
    model: Future
    net: Network
    grad: Array
    _SUMS: ClassVar[tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]]

    def reduce(self, fn: Callable[..., Any]) -> Any:
        """``sum_p fn(model, theta, X_p, T_p, w_p, G_p, share_p)`` at the network's theta."""
        return self.parts.reduce(fn, self.model, self.net.get_flat())

    def data_value(self) -> tuple[float, Any]:
        return float(self.reduce(self._SUMS[0])), None

    def data_value_and_grad(self) -> tuple[float, Array]:
        value, grad = self.reduce(self._SUMS[1])
        self.grad[...] = grad
        return float(value), self.grad

    def data_system(self, state: Any, chunk: int | None) -> PrimalSystem:
        system = self.reduce(self._SUMS[2])
        assert isinstance(system, PrimalSystem)
        return system


class DaskObjective(_PartitionSums, Objective):
    """:class:`~jacnet.objective.Objective` whose sums over samples run on a Dask cluster.

    ``X``, ``T`` and ``w`` are dask arrays with the same row chunks, already validated
    (see :func:`train`); :class:`Partitions` persists them on the workers, once, and
    every evaluation maps over their partitions and tree-reduces the partial sums.
    """

    _SUMS = (_part_value, _part_value_and_grad, _part_system)

    def __init__(self, net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float,
                 client: Client, chunk: int | None = None) -> None:
        super().__init__(net, X, T, loss, w, alpha, chunk)
        self.client = client
        self.parts = Partitions(client, X, T, w, None, loss.mean_over_samples)
        self.X, self.T, self.w = self.parts.X, self.parts.T, self.parts.w
        self.total_weight = self.parts.total_weight
        self.scale = _global_scale(loss, self.total_weight, net.n_out)
        self.model = self.parts.hold(_Model(net, loss, chunk, self.scale))


class DaskSobolevObjective(_PartitionSums, SobolevObjective):
    """:class:`~jacnet.sobolev.SobolevObjective` (values and input derivatives) whose sums
    over samples run on a Dask cluster, as :class:`DaskObjective`'s.

    ``data.G`` is a dask array (N, n_out, n_in) chunked with ``X``'s rows (NaN: not
    observed). Each partition's task runs the one-machine objective on its rows, dividing
    by the whole set's ``c`` (the total sample weight for ``mse``, 1 for ``sse``), so the
    partitions' terms add up to the whole's; the counts that Bayesian regularization reads
    (``n_values``, ``n_weighted``) come from the pass that checks the partitions.
    """

    _SUMS = (_sobolev_value, _sobolev_value_and_grad, _sobolev_system)

    def __init__(self, net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float,
                 client: Client, chunk: int | None = None, *, data: SobolevData,
                 name: str = "dTdX") -> None:
        _check_derivative_fit(net, loss, name)
        # Not SobolevObjective.__init__: it counts the observed derivatives and the weight
        # in memory; here the partitions' statistics hold them.
        Objective.__init__(self, net, X, T, loss, w, alpha, chunk)
        self.client = client
        parts = self.parts = Partitions(client, X, T, w, data.G, False, name)
        self.X, self.T, self.w = parts.X, parts.T, parts.w
        self.data = SobolevData(parts.G, data.lam)
        self.total_weight = parts.total_weight
        self.scale = _global_scale(loss, self.total_weight, net.n_out)
        self.norm = 2.0 / self.scale  # a sum of squares' Gauss-Newton scale is 2 / c
        rows, observed, weighted = (parts.stats[:, _STATS.index(k)].sum()
                                    for k in ("rows", "observed", "weighted_observed"))
        self.n_values = int(rows * net.n_out + observed)
        self.n_weighted = float(self.n_values) if w is None else float(
            self.total_weight * net.n_out + weighted)
        self.model = parts.hold(_Model(net, loss, chunk, self.scale, data.lam, self.norm))


#: The largest network (parameters) whose posterior sums a Dask fit by ``lbfgs`` adds up
#: at its end: they are P x P, which LM and br hold every epoch anyway but L-BFGS never
#: does (its P can be far larger).
POSTERIOR_MAX_PARAMS = 4096


def posterior_sums(objective: DaskObjective | DaskSobolevObjective) -> FitSums:
    """The sums of the posterior (:class:`jacnet.uncertainty.FitSums`) over the
    objective's partitions, at its network's theta: ``J^T W J``, ``E_D`` and ``N_e``, the
    derivative residuals included where the fit had them."""
    G, E_D = objective.reduce(_part_curvature)
    divisor = float(objective.total_weight * objective.net.n_out)
    n_values = (objective.n_weighted if isinstance(objective, DaskSobolevObjective)
                else divisor)
    return FitSums(np.asarray(G, dtype=float), float(E_D), float(n_values), divisor)


def _on(worker: str | None) -> dict[str, Any]:
    """``Client.submit``'s placement for a group: on ``worker``, loosely; anywhere if None."""
    return {} if worker is None else {"workers": [worker], "allow_other_workers": True}


def _block_futures(arr: Any) -> list[Future]:
    """The futures of a persisted dask array's row blocks, in row order."""
    by_key = {f.key: f for f in futures_of(arr)}
    return [by_key[k] for k in flatten(arr.__dask_keys__())]


def _check_partitions(stats: Array, rows: Sequence[int], weighted: bool, g_name: str) -> None:
    """A ValueError naming the first partition that holds NaN/inf (or bad weights, or
    infinite derivatives: NaN marks a derivative not observed), ``g_name`` the
    derivative data's name."""
    starts = np.concatenate([[0], np.cumsum(rows)])
    checks = (("X", "X", "NaN or inf"), ("T", "T", "NaN or inf"),
              ("sample_weight", "sample_weight", "negative, NaN or inf"),
              ("G", g_name, "infinite"))
    for key, name, what in checks:
        col = _STATS.index(key)
        bad = np.flatnonzero(stats[:, col])
        if bad.size:
            p = int(bad[0])
            note = " (NaN, not inf, marks a derivative not observed)" if key == "G" else ""
            raise ValueError(
                f"{name} partition {p} (block {p} of {len(rows)}, rows "
                f"{starts[p]}:{starts[p + 1]}) holds {int(stats[p, col])} {what} value(s)"
                f"{note}; {len(bad)} partition(s) in all: {bad.tolist()[:10]}"
            )
    if weighted and not stats[:, 1].sum() > 0:
        raise ValueError("sample_weight must not be all zero")


def _global_scale(loss: Loss, total_weight: float, n_out: int) -> float:
    """The Gauss-Newton ``scale`` of the whole data set (it depends on the total weight
    only): the loss's own formula on one row that carries all the weight (the logit
    model of a fused pair has the same scale)."""
    Y = np.full((1, n_out), 0.5)
    return loss.gauss_newton_terms(Y, Y.copy(), np.array([total_weight]))[2]


# ------------------------------------------------------------------ the inputs
def _as_dask(A: Any, name: str) -> Any:
    """A dask array from a dask array, DataFrame or Series (row chunks computed)."""
    if hasattr(A, "to_dask_array"):  # dask DataFrame or Series
        return A.to_dask_array(lengths=True)
    if isinstance(A, da.Array):
        return A
    raise TypeError(
        f"{name} must be a dask array or DataFrame, got {type(A).__name__}; for in-memory "
        "data use jacnet.train, or wrap it with dask.array.from_array(a, chunks=...)"
    )


def _prepare(net: Network, X: Any, T: Any, w: Any) -> tuple[Any, Any, Any]:
    """Check shapes and dtypes lazily; give X, T, w one row chunking and net's dtype."""
    X = _as_dask(X, "X")
    if X.ndim != 2 or X.shape[1] != net.n_in:
        raise ValueError(f"X must be 2-D with {net.n_in} columns, got shape {X.shape}")
    if any(math.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes: call X.compute_chunk_sizes() first, or "
                         "DataFrame.to_dask_array(lengths=True)")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    rows = X.chunks[0]
    X = X.rechunk({0: rows, 1: -1}).astype(net.dtype)
    T = _as_rows(T, "T", rows)
    if T.ndim == 1 and net.n_out == 1:
        T = T[:, None]
    if T.ndim != 2 or T.shape != (X.shape[0], net.n_out):
        raise ValueError(f"T must have shape ({X.shape[0]}, {net.n_out}), got {T.shape}")
    T = T.rechunk({0: rows, 1: -1}).astype(net.dtype)
    if w is not None:
        w = _as_rows(w, "sample_weight", rows)
        if w.shape != (X.shape[0],):
            raise ValueError(f"sample_weight must have shape ({X.shape[0]},), got {w.shape}")
        w = w.astype(net.dtype)
    return X, T, w


def _prepare_derivatives(G: Any, rows: tuple[int, ...], q: int, n_in: int, dtype: Any,
                         name: str = "dTdX", dims: tuple[str, str] = ("n_out", "n_in")) -> Any:
    """Derivative data as a dask array (N, q, n_in) of ``dtype`` chunked like X's rows,
    checked lazily (its values, NaN kept and inf refused, in the objective's one pass).

    Like ``T`` and ``sample_weight``, ``G`` is rechunked to X's rows and may be in memory
    (sent to the cluster once): what matters is which row each derivative belongs to, not
    how the caller happened to chunk it. An (N, n_in) ``G`` is taken for one output;
    errors name ``name`` and the dimensions ``dims`` (the estimators' ``dydx``,
    ``("n_outputs", "n_features")``), as :func:`jacnet.sobolev.as_derivatives` does."""
    G = derivatives_3d(_as_rows(G, name, rows), sum(rows), q, n_in, name, dims)
    return G.rechunk({0: rows, 1: -1, 2: -1}).astype(dtype)


def _check_derivative_fit(net: Network, loss: Loss, name: str) -> None:
    """A ValueError naming ``name`` when derivative data cannot be fitted: a loss that is
    not a sum of squares, or an activation without its second-order term."""
    if not loss.sum_of_squares:
        raise ValueError(f"{name} needs a sum-of-squares loss ('sse' or 'mse'), got "
                         f"loss={loss.name!r}")
    check_second_order(net, name)


def _as_rows(A: Any, name: str, rows: tuple[int, ...], numeric: bool = True) -> Any:
    """``A`` (dask or in-memory) as a dask array chunked like X's rows."""
    n = sum(rows)

    def check_length(shape: tuple[Any, ...]) -> None:
        if not shape or (not math.isnan(shape[0]) and shape[0] != n):
            raise ValueError(f"{name} must have {n} rows (one per row of X), got shape {shape}")

    if not (isinstance(A, da.Array) or hasattr(A, "to_dask_array")):
        A = np.asarray(A)
        check_length(A.shape)
        A = da.from_array(A, chunks=(rows, *A.shape[1:]))
    A = _as_dask(A, name)
    check_length(A.shape)
    if numeric and A.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {A.dtype}")
    return A.rechunk({0: rows})


# --------------------------------------------------------------------- train
#: Loop settings that mean nothing without a validation/test division.
_NO_DIVISION = ("validation_fraction", "test_fraction")

#: The objectives a run builds, in order: the estimators' fit sums its posterior's terms
#: on the last one's partitions, persisted already.
_Built = list[DaskObjective | DaskSobolevObjective]


def train(
    net: Network,
    X: Any,
    T: Any,
    solver: str | Solver = "lm",
    *,
    client: Client | None = None,
    sample_weight: Any = None,
    callbacks: Sequence[Callback] = (),
    dTdX: Any = None,
    **options: Any,
) -> TrainingRecord:
    """Train ``net`` in place on a Dask cluster and return the training record.

    The same solvers, options and record as :func:`jacnet.train` (``solver`` "lm",
    "lbfgs" or "br"; ``loss``, ``max_epochs``, ``goal``, ``min_grad``, ``mu``,
    ``mu_dec``, ``mu_inc``, ``mu_max``, ``alpha``, ``max_fun``, ``tol``,
    ``n_iter_no_change``, ``time_limit``, ``chunk``, ``verbose``, ``derivative_weight``);
    every evaluation is a map over the partitions of ``X`` and a tree reduction.

    Parameters
    ----------
    net : Network
    X : dask array of shape (N, n_in), or a dask DataFrame
        Its row blocks are the partitions; they stay on the workers.
    T : dask array of shape (N, n_out) (or (N,) for one output), DataFrame or Series
        Rechunked to X's rows; an in-memory array is accepted (and sent once).
    solver : {"lm", "lbfgs", "br"} or Solver, default="lm"
        As in :func:`jacnet.train`; a solver object keeps LM's ``mu`` from one call to the
        next (warm starts).
    client : distributed.Client, optional
        Default: the current client (``distributed.default_client()``).
    sample_weight : dask or numpy array of shape (N,), optional
    callbacks : sequence of callables ``cb(epoch_entry, net)``
        Called on the client at each epoch's end; a truthy return stops training.
    dTdX : dask or numpy array of shape (N, n_out, n_in) or (N, n_in), optional
        Derivative data, as in :func:`jacnet.train` (NaN: not observed); rechunked to
        X's rows like ``T``. Each partition's values-and-derivatives sums run where it
        lives (:class:`DaskSobolevObjective`).

    Returns
    -------
    TrainingRecord

    Raises
    ------
    ValueError
        A solver other than "lm"/"lbfgs"/"br", a validation/test division, a checkpoint,
        or a partition with NaN/inf (named by its block index; for ``dTdX``, inf).
    """
    return _train(net, X, T, solver, client, sample_weight, callbacks, dTdX, options)


def _train(net: Network, X: Any, T: Any, solver: str | Solver, client: Client | None,
           sample_weight: Any, callbacks: Sequence[Callback], dTdX: Any,
           options: dict[str, Any], built: _Built | None = None, g_name: str = "dTdX"
           ) -> TrainingRecord:
    """:func:`train`; the objectives it builds are appended to ``built``, and errors about
    the derivative data name it ``g_name``."""
    name = solver.name if isinstance(solver, Solver) else solver
    if name not in SCALABLE_SOLVERS:
        raise ValueError(f"solver {name!r} does not scale out; jacnet.distributed trains "
                         f"with the full-batch solvers {SCALABLE_SOLVERS}")
    solver, loop, rule_options = configure(solver, options)
    for name in _NO_DIVISION:
        if getattr(loop, name):
            raise ValueError(
                f"{name}={getattr(loop, name)!r}: jacnet.distributed trains on all of X and "
                "does not divide it into validation/test sets; split the data yourself "
                "(e.g. dask_ml.model_selection.train_test_split) and evaluate afterwards"
            )
    if loop.checkpoint is not None:
        raise ValueError("checkpoint: jacnet.distributed does not write checkpoints")
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jacnet.Network, got {type(net).__name__}")
    client = _client(client)
    X, T, w = _prepare(net, X, T, sample_weight)
    data = None
    if dTdX is not None:
        _check_derivative_fit(net, get_loss(loop.loss), g_name)
        G = _prepare_derivatives(dTdX, X.chunks[0], net.n_out, net.n_in, net.dtype, g_name)
        data = SobolevData(G, loop.derivative_weight)
    record = TrainingRecord(solver=solver.name)
    record.division = {}
    rules = stop_rules(max_epochs=loop.max_epochs, **rule_options)
    made = [] if built is None else built

    def objective(net: Network, X: Any, T: Any, loss: Loss, w: Any, alpha: float,
                  chunk: int | None) -> Objective:
        obj = (DaskObjective(net, X, T, loss, w, alpha, client, chunk) if data is None else
               DaskSobolevObjective(net, X, T, loss, w, alpha, client, chunk, data=data,
                                    name=g_name))
        made.append(obj)
        return obj

    run = Run(net, solver, loop, rules, {"train": (X, T, w)}, record,
              np.random.default_rng(loop.seed), callbacks, objective, rule_options)
    return finish(run, run.execute())


def _client(client: Client | None) -> Client:
    """``client``, or the current one (a ValueError when there is none)."""
    if client is not None:
        return client
    try:
        return default_client()
    except ValueError:
        raise ValueError("no Dask client: pass client=distributed.Client(...) or create "
                         "one first") from None


# ---------------------------------------------------------------- estimators
def fit_estimator(est: Any, X: Any, y: Any, sample_weight: Any = None,
                  client: Client | None = None, dydx: Any = None) -> Any:
    """``MLPRegressor/MLPClassifier.fit`` on dask arrays (called by ``fit``).

    Targets are encoded and the standardisation statistics computed with Dask (small
    reductions); then the estimator's fit plan (``est.plan_fit``, see
    :mod:`jacnet.fitplan`) runs with :func:`train` as its trainer. ``dydx``: a
    regressor's derivative data (n_samples, n_outputs, n_features), dask or in memory,
    rechunked to X's rows. At the end, the regressor gets the sums its posterior needs
    (:func:`posterior_sums`, from the partitions the fit persisted), so that
    ``predict(X, return_std=True)`` and ``predict_interval`` work as after an in-memory
    fit. Returns ``est``.
    """
    from sklearn.base import ClassifierMixin
    from sklearn.utils import check_random_state

    _check_estimator(est, dydx)
    sizes, hidden = est.validated_params()
    dtype = est.fit_dtype(X.dtype)  # float32 input stays float32, as in fit
    names = getattr(X, "columns", None)
    X = _as_dask(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    rows = X.chunks[0]
    X = X.astype(dtype)
    y = _as_rows(y, "y", rows, numeric=not isinstance(est, ClassifierMixin))
    sw = None if sample_weight is None else _as_rows(sample_weight, "sample_weight", rows)
    first = not hasattr(est, "network_") or not est.warm_start
    if not first and X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input")
    T = _dask_targets(est, y, dtype, isinstance(est, ClassifierMixin), first)
    G = None if dydx is None else _prepare_derivatives(
        dydx, rows, est.n_outputs_, X.shape[1], dtype, "dydx", ("n_outputs", "n_features"))
    rs = check_random_state(est.random_state)
    if first:
        est.n_features_in_ = X.shape[1]
        if names is not None and all(isinstance(c, str) for c in names):
            est.feature_names_in_ = np.asarray(list(names), dtype=object)
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
        est.init_model(X, T, sizes, hidden, dtype, rs, sw)
        # init_model's moments are lazy dask arrays here: reduce them on the cluster.
        keys = ("x_mean_", "x_scale_", "y_mean_", "y_scale_")
        values = dask.compute(*(getattr(est, k) for k in keys))
        for k, v in zip(keys, values, strict=True):
            setattr(est, k, None if v is None else np.asarray(v, dtype=dtype))
    if G is not None:
        _second_order(est, first)
    built: _Built = []

    def trainer(net: Network, X: Any, T: Any, solver: Solver, *, sample_weight: Any = None,
                callbacks: Sequence[Callback] = (), dTdX: Any = None, **options: Any
                ) -> TrainingRecord:
        return _train(net, X, T, solver, client, sample_weight, callbacks, dTdX, options,
                      built, "dydx")

    # the estimators' one fit plan, with the Dask trainer in place of jacnet.train
    plan = est.plan_fit(est.scale_in(X), est.scale_out(T), sw, rs, first=first,
                        trainer=trainer, dydx=est.scale_derivatives(G))
    est.execute_plan(plan, posterior_sums=lambda: _fit_sums(est.solver, built))
    return est


def _check_estimator(est: Any, dydx: Any) -> None:
    """The estimator's settings that a Dask fit refuses (a ValueError naming them)."""
    if est.solver not in SCALABLE_SOLVERS:
        raise ValueError(
            f"solver={est.solver!r} cannot train on dask arrays: only the full-batch solvers "
            f"{SCALABLE_SOLVERS} scale out to a cluster; pick one, or pass in-memory data"
        )
    if est.early_stopping:
        raise ValueError("early_stopping=True needs a validation division, which "
                         "jacnet.distributed does not make; set early_stopping=False")
    if dydx is not None and getattr(est, "loss", None) != "squared_error":
        raise ValueError(f"dydx (derivative data) needs loss='squared_error', got "
                         f"loss={getattr(est, 'loss', None)!r}")


def _second_order(est: Any, first: bool) -> None:
    """Derivative data need every layer's second-order term; a fresh model that lacks it
    is left unfitted (the ValueError names ``dydx``), as an in-memory fit leaves it."""
    try:
        check_second_order(est.network_, "dydx")
    except ValueError:
        if first:
            del est.network_
        raise


def _fit_sums(solver: str, built: _Built) -> FitSums | None:
    """The posterior sums at the end of an estimator's Dask fit, on the partitions its
    last objective persisted (None for an ``lbfgs`` network over
    :data:`POSTERIOR_MAX_PARAMS`, whose fit never held a P x P sum)."""
    if not built:  # every full-batch solver builds its objective when it starts
        return None
    objective = built[-1]
    built.clear()  # the partitions are released once the sums are in
    if solver == "lbfgs" and objective.net.n_params > POSTERIOR_MAX_PARAMS:
        return None
    return posterior_sums(objective)


def _dask_targets(est: Any, y: Any, dtype: np.dtype, classifier: bool, reset: bool) -> Any:
    """The network's targets T as a dask array (classes found by a reduction)."""
    if classifier:
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels for a dask fit, got shape {y.shape}")
        classes = np.asarray(da.unique(y).compute())
        est.targets(classes, incremental=False, reset=reset)  # fits the label binarizer
        q = est.n_outputs_
        return y.map_blocks(_binarize, est.label_binarizer_, dtype, new_axis=1,
                            chunks=(y.chunks[0], (q,)), dtype=dtype)
    est.targets(np.zeros((1, *y.shape[1:])), incremental=False, reset=reset)  # sets the shape
    T = y.astype(dtype)
    T = T[:, None] if T.ndim == 1 else T
    if est.loss == "poisson" and bool((T < 0).any().compute()):
        raise ValueError("y must be non-negative for loss='poisson'")
    return T


def _binarize(block: Array, binarizer: Any, dtype: np.dtype) -> Array:
    return binarizer.transform(block).astype(dtype)
