"""Bayesian regularization: MATLAB's ``trainbr`` (MacKay 1992; Foresee & Hagan 1997) on the
exact Gauss-Newton matrix, with per-output noise and per-layer weight precisions, and the
collapse guard.

:class:`BayesianRegularization` is Levenberg-Marquardt on ``F = beta E_D + alpha E_W``
with ``alpha`` and ``beta`` re-estimated after every accepted step. The model, the
evidence, MacKay's fixed point and why each epoch factors by Cholesky are derived in
:mod:`jacnet.evidence`, which holds the curvature, its factor and the posterior
(:class:`~jacnet.evidence.Laplace`) that this solver iterates on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .evidence import (
    WEIGHT_GROUPS,
    Curvature,
    PerOutputNoise,
    SharedNoise,
    counted_rows,
    parameter_groups,
)
from .sobolev import SobolevObjective
from .solvers import EpochResult, Solver
from .validation import check_choice, check_int, check_real

Array = np.ndarray

__all__ = ["BayesianRegularization", "COLLAPSE_GAMMA", "COLLAPSE_FIT", "RESTART_ALPHA"]

_MU_MIN = 1e-20  # trainbr's floor on mu
#: The collapse guard (:class:`BayesianRegularization`, ``restart``): a run has collapsed
#: when gamma < COLLAPSE_GAMMA * P while E_D >= (1 - COLLAPSE_FIT) * E_D of the zero
#: network (theta = 0: a constant prediction); the restart's prior precision is
#: RESTART_ALPHA times trainbr's start value.
COLLAPSE_GAMMA = 0.01
COLLAPSE_FIT = 0.01
RESTART_ALPHA = 0.01
NOISE_MODELS = ("shared", "per_output")


@dataclass
class _Collapse:
    """The end of a trajectory that collapsed (gamma -> 0): what the collapse guard
    returns to when its restart ends with a lower evidence."""

    theta: Array
    alpha: Array
    beta: Array
    gamma: float
    log_evidence: float
    mu: float
    loss: float
    grad_norm: float
    reason: str
    entry: dict[str, Any] = field(default_factory=dict)

    def to_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """For a checkpoint: the weights as an array, the rest JSON-serialisable."""
        return {"collapse_theta": self.theta}, {
            "alpha": [float(x) for x in self.alpha], "beta": [float(x) for x in self.beta],
            "gamma": self.gamma, "log_evidence": self.log_evidence, "mu": self.mu,
            "loss": self.loss, "grad_norm": self.grad_norm, "reason": self.reason,
            "entry": self.entry}

    @classmethod
    def from_state(cls, arrays: dict[str, Array], meta: dict[str, Any]) -> _Collapse:
        return cls(np.array(arrays["collapse_theta"]), np.array(meta["alpha"], float),
                   np.array(meta["beta"], float), float(meta["gamma"]),
                   float(meta["log_evidence"]), float(meta["mu"]), float(meta["loss"]),
                   float(meta["grad_norm"]), str(meta["reason"]), dict(meta["entry"]))


#: the stop reasons after which the collapse guard may restart (the solver converged) or
#: return to the collapsed state (the restart converged, ran out of epochs or diverged)
_CONVERGED = ("min_grad", "mu_max")
_JUDGED = ("min_grad", "mu_max", "max_epochs", "non_finite")


class BayesianRegularization(Solver):
    """MATLAB's ``trainbr``: Levenberg-Marquardt on ``F = beta E_D + alpha E_W`` with
    ``alpha`` and ``beta`` re-estimated from the data after every accepted step.

    The solver ``"br"`` (losses ``"sse"`` and ``"mse"`` only: ``E_D`` is the sum of
    squared errors over outputs and samples either way; the loss names what the record's
    ``loss`` shows). ``E_W = ||theta||^2`` over ALL parameters, biases included, as in
    trainbr; the loop's ``alpha`` must stay 0 (the solver finds its own). One epoch:

    - ``d = -(beta J^T J + (mu + alpha) I)^-1 (beta J^T e + alpha theta)``; accepted when
      ``F`` falls (``mu <- max(mu mu_dec, 1e-20)``), else ``mu <- mu mu_inc`` and again,
      until ``mu > mu_max`` (stop reason ``mu_max``);
    - with ``J^T J`` at the new theta: ``gamma = P - alpha tr[(beta J^T J + alpha I)^-1]``,
      ``alpha = gamma / (2 E_W)``, ``beta = (N_e - gamma) / (2 E_D)``.

    It starts from ``gamma = P``, ``beta = (N_e - P) / (2 E_D)`` (1 if ``E_D = 0`` or that
    is <= 0), ``alpha = P / (2 E_W)``. As trainlm, a gradient norm (of ``F``: ``||2 (beta
    J^T e + alpha theta)||``) below ``min_grad`` tries no step; no validation stopping
    unless validation data are given. The record's epochs hold ``mu``, ``gamma`` (the
    effective number of parameters), ``alpha``, ``beta``, ``E_D``, ``E_W`` and
    ``log_evidence`` (after the update, at the new theta). See the module docstring for
    the model, the derivation and the eigendecomposition behind every solve.

    With derivative data (``dTdX`` in :func:`jacnet.train`) the derivative residuals
    ``lambda (dy/dx - g)`` join ``E_D`` and ``J`` with the same ``beta``, and ``N_e``
    counts the observed derivatives as well as the target values (``noise="shared"``).

    **The collapse guard** (``restart=True``). trainbr's start (``gamma = P``, so ``beta``
    from ``N_e - P``) regularises hard when ``N_e`` is not much above ``P``, and the
    iteration can fall to the evidence's degenerate maximum ``theta = 0``: gamma -> 0, a
    constant prediction. That point is a fixed point (no curvature is left to pull gamma
    up) and, on data with a signal, of far lower evidence than a fit; tracking the
    evidence per epoch cannot help, since along the collapsing trajectory it rises to the
    collapse. So when a trajectory converges (stop ``min_grad`` or ``mu_max``) collapsed,
    ``gamma < COLLAPSE_GAMMA P`` with ``E_D >= (1 - COLLAPSE_FIT)`` times the zero
    network's, and at least two epochs of the budget are left, the run restarts once from
    the weights it started from, with MacKay's start: ``alpha_l = RESTART_ALPHA P_l / (2
    E_W,l)`` (a weak prior), ``beta_k = N_k / (2 E_D,k)`` (the noise from the fit), mu
    the setting's. The first epoch after it carries ``"restart": "collapse"`` in the
    record. The restart keeps the budget's last epoch back: when it ends (converged, out of
    epochs or diverged) with a lower log evidence than the collapsed state, that state is
    restored and recorded as one more epoch with ``"restart": "reverted"`` (its values
    repeated), so the evidence decides and the record's last entry always describes the
    weights kept. A run that ends collapsed still (or with no room to restart) warns with
    a ``ConvergenceWarning``. A run that does not collapse is not touched.

    Parameters
    ----------
    mu, mu_dec, mu_inc, mu_max : float
        trainbr's defaults 0.005, 0.1, 10, 1e10.
    noise : {"shared", "per_output"}
        One ``beta`` for all outputs (trainbr), or one per output (``beta`` and ``E_D``
        in the record are then lists; in-memory data only).
    weight_groups : {"single", "per_layer"}
        One ``alpha`` (trainbr), or one per layer for its ``W`` and ``b`` together
        (MacKay's groups; ``alpha`` and ``E_W`` in the record are then lists).
    chunk : int, optional
        Rows per block of the streamed Gauss-Newton sums.
    restart : bool, default True
        The collapse guard (above); False: trainbr's iteration only (the warning stays).

    Attributes
    ----------
    alpha, beta : ndarray or None
        The current precisions, (L,) and (K,); kept from one call to the next.
    gamma, log_evidence : float or None
        Of the last epoch.
    """

    name = "br"
    #: the solver models Gaussian noise on real-valued targets: no classification
    regression_only: ClassVar[bool] = True

    def __init__(self, mu: float = 0.005, mu_dec: float = 0.1, mu_inc: float = 10.0,
                 mu_max: float = 1e10, noise: str = "shared", weight_groups: str = "single",
                 chunk: int | None = None, restart: bool = True) -> None:
        self.mu = check_real(mu, "mu", "a positive number", lambda x: x > 0)
        self.mu_dec = check_real(mu_dec, "mu_dec", "a number in (0, 1)", lambda x: 0 < x < 1)
        self.mu_inc = check_real(mu_inc, "mu_inc", "a number > 1", lambda x: x > 1)
        self.mu_max = check_real(mu_max, "mu_max", "a positive number", lambda x: x > 0)
        self.noise = check_choice(noise, "noise", NOISE_MODELS)
        self.weight_groups = check_choice(weight_groups, "weight_groups", WEIGHT_GROUPS)
        self.chunk = None if chunk is None else check_int(chunk, "chunk")
        if not isinstance(restart, (bool, np.bool_)):
            raise TypeError(f"restart must be a bool, got {type(restart).__name__}")
        self.restart = bool(restart)
        self._mu_start = self.mu  # the guard's restart begins from the setting
        self.alpha: Array | None = None
        self.beta: Array | None = None
        self.gamma: float | None = None
        self.log_evidence: float | None = None
        self._theta0: Array | None = None  # the weights this call started from
        self._collapse: _Collapse | None = None  # set once the guard has restarted
        self._resumed = False
        self._note: str | None = None  # the next record entry's "restart" field
        self._last_grad = math.nan
        self._stopped: str | None = None  # a resumed run's last stop (see ended)
        self._release()

    def _release(self) -> None:
        self._data: Any = None
        self._curv: Curvature | None = None
        self._loss = math.nan
        self._state: Any = None
        self._work: Array | None = None  # the (P, P) buffer of every factorisation

    # ------------------------------------------------- the solver protocol
    def start(self, run: Any) -> None:
        if not run.loss.sum_of_squares:
            raise ValueError(f"loss must be 'sse' or 'mse' for solver 'br' (it models "
                             f"Gaussian noise), got loss={run.loss.name!r}")
        if run.alpha:
            raise ValueError(f"alpha must be 0 with solver 'br', which finds its own weight "
                             f"precision from the data; got alpha={run.alpha!r}")
        T = run.train_set[1]
        self._groups = parameter_groups(run.net, self.weight_groups)
        per_output = self.noise == "per_output" and T.shape[1] > 1
        self._data = PerOutputNoise(run) if per_output else self._shared(run)
        shape = (int(self._groups.max()) + 1, T.shape[1] if per_output else 1)
        if self.alpha is None or self.beta is None or (self.alpha.size, self.beta.size) != shape:
            self.alpha = self.beta = None  # trainbr's start values at the first epoch
        self._net = run.net
        self._work = np.empty((run.net.n_params,) * 2, order="F")
        if not self._resumed or self._theta0 is None:
            self._theta0 = run.net.get_flat().astype(float)
            self._collapse = None
        self._resumed = False

    def _shared(self, run: Any) -> SharedNoise:
        """One noise block on the run's objective. ``N_e``: the target values (trainbr),
        plus the observed derivatives with derivative data (:class:`SobolevObjective`:
        their residuals share ``beta`` with the values')."""
        X, T, w = run.train_set
        objective = run.objective(self.chunk)
        if isinstance(objective, SobolevObjective):
            return SharedNoise(objective, objective.n_weighted)
        return SharedNoise(objective, counted_rows(X, w) * T.shape[1])

    def start_loss(self) -> float | None:
        self._loss, self._state = self._data.evaluate()
        return self._loss

    def epoch(self, run: Any) -> EpochResult:
        """One trainbr iteration (see the class docstring); the stop reason ``mu_max``
        when no mu up to mu_max lowers F, ``non_finite`` when the loss is not finite."""
        if self._curv is None and not self._begin():
            return EpochResult(self._loss, math.nan, stop="non_finite")
        curv = self._curv
        assert curv is not None
        assert self.alpha is not None and self.beta is not None
        g = curv.half_gradient(self.alpha, self.beta)
        grad_norm = 2.0 * math.sqrt(float(g @ g))
        if grad_norm < run.min_grad:
            return EpochResult(self._loss, grad_norm, self._entry())
        if not self._trials(curv, g):
            self.mu = min(self.mu, self.mu_max)  # a later call may try again
            return EpochResult(self._loss, grad_norm,
                               stop="mu_max" if math.isfinite(self._loss) else "non_finite")
        self._update()
        return EpochResult(self._loss, grad_norm, self._entry())

    def _begin(self) -> bool:
        """The curvature at the start (and trainbr's start values on a fresh run); False
        when the loss there is not finite."""
        if not math.isfinite(self._loss):
            self.start_loss()
        if not math.isfinite(self._loss):
            return False
        curv = self._curv = self._data.curvature(self._loss, self._state, self._groups,
                                                 self.chunk)
        if self.alpha is None or self.beta is None:
            restarted = self._collapse is not None
            self.alpha, self.beta = (curv.restart_values(RESTART_ALPHA) if restarted
                                     else curv.start_values())
            self.gamma = float(curv.P_l.sum())
        self.log_evidence = curv.log_evidence(curv.factor(self.alpha, self.beta, self._work),
                                              self.alpha, self.beta)
        return True

    def _trials(self, curv: Curvature, g: Array) -> bool:
        """Levenberg-Marquardt's mu trials on F from ``curv.theta``; whether one was
        accepted (the network then holds it; else ``curv.theta`` again)."""
        alpha, beta, net = self.alpha, self.beta, self._net
        assert alpha is not None and beta is not None
        F = curv.objective(alpha, beta)
        while self.mu <= self.mu_max:
            d = curv.step(alpha, beta, self.mu, g, self._work)
            if d is None:  # not numerically positive definite: a failed trial (trainlm)
                self.mu *= self.mu_inc
                continue
            net.theta[...] = curv.theta + d
            loss, state = self._data.evaluate()
            E_W = np.bincount(self._groups, net.theta.astype(float) ** 2,
                              minlength=alpha.size)
            F_new = float(beta @ self._data.energies(loss, state) + alpha @ E_W)
            if math.isfinite(F_new) and F_new < F and np.isfinite(d).all():
                self._loss, self._state = loss, state
                self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                return True
            self.mu *= self.mu_inc
        net.theta[...] = curv.theta
        return False

    def _update(self) -> None:
        """MacKay's update with the curvature at the new theta (the trace of ``H^-1`` at
        the old precisions), then the evidence (``log det H`` at the new ones)."""
        assert self.alpha is not None and self.beta is not None
        curv = self._curv = self._data.curvature(self._loss, self._state, self._groups,
                                                 self.chunk)
        before = curv.factor(self.alpha, self.beta, self._work)
        self.alpha, self.beta, self.gamma = curv.updated(before, self.alpha, self.beta)
        after = curv.factor(self.alpha, self.beta, self._work)  # before is done with it
        self.log_evidence = curv.log_evidence(after, self.alpha, self.beta)

    def _entry(self) -> dict[str, Any]:
        """The solver's fields of the epoch's record entry."""
        curv = self._curv
        assert curv is not None and self.alpha is not None and self.beta is not None

        def listed(v: Array) -> float | list[float]:
            return float(v[0]) if v.size == 1 else [float(x) for x in v]

        entry: dict[str, Any] = {"mu": self.mu, "gamma": self.gamma, "alpha": listed(self.alpha),
                                 "beta": listed(self.beta), "E_D": listed(curv.E_D),
                                 "E_W": listed(curv.E_W), "log_evidence": self.log_evidence}
        if self._note is not None:
            entry["restart"], self._note = self._note, None
        return entry

    # ------------------------------------------------- the collapse guard
    def run(self, run: Any) -> str:
        """Epochs until a stop reason, with the collapse guard (see the class docstring):
        the trajectory; if it converged collapsed with epochs left, the restart (the
        budget's last epoch kept back) and the choice by evidence; that reason."""
        if self._collapse is None:
            reason = self._resumed_stop(run) or self._epochs(run, run.max_epochs)
            if not self._restart_due(run, reason):
                return self._end(run, reason)
            self._collapse = self._snapshot(reason)
            self._net.theta[...] = self._theta0
            self.alpha = self.beta = self._curv = None  # restart_values at the next epoch
            self.mu, self._loss, self._note = self._mu_start, math.nan, "collapse"
        return self._end(run, self._choose(run, self._epochs(run, run.max_epochs - 1)))

    def _epochs(self, run: Any, last: int) -> str:
        """:meth:`Solver.run`'s loop, ending with ``max_epochs`` at epoch ``last`` at the
        latest (the loop's own rule ends it at the budget)."""
        while run.record.n_epochs < last:
            result = self.epoch(run)
            self._last_grad = result.grad_norm
            reason = result.stop or run.end_epoch(result)
            if reason:
                return reason
        return "max_epochs"

    def ended(self, run: Any, reason: str) -> bool:
        """A resumed run whose checkpoint holds the epoch that ended a collapsed
        trajectory goes on to the restart, as the uninterrupted run did (the curvature at
        the checkpoint's weights first: the collapse test and the snapshot read it)."""
        if self._collapse is not None or not self.restart or reason not in _CONVERGED:
            return True
        if self._curv is None and not self._begin():
            return True
        if not self._restart_due(run, reason):
            return True
        self._stopped = reason
        return False

    def _resumed_stop(self, run: Any) -> str | None:
        """The stop that :meth:`ended` kept, once, with the last epoch's gradient norm
        (which :meth:`_snapshot` records)."""
        reason, self._stopped = self._stopped, None
        if reason is not None:
            self._last_grad = float(run.record.epochs[-1]["grad_norm"])
        return reason

    def _restart_due(self, run: Any, reason: str) -> bool:
        return (self.restart and reason in _CONVERGED
                and run.record.n_epochs + 2 <= run.max_epochs and self._collapsed(run))

    def _collapsed(self, run: Any) -> bool:
        """Whether the state of the last record entry has collapsed: ``gamma <
        COLLAPSE_GAMMA P`` while ``E_D`` is at least ``1 - COLLAPSE_FIT`` of the zero
        network's (evaluated only when gamma is that small)."""
        last = run.record.epochs[-1] if run.record.epochs else {}
        if last.get("gamma") is None or last["gamma"] >= COLLAPSE_GAMMA * self._net.n_params:
            return False
        return float(np.sum(last["E_D"])) >= (1.0 - COLLAPSE_FIT) * self._zero_energy()

    def _zero_energy(self) -> float:
        """``E_D`` of the network at theta = 0 (a constant prediction, no derivative)."""
        net = self._net
        theta = net.get_flat()
        net.theta[...] = 0
        try:
            loss, state = self._data.evaluate()
            return float(self._data.energies(loss, state).sum())
        finally:
            net.theta[...] = theta
            self._loss, self._state = self._data.evaluate()  # the objective's state again

    def _snapshot(self, reason: str) -> _Collapse:
        assert self.alpha is not None and self.beta is not None and self.gamma is not None
        assert self.log_evidence is not None
        return _Collapse(self._net.get_flat().astype(float), self.alpha.copy(),
                         self.beta.copy(), self.gamma, self.log_evidence, self.mu,
                         self._loss, self._last_grad, reason, self._entry())

    def _choose(self, run: Any, reason: str) -> str:
        """After the restart's trajectory: keep it (and run the epoch kept back), or, when
        it ended with a lower evidence than the collapsed state, return to that state,
        recorded as an epoch; the stop reason."""
        c = self._collapse
        assert c is not None
        # lower by more than rounding (two collapsed states tie: the later one stays)
        lower = not (self.log_evidence is not None and self.log_evidence
                     >= c.log_evidence - 1e-9 * max(1.0, abs(c.log_evidence)))
        if not (lower and reason in _JUDGED):
            if reason == "max_epochs" and run.record.n_epochs < run.max_epochs:
                return self._epochs(run, run.max_epochs)  # the epoch kept back
            return reason
        self._net.theta[...] = c.theta
        self.alpha, self.beta, self.gamma = c.alpha, c.beta, c.gamma
        self.log_evidence, self.mu = c.log_evidence, c.mu
        self._curv, self._loss = None, math.nan  # a later call begins at the state again
        result = EpochResult(c.loss, c.grad_norm, {**c.entry, "restart": "reverted"})
        return run.end_epoch(result) or c.reason

    def _end(self, run: Any, reason: str) -> str:
        """The stop reason, after a ``ConvergenceWarning`` if the kept state collapsed."""
        if self._collapsed(run):
            last = run.record.epochs[-1]
            c = self._collapse
            if c is None:
                why = ("restart=False" if not self.restart else
                       "the run did not converge" if reason not in _CONVERGED else
                       "fewer than two epochs of the budget were left")
                tried = f"No restart was tried ({why})."
            elif last.get("restart") == "reverted":
                tried = (f"A restart from the initial weights with a weak prior ended with "
                         f"a lower log evidence than the collapsed state's "
                         f"({c.log_evidence:.6g}) and was set aside.")
            else:
                tried = "A restart from the initial weights with a weak prior collapsed too."
            # scikit-learn's category, the one users filter; imported here, as jacnet's
            # import does not load scikit-learn
            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(
                f"solver 'br' ended collapsed: gamma = {last['gamma']:.3g} effective "
                f"parameters of {self._net.n_params}, the weights near zero and the "
                f"prediction nearly constant. {tried} The data may hold no signal this "
                "network can fit; more rows, fewer hidden units or other initial weights "
                "may help.", ConvergenceWarning, stacklevel=2)
        return reason

    def release(self) -> None:
        self._release()

    def get_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        def listed(v: Array | None) -> list[float] | None:
            return None if v is None else [float(x) for x in v]

        arrays: dict[str, Array] = {}
        meta: dict[str, Any] = {
            "mu": self.mu, "alpha": listed(self.alpha), "beta": listed(self.beta),
            "gamma": self.gamma, "log_evidence": self.log_evidence, "collapse": None}
        if self._theta0 is not None:
            arrays["theta0"] = self._theta0
        if self._collapse is not None:
            more, meta["collapse"] = self._collapse.to_state()
            arrays.update(more)
        return arrays, meta

    def set_state(self, arrays: dict[str, Array], meta: dict[str, Any]) -> None:
        self.mu, self.gamma = meta["mu"], meta.get("gamma")
        self.log_evidence = meta.get("log_evidence")
        self.alpha = None if meta.get("alpha") is None else np.array(meta["alpha"], float)
        self.beta = None if meta.get("beta") is None else np.array(meta["beta"], float)
        theta0 = arrays.get("theta0")  # a checkpoint older than the guard has none
        self._theta0 = None if theta0 is None else np.array(theta0, dtype=float)
        collapse = meta.get("collapse")
        self._collapse = None if collapse is None else _Collapse.from_state(arrays, collapse)
        self._resumed = True

    def continue_from(self, previous: Solver | None) -> None:
        if (isinstance(previous, BayesianRegularization) and previous.noise == self.noise
                and previous.weight_groups == self.weight_groups):
            self.mu, self.gamma = previous.mu, previous.gamma
            self.alpha, self.beta = previous.alpha, previous.beta

