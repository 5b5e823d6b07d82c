"""The training loop: division, epochs, record, stop rules, progress and checkpoints.

``train(net, X, T, solver=..., ...)`` divides the data (optionally), lets a solver
(:mod:`jacnet.solvers`) run epochs, records each, asks the stop rules
(:mod:`jacnet.stopping`) after each, writes checkpoints and shows progress. Its keyword
options are routed by name: the loop's own settings (:class:`LoopSettings`), the stop
rules' (:func:`jacnet.stopping.stop_rules`), and the named solver's constructor
settings; anything else is a TypeError that lists the valid options.

Every random choice comes from one ``numpy.random.Generator`` seeded by ``seed``: the
same seed and data give a bit-identical theta, and resuming from a checkpoint gives the
theta of an uninterrupted run (mini-batch solvers and LM; L-BFGS restarts its curvature
memory on resume).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from . import division
from .bayesian import BayesianRegularization
from .checkpoint import RunState, check_resume, load_run, save_run
from .losses import Loss, get_loss
from .minibatch import MiniBatch, MiniBatchAdam, MiniBatchAdamW, MiniBatchRMSprop, MiniBatchSGD
from .network import Network
from .objective import Objective
from .progress import Progress
from .record import TrainingRecord
from .registry import Registry
from .sobolev import (
    SobolevData,
    SobolevObjective,
    check_derivatives,
    check_second_order,
    sobolev_loss,
)
from .solvers import LBFGS, LevenbergMarquardt, Solver
from .stopping import StopRule, stop_rules
from .validation import as_weights, check_int, check_real

Array = np.ndarray
Callback = Callable[[dict[str, Any], Network], Any]
#: ``factory(net, X, T, loss, w, alpha, chunk) -> Objective``: the full-batch objective
#: on the training set (``jacnet.distributed`` passes its data-parallel one).
ObjectiveFactory = Callable[..., Objective]

__all__ = ["LoopSettings", "Run", "train", "configure", "finish", "SOLVERS", "STOCHASTIC"]

#: Every solver ``train`` accepts by name: the mini-batch rules, then the full-batch
#: solvers. Estimators, the command line and the docs take their lists from it.
SOLVERS: Registry[Solver] = Registry(
    "solver", Solver,
    (MiniBatchSGD, MiniBatchAdam, MiniBatchAdamW, MiniBatchRMSprop, LBFGS, LevenbergMarquardt,
     BayesianRegularization))

#: The names of the mini-batch (stochastic) solvers.
STOCHASTIC: tuple[str, ...] = tuple(n for n, c in SOLVERS.items() if issubclass(c, MiniBatch))

_RULE_OPTIONS = tuple(k for k in inspect.signature(stop_rules).parameters
                      if k not in ("max_epochs", "validation"))


@dataclass
class LoopSettings:
    """The settings of the loop itself (the solver holds its own, the stop rules theirs).

    ``alpha``: L2 penalty ``alpha/2 ||W||^2`` on weights, not biases (part of the
    objective every solver minimises). ``validation_fraction``/``test_fraction``:
    trainlm's ``dividerand``. ``restore_best``: end with the weights of the lowest
    validation loss. ``checkpoint``/``checkpoint_every``: a file written every K epochs.
    """

    loss: str | Loss = "mse"
    alpha: float = 0.0
    max_epochs: int = 1000
    seed: int | None = None
    validation_fraction: float = 0.0
    test_fraction: float = 0.0
    restore_best: bool = True
    checkpoint: str | None = None
    checkpoint_every: int = 10
    verbose: bool = False
    derivative_weight: float = 1.0

    def validate(self) -> LoopSettings:
        """Raise ValueError/TypeError naming the first bad setting; return self."""
        get_loss(self.loss)
        check_int(self.max_epochs, "max_epochs", 0)
        check_real(self.alpha, "alpha", "a non-negative number", lambda v: v >= 0)
        check_int(self.checkpoint_every, "checkpoint_every")
        check_real(self.derivative_weight, "derivative_weight", "a non-negative number",
                   lambda v: v >= 0)
        for name in ("validation_fraction", "test_fraction"):
            check_real(getattr(self, name), name, "0 (none) or a fraction in (0, 1)",
                       lambda v: v == 0 or 0 < v < 1)
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                "validation_fraction + test_fraction must be < 1 to leave training data, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        return self


def configure(solver: str | Solver, options: dict[str, Any]
              ) -> tuple[Solver, LoopSettings, dict[str, Any]]:
    """Route ``train``'s keyword ``options``: ``(solver, loop settings, rule options)``.

    Loop settings go to :class:`LoopSettings`, stop-rule settings to
    :func:`~jacnet.stopping.stop_rules` (returned as a dict, built once the run knows
    whether it has validation data), the rest to the named solver's constructor (its
    :meth:`~jacnet.solvers.Solver.settings`). A setting of another solver, or of none,
    is a TypeError naming it; with a solver instance no solver setting is accepted.
    """
    loop_names = {f.name for f in fields(LoopSettings)}
    loop = LoopSettings(**{k: v for k, v in options.items() if k in loop_names}).validate()
    rules = {k: v for k, v in options.items() if k in _RULE_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in loop_names and k not in rules}
    if isinstance(solver, Solver):
        if rest:
            raise TypeError(f"solver settings {sorted(rest)} given with a solver instance "
                            f"({solver!r}); set them on the instance")
        return solver, loop, rules
    cls = SOLVERS.get_class(solver) if isinstance(solver, str) else None
    if cls is None:
        SOLVERS.create(solver)  # the registry's error: unknown name, or not a Solver
    assert cls is not None
    unknown = sorted(set(rest) - set(cls.settings()))
    if unknown:
        owners = {k: [n for n, c in SOLVERS.items() if k in c.settings()] for k in unknown}
        where = "; ".join(f"{k!r} is a setting of {', '.join(v)}" for k, v in owners.items()
                          if v)
        valid = ", ".join([*sorted(loop_names), *_RULE_OPTIONS, *cls.settings()])
        raise TypeError(f"unknown option(s) {unknown} for solver {solver!r}"
                        + (f" ({where})" if where else "") + f"; valid options: {valid}")
    return SOLVERS.create(solver, **rest), loop, rules


def _divide(n: int, loop: LoopSettings, rng: np.random.Generator) -> dict[str, Array]:
    """Random train/validation/test indices (trainlm's dividerand,
    :func:`jacnet.division.permutation`), or all for training; a part of no rows is left
    out."""
    if not (loop.validation_fraction or loop.test_fraction):
        return {"train": np.arange(n)}
    _, n_val, n_test = division.sizes(n, loop.validation_fraction, loop.test_fraction)
    parts = division.permutation(n, n_val, n_test, rng)
    return {name: rows for name, rows in parts.items() if name == "train" or len(rows)}


def _rows(idx: Array, X: Array, T: Array, w: Array | None) -> tuple[Array, Array, Array | None]:
    """``(X[idx], T[idx], w[idx])``; the arrays themselves when ``idx`` is every row in
    order (no division): training only reads them, and a copy of a large data set costs
    as much as an epoch's shuffle."""
    if idx.shape[0] == X.shape[0] and np.array_equal(idx, np.arange(X.shape[0])):
        return X, T, w
    return X[idx], T[idx], None if w is None else w[idx]


