"""Mini-batch solvers: epochs of shuffled batches with an update rule of :mod:`jacnet.optimizers`.

:class:`MiniBatch` is the :class:`~jacnet.solvers.Solver` of the rules ``sgd``, ``adam``,
``adamw`` and ``rmsprop`` (one small subclass each). An epoch is one pass over the
training set: each batch is gathered into a reused buffer, backpropagated into reused
gradient buffers (:meth:`~jacnet.network.Network.backprop` with ``n_max``), and the rule
updates theta in place; a NaN or inf restores the epoch's start and retries it at half the step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import accel
from .network import Network
from .optimizers import OPTIMIZERS, Optimizer, OptimizerState, l2_penalty
from .schedules import SCHEDULES, Schedule
from .sobolev import SobolevBackprop, SobolevData
from .solvers import EpochResult, Solver
from .validation import check_int, check_real

Array = np.ndarray

__all__ = [
    "MiniBatch",
    "MiniBatchSGD",
    "MiniBatchAdam",
    "MiniBatchAdamW",
    "MiniBatchRMSprop",
    "gather_rows",
]


class MiniBatch(Solver):
    """Mini-batch epochs with an update rule of :mod:`jacnet.optimizers`.

    The solvers ``"sgd"``, ``"adam"``, ``"adamw"`` and ``"rmsprop"`` (one subclass each,
    :class:`MiniBatchAdam` etc., named in ``jacnet.training.SOLVERS``; or
    ``MiniBatch("adam", lr=...)``). An epoch is one pass
    over the (shuffled) training set; the recorded loss is the mean of the batch losses
    during the epoch plus the L2 term at its end. A NaN or inf loss or theta restores
    the epoch's start (theta and optimizer state), halves the step and retries the epoch,
    at most ``max_retries`` times (then ``non_finite``).

    Parameters
    ----------
    rule : str, optional
        A name in ``OPTIMIZERS``; default: the class's ``name``.
    lr : float, default=1e-3
        The schedule's initial rate (and the rule's).
    batch_size : int or None, default=32
        None: the whole training set in one batch.
    schedule : str or Schedule, default="constant"
        A name in ``SCHEDULES`` (built with ``lr`` and ``schedule_options``) or an
        instance, used as it is.
    shuffle : bool, default=True
    clip_norm : float or None, default=None
        See :class:`jacnet.optimizers.Optimizer`.
    max_retries : int, default=5
    optimizer_options : dict, optional
        Settings of the rule (``momentum``, ``beta_1``, ...); they may also be given as
        keywords.
    """

    def __init__(
        self,
        rule: str | None = None,
        *,
        lr: float = 1e-3,
        batch_size: int | None = 32,
        schedule: str | Schedule = "constant",
        schedule_options: dict[str, Any] | None = None,
        shuffle: bool = True,
        clip_norm: float | None = None,
        max_retries: int = 5,
        optimizer_options: dict[str, Any] | None = None,
        **rule_settings: Any,
    ) -> None:
        rule = type(self).name if rule is None else rule
        self.name = rule  # type: ignore[misc]  # an instance names its own rule
        self.lr = check_real(lr, "lr", "a positive number", lambda x: x > 0)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        self.shuffle = shuffle
        self.clip_norm = clip_norm
        self.max_retries = check_int(max_retries, "max_retries", 0)
        self.optimizer_options = {**(optimizer_options or {}), **rule_settings}
        # Built here, so that every setting is checked before any work; start() adds the
        # run's alpha.
        self.optimizer = OPTIMIZERS.create(rule, lr=self.lr, clip_norm=clip_norm,
                                           **self.optimizer_options)
        self.given_schedule = isinstance(schedule, Schedule)
        self.schedule = SCHEDULES.create(schedule, **(
            {} if self.given_schedule else {"lr": self.lr, **(schedule_options or {})}))
        self.state: OptimizerState | None = None  # the rule's moments, kept between calls
        self.lr_scale = 1.0  # halved by each retry of a non-finite epoch
        self._restored = False

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """Its own keywords and those of its rule (not ``lr``, ``alpha``, ``clip_norm``,
        which the solver and the loop set)."""
        own = tuple(k for k in super().settings() if k != "rule")
        rule = OPTIMIZERS.get_class(cls.name)
        extra = () if rule is None else tuple(
            k for k in inspect.signature(rule.__init__).parameters
            if k not in ("self", "lr", "alpha", "clip_norm"))
        return own + extra

    def start(self, run: Any) -> None:
        net = run.net
        opt = self.optimizer
        if run.alpha != opt.alpha:
            opt = self.optimizer = type(opt)(**{**opt.get_config(), "alpha": run.alpha})
        fresh = opt.init([net.theta], decay_mask=[net.weight_mask()])
        # a warm start continues the state; another rule (or momentum) starts afresh
        if not (self._restored or (self.state is not None
                                   and set(self.state.buffers) == set(opt.buffer_names()))):
            self.state = fresh
        self._restored = False
        X, T, w = run.train_set
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        # Each shuffled batch is gathered into one small buffer that every batch reuses,
        # and backprop reads it while it is still in cache (a copy of the whole shuffled
        # epoch would cost the page faults of a fresh data-sized array on every call).
        self._bufs = (np.empty((bs,) + X.shape[1:], X.dtype),
                      np.empty((bs,) + T.shape[1:], T.dtype),
                      None if w is None else np.empty(bs, w.dtype))
        self._gsum = np.empty(net.n_params, dtype=net.dtype)
        # backprop into buffers reused by every batch (equal to the general path)
        loss = run.loss
        backprop = net.backprop(loss, bs)
        self._backprop, self._bs = backprop, bs
        # with derivative data: the backward pass over the tangents, on each batch's rows
        self._derivatives: SobolevData | None = getattr(run, "derivatives", {}).get("train")
        if self._derivatives is not None:
            self._sobolev = SobolevBackprop(net, loss, grad=backprop.grad)
        self._mask = net.weight_mask() if run.alpha else None

    def epoch(self, run: Any) -> EpochResult:
        """One epoch; a non-finite one is retried from its start at half the step. A
        retried epoch keeps its index: epochs are counted by the record, not by tries."""
        epoch = run.record.n_epochs
        for _ in range(self.max_retries + 1):
            assert self.state is not None
            theta0, state0 = run.net.get_flat(), self.state.to_arrays()
            result = self._pass(run, self.schedule.lr_at(epoch) * self.lr_scale)
            if result is not None:
                return result
            self._retry_from(run.net, theta0, state0)
        return EpochResult(math.nan, math.nan, stop="non_finite")

    def _retry_from(self, net: Network, theta0: Array, state0: dict[str, Array]) -> None:
        """Back to the epoch's start, at half the step."""
        net.set_flat(theta0)
        self.state = OptimizerState.from_arrays(state0)
        self.lr_scale *= 0.5

    def _pass(self, run: Any, lr: float) -> EpochResult | None:
        """One pass over the training set at ``lr``; None when a loss or theta turned
        NaN or inf."""
        net, loss, opt, state = run.net, run.loss, self.optimizer, self.state
        assert state is not None
        X, T, w = run.train_set
        n, bs = X.shape[0], self._bs
        backprop, gsum = self._backprop, self._gsum
        params, grads = [net.theta], [backprop.grad]
        order = run.rng.permutation(n) if self.shuffle else None
        loss_sum = 0.0
        gsum[...] = 0
        step: Callable[..., None] = opt.update
        total: list[Array] | None = None  # where step adds the gradient to gsum itself
        if type(opt).update is Optimizer.update:  # checked once for the epoch
            lr = opt.prepare(params, grads, state, lr)
            step = opt.step
            if type(opt).step is Optimizer.step:  # the compiled rules sum in their pass
                total = [gsum]
        mean = loss.mean_over_samples
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            if order is None:
                batch = X[start:stop], T[start:stop], None if w is None else w[start:stop]
            else:
                batch = gather_rows(order[start:stop], (X, T, w), self._bufs)
            value = (backprop(*batch) if self._derivatives is None else
                     self._sobolev_batch(batch, order, start, stop))
            if not math.isfinite(value):
                return None
            loss_sum += value * ((stop - start) / n if mean else 1.0)
            if total is None:
                gsum += backprop.grad
                step(params, grads, state, lr)
            else:
                step(params, grads, state, lr, total)
        if not np.isfinite(net.theta).all():
            return None
        loss_sum += l2_penalty(net.theta, self._mask, run.alpha)
        n_batches = -(-n // bs)
        return EpochResult(loss_sum, float(np.linalg.norm(gsum)) / n_batches, {"lr": lr})

    def _sobolev_batch(self, batch: tuple[Array, Array, Array | None], order: Array | None,
                       start: int, stop: int) -> float:
        """The loss and gradient (into the backprop's ``grad``) of a batch with its rows
        of derivative data (normalised over the batch, as the values' backprop)."""
        assert self._derivatives is not None
        rows = slice(start, stop) if order is None else order[start:stop]
        return self._sobolev(*batch, self._derivatives.rows(rows))

    def after_epoch(self, entry: dict[str, Any]) -> None:
        val = entry["val_loss"]
        self.schedule.observe(entry["epoch"] - 1, entry["loss"] if val is None else val)

    def get_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        assert self.state is not None
        arrays = {f"opt.{k}": v for k, v in self.state.to_arrays().items()}
        return arrays, {"schedule": self.schedule.to_dict(), "lr_scale": self.lr_scale}

    def set_state(self, arrays: dict[str, Array], meta: dict[str, Any]) -> None:
        self.state = OptimizerState.from_arrays(
            {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")})
        # a schedule instance rebuilds as its own class (a user subclass need not be
        # registered, and may share its parent's name)
        kind = type(self.schedule) if self.given_schedule else Schedule
        self.schedule = kind.from_dict(meta["schedule"])
        self.lr_scale = meta["lr_scale"]
        self._restored = True

    def continue_from(self, previous: Solver | None) -> None:
        if isinstance(previous, MiniBatch):
            self.state = previous.state

    def release(self) -> None:
        for name in ("_bufs", "_gsum", "_backprop", "_mask", "_sobolev", "_derivatives"):
            self.__dict__.pop(name, None)
        if self.state is not None:  # scratch only: rebuilt by the next prepare()
            self.state.grad = self.state.tmp = None


def gather_rows(rows: Array, arrays: tuple[Array, Array, Array | None],
                bufs: tuple[Array, Array, Array | None]) -> tuple[Array, Array, Array | None]:
    """``a[rows]`` of each array into the head of its reusable buffer (no new array).

    ``mode="clip"``: the rows are a permutation's, always in range; np.take's default
    mode buffers its output. Where :func:`jacnet.accel.enabled`, a compiled loop copies
    the rows of the matrices (the same bytes; docs/architecture.md, "Compiled kernels").
    """
    m = rows.shape[0]
    compiled = accel.enabled() and rows.dtype == np.intp
    out: list[Array | None] = []
    for a, b in zip(arrays, bufs, strict=True):
        if a is None or b is None:
            out.append(None)
        elif (compiled and a.ndim == 2 and accel.fits(a, b) and a.shape[0] > 0
              and b.shape[0] >= m and b.shape[1:] == a.shape[1:]):
            _gather_kernel(a, rows, b)
            out.append(b[:m])
        else:
            out.append(np.take(a, rows, axis=0, out=b[:m], mode="clip"))
    return out[0], out[1], out[2]  # type: ignore[return-value]


@accel.kernel()
def _gather_kernel(A: Array, rows: Array, out: Array) -> None:
    """``out[i] = A[rows[i]]``, each row clipped into range as np.take's ``mode="clip"``."""
    last = A.shape[0] - 1
    for i in range(rows.shape[0]):
        r = min(max(rows[i], 0), last)
        for j in range(A.shape[1]):
            out[i, j] = A[r, j]


class MiniBatchSGD(MiniBatch):
    """Mini-batch epochs with :class:`jacnet.optimizers.SGD`."""

    name = "sgd"


class MiniBatchAdam(MiniBatch):
    """Mini-batch epochs with :class:`jacnet.optimizers.Adam`."""

    name = "adam"


class MiniBatchAdamW(MiniBatch):
    """Mini-batch epochs with :class:`jacnet.optimizers.AdamW`."""

    name = "adamw"


class MiniBatchRMSprop(MiniBatch):
    """Mini-batch epochs with :class:`jacnet.optimizers.RMSprop`."""

    name = "rmsprop"
