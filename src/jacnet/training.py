"""One training loop for every solver: mini-batch optimizers, L-BFGS and Levenberg-Marquardt.

``train(net, X, T, solver=..., ...)`` divides the data (optionally), runs epochs, keeps a
:class:`~jacnet.record.TrainingRecord`, stops early on validation failures, guards against
non-finite losses, writes checkpoints and shows progress. Every random choice comes from
one ``numpy.random.Generator`` seeded by ``seed``: the same seed and data give a
bit-identical theta, and resuming from a checkpoint gives the theta of an uninterrupted
run (mini-batch solvers and LM; L-BFGS restarts its curvature memory on resume).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
from scipy import optimize

from .checkpoint import load_checkpoint, save_checkpoint
from .losses import LOSSES, Loss, get_loss
from .network import Network
from .objective import Objective
from .optimizers import OPTIMIZERS, Optimizer, get_optimizer
from .record import TrainingRecord
from .schedules import SCHEDULES, Schedule, get_schedule
from .solvers import LevenbergMarquardt
from .validation import as_weights, positive_int

Array = np.ndarray
Callback = Callable[[dict[str, Any], Network], Any]

__all__ = ["TrainConfig", "train", "SOLVERS"]

_SCIPY_FTOL = 2.220446049250313e-09  # scipy's default relative-reduction tolerance

#: Every solver ``train`` accepts: the mini-batch optimizers, then the full-batch ones.
SOLVERS: tuple[str, ...] = (*OPTIMIZERS, "lbfgs", "lm")


@dataclass
class TrainConfig:
    """Settings of :func:`train` (validated up front by :meth:`validate`).

    Levenberg-Marquardt's defaults are MATLAB trainlm's (mu=1e-3, mu_dec=0.1, mu_inc=10,
    mu_max=1e10, max_fail=6, min_grad=1e-7).
    """

    solver: str = "lm"
    loss: str | Loss = "mse"
    max_epochs: int = 1000
    batch_size: int | None = 32  # None: the whole training set in one batch
    lr: float = 1e-3
    schedule: str | Schedule = "constant"
    schedule_options: dict[str, Any] = field(default_factory=dict)
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.0  # L2 penalty alpha/2 ||W||^2 on weights, not biases
    clip_norm: float | None = None
    shuffle: bool = True
    seed: int | None = None
    validation_fraction: float = 0.0
    test_fraction: float = 0.0
    early_stopping: bool = True  # stop on validation failures (when there is validation data)
    max_fail: int = 6
    restore_best: bool = True
    n_iter_no_change: int | None = None  # stop when the training loss stalls (no validation)
    tol: float = 0.0
    goal: float = 0.0
    min_grad: float = 1e-7
    time_limit: float | None = None
    mu: float = 1e-3
    mu_dec: float = 0.1
    mu_inc: float = 10.0
    mu_max: float = 1e10
    max_fun: int = 15000
    chunk: int | None = None
    max_retries: int = 5
    checkpoint: str | None = None
    checkpoint_every: int = 10
    verbose: bool = False

    def validate(self) -> TrainConfig:
        """Raise ValueError/TypeError naming the first bad setting; return self."""
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; valid solvers: {', '.join(SOLVERS)}")
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid names: {', '.join(LOSSES)}")
        if isinstance(self.schedule, str) and self.schedule not in SCHEDULES:
            valid = ", ".join(SCHEDULES)
            raise ValueError(f"unknown schedule {self.schedule!r}; valid names: {valid}")
        positive_int(self.max_epochs, "max_epochs", minimum=0)
        if self.batch_size is not None:
            positive_int(self.batch_size, "batch_size")
        for name in ("lr", "mu", "mu_max", "checkpoint_every", "max_fun"):
            _check(name, getattr(self, name), lambda v: v > 0, "a positive number")
        for name in ("alpha", "tol", "goal", "min_grad"):
            _check(name, getattr(self, name), lambda v: v >= 0, "a non-negative number")
        _check("mu_dec", self.mu_dec, lambda v: 0 < v < 1, "a number in (0, 1)")
        _check("mu_inc", self.mu_inc, lambda v: v > 1, "a number > 1")
        for name in ("validation_fraction", "test_fraction"):
            _check(name, getattr(self, name), lambda v: v == 0 or 0 < v < 1,
                   "0 (none) or a fraction in (0, 1)")
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                "validation_fraction + test_fraction must be < 1 to leave training data, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        for name in ("clip_norm", "time_limit"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, lambda v: v > 0, "a positive number or None")
        positive_int(self.max_fail, "max_fail")
        positive_int(self.max_retries, "max_retries", minimum=0)
        if self.n_iter_no_change is not None:
            positive_int(self.n_iter_no_change, "n_iter_no_change")
        if self.chunk is not None:
            positive_int(self.chunk, "chunk")
        return self


def _check(name: str, value: Any, ok: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if math.isnan(value) or not ok(float(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _divide(n: int, cfg: TrainConfig, rng: np.random.Generator) -> dict[str, Array]:
    """Random train/validation/test indices (trainlm's dividerand), or all for training."""
    if not (cfg.validation_fraction or cfg.test_fraction):
        return {"train": np.arange(n)}
    perm = rng.permutation(n)
    n_val = max(1, round(n * cfg.validation_fraction)) if cfg.validation_fraction else 0
    n_test = max(1, round(n * cfg.test_fraction)) if cfg.test_fraction else 0
    if n - n_val - n_test < 1:
        raise ValueError(f"too few samples ({n}) to divide into train/validation/test")
    out = {"train": np.sort(perm[n_val + n_test :])}
    if n_val:
        out["validation"] = np.sort(perm[:n_val])
    if n_test:
        out["test"] = np.sort(perm[n_val : n_val + n_test])
    return out


def _rows(idx: Array, X: Array, T: Array, w: Array | None) -> tuple[Array, Array, Array | None]:
    """``(X[idx], T[idx], w[idx])``; the arrays themselves when ``idx`` is every row in
    order (no division): training only reads them, and a copy of a large data set costs
    as much as an epoch's shuffle."""
    if idx.shape[0] == X.shape[0] and np.array_equal(idx, np.arange(X.shape[0])):
        return X, T, w
    return X[idx], T[idx], None if w is None else w[idx]


class _Run:
    """The state of one training run; ``epoch_end`` is the bookkeeping of every solver."""

    def __init__(self, net: Network, cfg: TrainConfig, loss: Loss, sets: dict[str, tuple],
                 record: TrainingRecord, callbacks: Sequence[Callback]) -> None:
        self.net, self.cfg, self.loss, self.sets, self.record = net, cfg, loss, sets, record
        self.callbacks = callbacks
        self.has_val = "validation" in sets
        self.best_score = math.inf
        self.best_theta: Array | None = None
        self.fails = 0
        self.t0 = time.perf_counter() - record.seconds
        self.progress: Any = None
        self.task: Any = None
        self.carry: dict[str, Any] = {}
        self.validation_data_rows: int | None = None  # rows of an explicit validation set

    def objective(self) -> Objective:
        """The full-batch objective on the training set (``jacnet.distributed`` overrides it)."""
        X, T, w = self.sets["train"]
        return Objective(self.net, X, T, self.loss, w, self.cfg.alpha, self.cfg.chunk)

    def set_loss(self, name: str) -> float | None:
        if name not in self.sets:
            return None
        X, T, w = self.sets[name]
        return self.net.evaluate(X, T, self.loss, w)[0]

    def epoch_end(self, loss: float, grad_norm: float, **extra: Any) -> str | None:
        """Record an epoch; return a stop reason or None."""
        cfg, rec = self.cfg, self.record
        epoch = rec.n_epochs + 1
        entry = {"epoch": epoch, "loss": float(loss), "val_loss": self.set_loss("validation"),
                 "test_loss": self.set_loss("test"), "grad_norm": float(grad_norm), **extra,
                 "seconds": time.perf_counter() - self.t0}
        rec.epochs.append(entry)
        rec.seconds = entry["seconds"]
        score = entry["val_loss"] if self.has_val else entry["loss"]
        # Only an improvement by more than tol resets the failure count, but any strict
        # improvement is the new best (scikit-learn's rule): the weights kept are those of
        # the lowest score seen, never an earlier epoch's that merely cleared tol.
        self.fails = 0 if score < self.best_score - cfg.tol else self.fails + 1
        if score < self.best_score:
            self.best_score = score
            rec.best_epoch, rec.best_loss = epoch, float(loss)
            rec.best_val_loss = entry["val_loss"]
            if self.has_val:
                self.best_theta = self.net.get_flat()
        self._show(entry)
        if any([bool(cb(entry, self.net)) for cb in self.callbacks]):
            return "callback"
        reason = self.settled(entry)
        if reason is None and cfg.time_limit is not None and entry["seconds"] >= cfg.time_limit:
            return "time_limit"
        return reason

    def settled(self, entry: dict[str, Any]) -> str | None:
        """The stop reason that epoch ``entry`` (the last recorded) gives under this
        run's settings, from the optimisation's own state: also asked on resume, where a
        checkpoint of the epoch that ended a run resumes as that run, while changed
        settings (a lower goal, more patience) train on."""
        cfg = self.cfg
        if cfg.goal and entry["loss"] <= cfg.goal:
            return "goal"
        if entry["grad_norm"] < cfg.min_grad:
            return "min_grad"
        if self.has_val and cfg.early_stopping and self.fails >= cfg.max_fail:
            return "validation"
        if not self.has_val and cfg.n_iter_no_change and self.fails >= cfg.n_iter_no_change:
            return "no_improvement"
        return None

    def _show(self, entry: dict[str, Any]) -> None:
        if self.progress is None:
            return
        step = entry.get("mu", entry.get("lr"))
        val = "-" if entry["val_loss"] is None else f"{entry['val_loss']:.4g}"
        self.progress.update(self.task, advance=1, loss=f"{entry['loss']:.4g}", val=val,
                             step=f"{step:.2g}" if step is not None else "-")


def train(
    net: Network,
    X: Any,
    T: Any,
    config: TrainConfig | None = None,
    *,
    sample_weight: Any = None,
    validation_data: tuple[Any, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    resume: str | None = None,
    carry: dict[str, Any] | None = None,
    **options: Any,
) -> TrainingRecord:
    """Train ``net`` in place on ``(X, T)`` and return the training record.

    Parameters
    ----------
    net : Network
    X : array-like of shape (N, n_in)
    T : array-like of shape (N, n_out)
    config : TrainConfig, optional
        Settings; keyword ``options`` override its fields (``solver="adam"``, ``lr=...``).
    sample_weight : array-like of shape (N,), optional
    validation_data : (X_val, T_val), optional
        An explicit validation set (instead of ``validation_fraction``).
    callbacks : sequence of callables ``cb(epoch_entry, net)``
        Called at each epoch's end; a truthy return stops training ("callback").
    resume : path, optional
        A checkpoint written by an earlier run with the same settings and data, and the
        same ``validation_data`` (or none, if that run had none).
    carry : dict, optional
        Solver state carried from one call to the next (``partial_fit``, warm starts):
        read when present, written back at the end (optimizer state, LM's mu).

    Returns
    -------
    TrainingRecord
    """
    unknown = set(options) - {f.name for f in fields(TrainConfig)}
    if unknown:
        valid = ", ".join(f.name for f in fields(TrainConfig))
        raise TypeError(f"unknown training option(s) {sorted(unknown)}; valid options: {valid}")
    cfg = replace(config or TrainConfig(), **options).validate()
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jacnet.Network, got {type(net).__name__}")
    loss = get_loss(cfg.loss)
    X = net.check_X(X)
    T = net.check_T(T, X.shape[0])
    w = as_weights(sample_weight, X.shape[0], net.dtype)
    rng = np.random.default_rng(cfg.seed)
    record = TrainingRecord(solver=cfg.solver)
    saved: tuple[dict[str, Array], dict[str, Any]] | None = None
    if resume is not None:
        saved = load_checkpoint(resume)
        record = TrainingRecord.from_dict(saved[1]["record"])
        if record.solver != cfg.solver:
            raise ValueError(
                f"resume: the checkpoint is of solver {record.solver!r}, not {cfg.solver!r}"
            )
        rng.bit_generator.state = saved[1]["rng"]
        division = record.division
        n_div = sum(len(idx) for idx in division.values())
        if n_div != X.shape[0] or any(len(i) and i.max() >= X.shape[0] for i in division.values()):
            raise ValueError(f"resume: the checkpoint divided {n_div} rows into its sets, the "
                             f"data has {X.shape[0]}: resume on the data it was trained on")
    else:
        division = _divide(X.shape[0], cfg, rng)
        record.division = division
    sets = {name: _rows(idx, X, T, w) for name, idx in division.items()}
    val_rows = None
    if validation_data is not None:
        Xv = net.check_X(validation_data[0], "validation_data[0]")
        sets["validation"] = (Xv, net.check_T(validation_data[1], Xv.shape[0],
                                              "validation_data[1]"), None)
        val_rows = Xv.shape[0]
    if saved is not None:
        _check_resumed_validation(saved[1], val_rows)
    run = _Run(net, cfg, loss, sets, record, callbacks)
    run.validation_data_rows = val_rows
    run.carry = {} if carry is None else carry
    theta_given = net.get_flat()
    try:
        reason = None
        if saved is not None:
            arrays, meta = saved
            net.set_flat(arrays["theta"])
            run.best_theta = arrays.get("best_theta")
            run.best_score, run.fails = meta["best_score"], meta["fails"]
            # a checkpoint of the epoch that ended the run, under the same settings: over
            reason = run.settled(record.epochs[-1]) if record.epochs else None
            if reason is not None:
                _carry_from_checkpoint(run.carry, arrays, meta)
        elif run.has_val:  # the initial weights are the first candidate (trainlm's epoch 0)
            initial = run.set_loss("validation")
            if initial is not None and math.isfinite(initial):
                run.best_score, run.best_theta = initial, net.get_flat()
                record.best_val_loss = initial
        reason = reason or _run_solver(run, rng, saved)
    except BaseException:
        if saved is not None and record.n_epochs == len(saved[1]["record"]["epochs"]):
            net.set_flat(theta_given)  # the resume failed before any epoch: as it was given
        raise
    record.stop_reason = reason or "max_epochs"
    if run.has_val and cfg.restore_best and run.best_theta is not None:
        net.set_flat(run.best_theta)
    return record


def _check_resumed_validation(meta: dict[str, Any], rows: int | None) -> None:
    """A resumed run gets the explicit validation set it was trained with, or none if it had
    none: without it, its validation failures would count as training-loss stalls, and
    its best weights would be compared with scores of other data. (Checkpoints written
    before this was recorded are not checked.)"""
    if "validation_data_rows" not in meta or meta["validation_data_rows"] == rows:
        return
    was = meta["validation_data_rows"]
    given = "none" if rows is None else f"{rows} rows"
    if was is None:
        raise ValueError("resume: the checkpoint's run had no validation_data; resume it "
                         f"without one (got {given})")
    raise ValueError(f"resume: the checkpoint's run had validation_data of {was} rows; pass "
                     f"the same validation_data again (got {given})")


def _run_solver(run: _Run, rng: np.random.Generator, saved: Any) -> str | None:
    """Run the configured solver on ``run`` (with a progress bar when verbose); the stop
    reason, or None when the epoch budget ran out."""
    cfg = run.cfg
    solver = {"lm": _train_lm, "lbfgs": _train_lbfgs}.get(cfg.solver, _train_gradient)
    if solver is not _train_gradient:  # it moves theta: an optimizer's moments go stale
        run.carry.pop("optimizer", None)
    if cfg.verbose:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"),
                   TextColumn("loss {task.fields[loss]} val {task.fields[val]}"),
                   TextColumn("lr/mu {task.fields[step]}"), TimeRemainingColumn())
        with Progress(*columns, transient=False) as progress:
            run.progress = progress
            run.task = progress.add_task(cfg.solver, total=cfg.max_epochs,
                                         completed=run.record.n_epochs, loss="-", val="-", step="-")
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                reason = solver(run, rng, saved)
    else:
        # Overflow is handled (restore, smaller step, a stop reason): no warnings for it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            reason = solver(run, rng, saved)
    return reason


def _carry_from_checkpoint(carry: dict[str, Any], arrays: dict[str, Array],
                          meta: dict[str, Any]) -> None:
    """What a solver would have carried out of the run the checkpoint ended (for a warm
    start that follows): the optimizer's state, or LM's mu."""
    state = _optimizer_arrays(arrays)
    if state:
        carry["optimizer"] = state
    if "mu" in meta:
        carry["mu"] = meta["mu"]


def _optimizer_arrays(arrays: dict[str, Array]) -> dict[str, Array]:
    """The optimizer state's arrays among a checkpoint's (saved with the prefix ``opt.``)."""
    return {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}


def _checkpoint(run: _Run, rng: np.random.Generator, arrays: dict[str, Array],
                meta: dict[str, Any]) -> None:
    cfg = run.cfg
    if cfg.checkpoint is None or run.record.n_epochs % cfg.checkpoint_every:
        return
    arrays = {"theta": run.net.get_flat(), **arrays}
    if run.best_theta is not None:
        arrays["best_theta"] = run.best_theta
    meta = {"record": run.record.to_dict(), "rng": rng.bit_generator.state,
            "best_score": run.best_score, "fails": run.fails, "config": _jsonable(cfg),
            "validation_data_rows": run.validation_data_rows, **meta}
    save_checkpoint(cfg.checkpoint, arrays, meta)


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
            for k, v in asdict(cfg).items()}