class Run:
    """One training run: what the solver sees of the loop, and every epoch's bookkeeping.

    Parameters
    ----------
    net : Network
    solver : Solver
    loop : LoopSettings
    rules : list of StopRule
        Asked in order after each epoch; the first that fires names the stop reason.
    sets : dict of str to (X, T, w)
        ``"train"``, and optionally ``"validation"`` and ``"test"``.
    record : TrainingRecord
    rng : numpy.random.Generator
    callbacks : sequence of callables ``cb(entry, net)``
        Called after each epoch; a truthy return stops training ("callback").
    objective : callable, optional
        ``factory(net, X, T, loss, w, alpha, chunk)``; default :class:`Objective`.
    rule_options : dict, optional
        The stop-rule options the rules were built from: solvers read ``min_grad`` and
        ``tol`` from them too (see :mod:`jacnet.stopping`).
    derivatives : dict of str to SobolevData, optional
        Derivative data of the sets that have it (the rows of ``dTdX`` in each part):
        the training set's objective and the sets' losses then include their residuals.
    """

    def __init__(self, net: Network, solver: Solver, loop: LoopSettings,
                 rules: Sequence[StopRule], sets: dict[str, tuple], record: TrainingRecord,
                 rng: np.random.Generator, callbacks: Sequence[Callback] = (),
                 objective: ObjectiveFactory | None = None,
                 rule_options: dict[str, Any] | None = None,
                 derivatives: dict[str, SobolevData] | None = None) -> None:
        self.net, self.solver, self.loop, self.rules = net, solver, loop, list(rules)
        self.sets, self.record, self.rng, self.callbacks = sets, record, rng, callbacks
        self.loss = get_loss(loop.loss)
        self.alpha, self.max_epochs = loop.alpha, loop.max_epochs
        defaults = inspect.signature(stop_rules).parameters
        given = rule_options or {}
        self.min_grad, self.tol = (given.get(k, defaults[k].default) for k in ("min_grad", "tol"))
        self.objective_factory = objective or Objective
        self.derivatives = derivatives or {}
        self.has_val = "validation" in sets
        self.initial_val_loss: float | None = None
        self.best_score = math.inf
        self.best_theta: Array | None = None
        self.t0 = time.perf_counter() - record.seconds
        self.progress: Progress | None = None
        self.validation_data_rows: int | None = None  # rows of an explicit validation set

    @property
    def train_set(self) -> tuple[Array, Array, Array | None]:
        return self.sets["train"]

    def objective(self, chunk: int | None = None) -> Objective:
        """The full-batch objective on the training set (``chunk``: rows per forward pass)."""
        X, T, w = self.sets["train"]
        data = self.derivatives.get("train")
        if data is None:
            return self.objective_factory(self.net, X, T, self.loss, w, self.alpha, chunk)
        if self.objective_factory is not Objective:
            raise ValueError("derivative data (dTdX) needs the in-memory objective; this run "
                             f"builds its own ({self.objective_factory!r})")
        return SobolevObjective(self.net, X, T, self.loss, w, self.alpha, chunk, data=data)

    def set_loss(self, name: str) -> float | None:
        if name not in self.sets:
            return None
        X, T, w = self.sets[name]
        if name in self.derivatives:
            return sobolev_loss(self.net, X, T, self.loss, w, self.derivatives[name])
        return self.net.evaluate(X, T, self.loss, w)[0]

    def end_epoch(self, result: Any) -> str | None:
        """Record a solver's epoch (an ``EpochResult``); the stop reason or None."""
        rec = self.record
        epoch = rec.n_epochs + 1
        entry = {"epoch": epoch, "loss": float(result.loss),
                 "val_loss": self.set_loss("validation"), "test_loss": self.set_loss("test"),
                 "grad_norm": float(result.grad_norm), **result.extra,
                 "seconds": time.perf_counter() - self.t0}
        rec.epochs.append(entry)
        rec.seconds = entry["seconds"]
        self._keep_best(entry)
        if self.progress is not None:
            self.progress.update(entry)
        stop = any([bool(cb(entry, self.net)) for cb in self.callbacks])
        for rule in self.rules:  # after the callbacks, which may add to the entry
            rule.observe(entry)
        reason = "callback" if stop else self.fired(entry)
        self.solver.after_epoch(entry)
        if self.loop.checkpoint is not None and rec.n_epochs % self.loop.checkpoint_every == 0:
            save_run(self.loop.checkpoint, self.state())
        return reason

    def fired(self, entry: dict[str, Any]) -> str | None:
        """The reason of the first stop rule that fires after ``entry``, or None."""
        return next((rule.reason for rule in self.rules if rule.fired(entry)), None)

    def _keep_best(self, entry: dict[str, Any]) -> None:
        """The record's best epoch, and with validation data its weights (any strict
        improvement of the validation loss; of the training loss without)."""
        score = entry["val_loss"] if self.has_val else entry["loss"]
        if score < self.best_score:
            self.best_score = score
            rec = self.record
            rec.best_epoch, rec.best_loss = entry["epoch"], entry["loss"]
            rec.best_val_loss = entry["val_loss"]
            if self.has_val:
                self.best_theta = self.net.get_flat()

    def state(self) -> RunState:
        """What a checkpoint keeps of this run."""
        arrays, meta = self.solver.get_state()
        settings = {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                    for k, v in asdict(self.loop).items()}
        return RunState(
            theta=self.net.get_flat(), record=self.record,
            rng=dict(self.rng.bit_generator.state), best_theta=self.best_theta,
            best_score=self.best_score, solver_arrays=arrays, solver_meta=meta,
            rules={type(r).__name__: s for r in self.rules if (s := r.get_state())},
            validation_data_rows=self.validation_data_rows,
            settings={**settings, "solver": repr(self.solver)},
        )

    def restore(self, saved: RunState) -> None:
        """Continue from a checkpoint (checked by :func:`jacnet.checkpoint.check_resume`)."""
        self.net.set_flat(saved.theta)
        self.rng.bit_generator.state = saved.rng
        self.best_theta, self.best_score = saved.best_theta, saved.best_score
        self.solver.set_state(saved.solver_arrays, saved.solver_meta)
        for rule in self.rules:
            if type(rule).__name__ in saved.rules:
                rule.set_state(saved.rules[type(rule).__name__])

    def execute(self, resumed: bool = False) -> str:
        """Start the solver and run it until a stop reason, which it returns. A resumed
        run whose last epoch already meets a stop rule (the epoch that ended it, under the
        same settings) is over at once, unless its solver goes on from that stop
        (:meth:`Solver.ended`); a fresh one may be over before its first epoch
        (trainlm's goal test at epoch 0, a budget of 0 epochs)."""
        self.solver.start(self)
        try:
            return self._execute(resumed)
        finally:
            self.solver.release()

    def _execute(self, resumed: bool) -> str:
        if resumed and self.record.epochs:
            reason = self.fired(self.record.epochs[-1])
            if reason is not None and not self.solver.ended(self, reason):
                reason = None  # the solver goes on from that stop (br's collapse guard)
        else:
            if self.has_val:  # the initial weights are the first candidate (epoch 0)
                initial = self.initial_val_loss = self.set_loss("validation")
                if initial is not None and math.isfinite(initial):
                    self.best_score, self.best_theta = initial, self.net.get_flat()
                    self.record.best_val_loss = initial
            reason = next((rule.reason for rule in self.rules if rule.start(self)), None)
        if reason is not None:
            return reason
        # Overflow is handled (restore, smaller step, a stop reason): no warnings for it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if not self.loop.verbose:
                return self.solver.run(self)
            with Progress(self.max_epochs, self.record.n_epochs) as self.progress:
                return self.solver.run(self)


def train(
    net: Network,
    X: Any,
    T: Any,
    solver: str | Solver = "lm",
    *,
    sample_weight: Any = None,
    validation_data: tuple[Any, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    stop: Sequence[StopRule] = (),
    resume: str | None = None,
    dTdX: Any = None,
    **options: Any,
) -> TrainingRecord:
    """Train ``net`` in place on ``(X, T)`` and return the training record.

    Parameters
    ----------
    net : Network
    X : array-like of shape (N, n_in)
    T : array-like of shape (N, n_out)
    solver : str or Solver, default="lm"
        A name in ``SOLVERS`` (its settings given as keywords) or a solver object. An
        object keeps its state from one call to the next (a warm start).
    sample_weight : array-like of shape (N,), optional
    validation_data : (X_val, T_val), optional
        An explicit validation set (instead of ``validation_fraction``).
    callbacks : sequence of callables ``cb(epoch_entry, net)``
        Called at each epoch's end; a truthy return stops training ("callback").
    stop : sequence of StopRule
        Rules asked before the built-in ones (see :mod:`jacnet.stopping`).
    resume : path, optional
        A checkpoint written by an earlier run with the same settings and data, and the
        same ``validation_data`` (or none, if that run had none).
    dTdX : array-like of shape (N, n_out, n_in) or (N, n_in), optional
        Derivative data: ``dTdX[s, i, d]`` the target of ``dy_i/dx_d`` at sample s (the
        second form for one output); NaN where not observed (left out of the sums). The
        objective is then the sum of squares of ``[y - t ; lambda (dy/dx - g)]``, lambda
        the option ``derivative_weight`` (``mse`` divides it by the samples' total weight,
        as without derivatives). Needs ``loss`` ``sse`` or ``mse``, an activation with the
        second-order term in every layer (see :mod:`jacnet.sobolev`); with ``br`` its
        ``N_e`` counts the observed derivatives too, and ``noise`` must be ``"shared"``
        (one ``beta`` for values and derivatives). A division by ``validation_fraction``
        splits it with the rows; an explicit ``validation_data`` has values only.
    **options
        Loop settings (:class:`LoopSettings`: ``loss``, ``alpha``, ``max_epochs``,
        ``seed``, ``validation_fraction``, ...), stop-rule settings (``goal``,
        ``min_grad``, ``early_stopping``, ``max_fail``, ``n_iter_no_change``, ``tol``,
        ``time_limit``) and the named solver's settings (``lr``, ``batch_size``, ``mu``, ...).

    Returns
    -------
    TrainingRecord
    """
    solver, loop, rule_options = configure(solver, options)
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jacnet.Network, got {type(net).__name__}")
    X = net.check_X(X)
    T = net.check_T(T, X.shape[0])
    w = as_weights(sample_weight, X.shape[0], net.dtype)
    rng = np.random.default_rng(loop.seed)
    saved = None if resume is None else load_run(resume)
    if saved is not None:
        record = saved.record
        division = record.division
    else:
        record = TrainingRecord(solver=solver.name)
        division = record.division = _divide(X.shape[0], loop, rng)
    val = None
    if validation_data is not None:
        Xv = net.check_X(validation_data[0], "validation_data[0]")
        val = (Xv, net.check_T(validation_data[1], Xv.shape[0], "validation_data[1]"), None)
    val_rows = None if val is None else val[0].shape[0]
    if saved is not None:
        check_resume(saved, solver.name, X.shape[0], val_rows)
    sets = {name: _rows(idx, X, T, w) for name, idx in division.items()}
    derivatives = _derivatives(dTdX, net, X.shape[0], solver, loop, division)
    if val is not None:
        sets["validation"] = val
    rules = [*stop, *stop_rules(max_epochs=loop.max_epochs, validation="validation" in sets,
                                **rule_options)]
    run = Run(net, solver, loop, rules, sets, record, rng, callbacks,
              rule_options=rule_options, derivatives=derivatives)
    run.validation_data_rows = val_rows
    theta_given = net.get_flat()
    try:
        if saved is not None:
            run.restore(saved)
        reason = run.execute(resumed=saved is not None)
    except BaseException:
        if saved is not None and record.n_epochs == len(saved.record.epochs):
            net.set_flat(theta_given)  # the resume failed before any epoch: as it was given
        raise
    return finish(run, reason)


def _derivatives(dTdX: Any, net: Network, n_rows: int, solver: Solver, loop: LoopSettings,
                 division: dict[str, Array]) -> dict[str, SobolevData]:
    """``dTdX`` checked and divided like the rows (empty without it)."""
    if dTdX is None:
        return {}
    G = check_derivatives(dTdX, net, n_rows)
    loss = get_loss(loop.loss)
    if not loss.sum_of_squares:
        raise ValueError(f"dTdX needs a sum-of-squares loss ('sse' or 'mse'), got "
                         f"loss={loss.name!r}")
    if isinstance(solver, BayesianRegularization) and solver.noise == "per_output" \
            and net.n_out > 1:
        raise ValueError("dTdX with solver 'br' needs noise='shared' (one beta for the "
                         "values and the derivatives), got noise='per_output'")
    check_second_order(net)
    every = np.arange(n_rows)
    return {name: SobolevData(G if np.array_equal(idx, every) else G[idx],
                              loop.derivative_weight)
            for name, idx in division.items()}


def finish(run: Run, reason: str) -> TrainingRecord:
    """Close a run: its stop reason into the record, the best weights back (when kept)."""
    run.record.stop_reason = reason
    if run.has_val and run.loop.restore_best and run.best_theta is not None:
        run.net.set_flat(run.best_theta)
    return run.record