def _train_gradient(run: _Run, rng: np.random.Generator, saved: Any) -> str | None:
    """Mini-batch epochs with an optimizer's update rule."""
    cfg = run.cfg
    net = run.net
    opt = get_optimizer(cfg.solver, lr=cfg.lr, alpha=cfg.alpha, clip_norm=cfg.clip_norm,
                        **cfg.optimizer_options)
    schedule = (cfg.schedule if isinstance(cfg.schedule, Schedule)  # used as it is
                else get_schedule(cfg.schedule, lr=cfg.lr, **cfg.schedule_options))
    state = opt.init([net.theta], decay_mask=[net.weight_mask()])
    lr_scale = 1.0
    if saved is not None:
        arrays, meta = saved
        state = opt.state_from_arrays(_optimizer_arrays(arrays))
        # a schedule instance rebuilds as its own class (a user subclass need not be
        # registered, and may share its parent's name)
        kind = type(cfg.schedule) if isinstance(cfg.schedule, Schedule) else Schedule
        schedule = kind.from_dict(meta["schedule"])
        lr_scale = meta["lr_scale"]
    elif "optimizer" in run.carry:
        carried = opt.state_from_arrays(run.carry["optimizer"])
        # a warm start continues the state; another optimizer (or momentum) starts afresh
        if set(carried.buffers) == set(opt._buffer_names()):
            state = carried
    reason, state = _gradient_epochs(run, rng, opt, state, schedule, lr_scale)
    run.carry["optimizer"] = state.to_arrays()
    return reason


def _gradient_epochs(run: _Run, rng: np.random.Generator, opt: Any, state: Any,
                     schedule: Schedule, lr_scale: float) -> tuple[str | None, Any]:
    """The epochs of :func:`_train_gradient`; returns the stop reason and the final state."""
    net, cfg, loss = run.net, run.cfg, run.loss
    X, T, w = run.sets["train"]
    n = X.shape[0]
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    params = [net.theta]
    mask = net.weight_mask() if cfg.alpha else None
    # Each shuffled batch is gathered into one small buffer that every batch reuses, and
    # backprop reads it while it is still in cache. Copying the whole shuffled epoch
    # into a second data-sized array first cost the page faults of a fresh array as
    # large as the data on every call (60000 x 784 float32: 188 MB), for no gain.
    Xb, Tb = np.empty((bs,) + X.shape[1:], X.dtype), np.empty((bs,) + T.shape[1:], T.dtype)
    wb = None if w is None else np.empty(bs, w.dtype)
    gsum = np.empty(net.n_params, dtype=net.dtype)
    # The fast paths (each equal to the general one, tests prove it): backprop into
    # buffers reused by every batch, and the optimizer's update checked once per epoch.
    backprop = net.backprop(loss, bs)
    grad, grads = backprop.grad, [backprop.grad]
    checked_once = type(opt).update is Optimizer.update
    retries = 0
    # A retried epoch keeps its index: epochs are counted by the record, not by attempts.
    while (epoch := run.record.n_epochs) < cfg.max_epochs:
        lr = schedule.lr_at(epoch) * lr_scale
        theta0, state0 = net.get_flat(), state.to_arrays()
        order = rng.permutation(n) if cfg.shuffle else None
        total = 0.0
        gsum[...] = 0
        step = opt.update
        if checked_once:
            lr = opt._check_update(params, grads, state, lr)
            step = opt._step
        mean = loss.mean_over_samples
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            if order is None:
                batch = X[start:stop], T[start:stop], None if w is None else w[start:stop]
            else:
                batch = _gather(order[start:stop], (X, T, w), (Xb, Tb, wb))
            value = backprop(*batch)
            if not math.isfinite(value):
                break
            total += value * ((stop - start) / n if mean else 1.0)
            gsum += grad
            step(params, grads, state, lr)
        else:
            if np.isfinite(net.theta).all():
                retries = 0
                if mask is not None:
                    total += 0.5 * cfg.alpha * float(np.vdot(net.theta * mask, net.theta))
                n_batches = -(-n // bs)
                reason = run.epoch_end(total, float(np.linalg.norm(gsum)) / n_batches, lr=lr)
                val = run.record.epochs[-1]["val_loss"]
                schedule.observe(epoch, total if val is None else val)
                _checkpoint(run, rng, {f"opt.{k}": v for k, v in state.to_arrays().items()},
                            {"schedule": schedule.to_dict(), "lr_scale": lr_scale})
                if reason:
                    return reason, state
                continue
        # A non-finite loss or theta: restore the epoch's start, halve the step, retry.
        net.set_flat(theta0)
        state = opt.state_from_arrays(state0)
        retries += 1
        lr_scale *= 0.5
        if retries > cfg.max_retries:
            return "non_finite", state
    return None, state


def _gather(rows: Array, arrays: tuple[Array, Array, Array | None],
            bufs: tuple[Array, Array, Array | None]) -> tuple[Array, Array, Array | None]:
    """``a[rows]`` of each array into the head of its reusable buffer (no new array).

    ``mode="clip"``: the rows are a permutation's, always in range; np.take's default
    mode buffers its output and took three times as long.
    """
    m = rows.shape[0]
    out = [
        None if a is None or b is None else np.take(a, rows, axis=0, out=b[:m], mode="clip")
        for a, b in zip(arrays, bufs, strict=True)
    ]
    return out[0], out[1], out[2]  # type: ignore[return-value]


def _train_lm(run: _Run, rng: np.random.Generator, saved: Any) -> str | None:
    """Levenberg-Marquardt epochs (trainlm)."""
    cfg = run.cfg
    obj = run.objective()
    lm = LevenbergMarquardt(obj, cfg.mu, cfg.mu_dec, cfg.mu_inc, cfg.mu_max, cfg.chunk)
    if saved is not None:
        lm.mu = saved[1]["mu"]
    elif "mu" in run.carry:
        lm.mu = run.carry["mu"]
    try:
        if _goal_met_at_start(run, lm.value):  # the first step reuses lm's value
            return "goal"
        for _ in range(run.record.n_epochs, cfg.max_epochs):
            step = lm.step(cfg.min_grad)
            if not step.accepted and step.trials == 0 and step.grad_norm < cfg.min_grad:
                run.epoch_end(step.loss, step.grad_norm, mu=step.mu)
                return "min_grad"
            if not step.accepted:  # no mu up to mu_max lowers the loss, or it is NaN/inf
                lm.mu = min(lm.mu, cfg.mu_max)  # a later call (partial_fit) may try again
                return "mu_max" if math.isfinite(step.loss) else "non_finite"
            reason = run.epoch_end(step.loss, step.grad_norm, mu=step.mu)
            _checkpoint(run, rng, {}, {"mu": lm.mu})
            if reason:
                return reason
        return None
    finally:
        run.carry["mu"] = lm.mu


def _goal_met_at_start(run: _Run, value: Callable[[], tuple[float, Any]]) -> bool:
    """trainlm's check at epoch 0: the weights given already meet ``goal`` (no step);
    ``value()`` gives the loss there (and only runs when there is a goal to check)."""
    return bool(run.cfg.goal) and run.record.n_epochs == 0 and value()[0] <= run.cfg.goal


def _train_lbfgs(run: _Run, rng: np.random.Generator, saved: Any) -> str | None:
    """Full-batch L-BFGS through scipy's L-BFGS-B on the flat theta, exact gradients."""
    net, cfg = run.net, run.cfg
    obj = run.objective()
    if _goal_met_at_start(run, obj.value):
        return "goal"
    last: dict[str, Any] = {}
    stop: list[str] = []

    def fun(theta: Array) -> tuple[float, Array]:
        net.theta[...] = theta
        value, grad = obj.value_and_grad()
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            return math.inf, np.zeros_like(theta)
        last["x"], last["g"] = theta.copy(), grad.astype(np.float64)
        return value, last["g"]

    def callback(intermediate_result: optimize.OptimizeResult) -> None:
        x = intermediate_result.x
        net.theta[...] = x
        same = "x" in last and np.array_equal(last["x"], x)
        g = last["g"] if same else obj.value_and_grad()[1]
        reason = run.epoch_end(float(intermediate_result.fun), float(np.linalg.norm(g)))
        _checkpoint(run, rng, {}, {})
        if reason:
            stop.append(reason)
            raise StopIteration

    remaining = cfg.max_epochs - run.record.n_epochs
    if remaining <= 0:
        return None
    res = optimize.minimize(
        fun, net.get_flat().astype(np.float64), jac=True, method="L-BFGS-B", callback=callback,
        options={"maxiter": remaining, "maxfun": cfg.max_fun, "gtol": cfg.min_grad,
                 "ftol": cfg.tol or _SCIPY_FTOL},
    )
    if stop:
        return stop[0]
    if np.isfinite(res.x).all():
        net.theta[...] = res.x
    if not math.isfinite(res.fun):  # fun's inf with a zero gradient reads as "converged"
        return "non_finite"
    message = str(res.message).upper()
    if res.status == 0:
        return "converged"
    if "ITERATIONS" in message:
        return "max_epochs"
    if "EVALUATIONS" in message:
        return "max_fun"
    return "line_search"
