"""Solvers that own their settings, behind one protocol (:class:`Solver`, :class:`EpochResult`):
here the full-batch ones, Levenberg-Marquardt on exact Jacobians and L-BFGS (the
mini-batch ones are in :mod:`jacnet.minibatch`; ``jacnet.training.SOLVERS`` names all).

Levenberg-Marquardt follows MATLAB's ``trainlm``: each iteration forms ``J^T J`` and
``J^T e`` (here streamed over chunks of samples by ``gauss_newton``), solves

    (J^T H J + mu I) d = -J^T g

by Cholesky, and accepts ``d`` only when the loss falls: then ``mu *= mu_dec``,
otherwise ``mu *= mu_inc`` and it tries again, up to ``mu_max``. For squared errors
``H`` holds the sample weights and ``g = H e`` (``e = y - t``), which is trainlm's system;
for cross-entropy it is the generalised Gauss-Newton model of the loss (see
``Loss.gauss_newton_terms``). When ``N * n_out < P`` the same step is solved in the dual
form ``(A A^T + mu I) a = -r``, ``d = A^T a`` with ``A = H^(1/2) J``, ``r = H^(-1/2) g``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import optimize

from .objective import Objective
from .validation import check_int, check_real

Array = np.ndarray

__all__ = [
    "LevenbergMarquardt",
    "LMStep",
    "EpochResult",
    "Solver",
    "LBFGS",
]

_MU_MIN = 1e-20  # trainlm's floor on mu


class EpochResult:
    """What one epoch of a solver gives the training loop.

    ``loss`` is the training objective at the epoch's end (L2 term included), ``grad_norm``
    the norm of its gradient, ``extra`` the solver's own record fields (``{"lr": ...}``,
    ``{"mu": ...}``). ``stop`` is a solver's own stop reason (``"mu_max"``,
    ``"non_finite"``): then the epoch failed and is not recorded.
    """

    __slots__ = ("loss", "grad_norm", "extra", "stop")

    def __init__(self, loss: float, grad_norm: float, extra: dict[str, Any] | None = None,
                 stop: str | None = None) -> None:
        self.loss, self.grad_norm, self.extra, self.stop = loss, grad_norm, extra or {}, stop


class Solver:
    """The protocol of every solver: an object that holds its own settings and state.

    The training loop (:class:`jacnet.training.Run`) calls :meth:`start` once per
    :func:`jacnet.train` call, then :meth:`run`, which by default asks :meth:`epoch` for
    one epoch after another and hands each to ``run.end_epoch`` until that gives a stop
    reason. A solver whose iterations are driven by another library (L-BFGS) overrides
    :meth:`run` instead. ``run`` offers ``net``, ``loss``, ``alpha``, ``rng``,
    ``record``, ``train_set`` ``(X, T, w)``, ``objective(chunk)``, ``min_grad``, ``tol``,
    ``max_epochs`` and ``end_epoch(result)``.

    State that outlives a call (Adam's moments, LM's ``mu``) stays in the object: train
    the same object again, or :meth:`continue_from` an earlier one, to warm-start.
    """

    name: ClassVar[str] = ""

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The keyword settings of the constructor (what ``train(solver=name, ...)`` routes
        to it)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params
                     if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def start(self, run: Any) -> None:
        """Prepare for a run (bind the data, build buffers, keep restored state)."""

    def start_loss(self) -> float | None:
        """The objective at the initial weights when the solver evaluates it before its
        first step anyway (trainlm's goal test at epoch 0), else None."""
        return None

    def epoch(self, run: Any) -> EpochResult:
        """One epoch at the network's current weights."""
        raise NotImplementedError(f"{type(self).__name__} implements run(), not epoch()")

    def outputs_on(self, X: Array) -> Array | None:
        """The network's outputs on the rows ``X`` at its current weights when the solver
        holds them from its own work on those very rows (an epoch callback then needs no
        forward pass of its own), else None."""
        return None

    def run(self, run: Any) -> str:
        """Epochs until ``run.end_epoch`` or the solver gives a stop reason; that reason."""
        while True:
            result = self.epoch(run)
            reason = result.stop or run.end_epoch(result)
            if reason:
                return reason

    def ended(self, run: Any, reason: str) -> bool:
        """Whether a resumed run, whose last recorded epoch met the stop rule ``reason``,
        is over. True here; a solver with more to do after such a stop (``br``'s collapse
        guard restarts after a collapsed trajectory converges) says False, and its
        :meth:`run` then begins with that stop."""
        return True

    def after_epoch(self, entry: dict[str, Any]) -> None:
        """Called with each recorded epoch, before the checkpoint (schedules observe it)."""

    def release(self) -> None:
        """Let go of what :meth:`start` bound (the data, buffers) once the run is over;
        the state that carries to the next call stays."""

    def get_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """The state a checkpoint keeps: named arrays and a JSON-serialisable dict."""
        return {}, {}

    def set_state(self, arrays: dict[str, Array], meta: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s output (on resume, before :meth:`start`)."""

    def continue_from(self, previous: Solver | None) -> None:
        """Take over the state of ``previous``, the solver of the last call on the same
        network, where it still applies (a warm start); otherwise start afresh."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.settings()
                         if hasattr(self, k))
        return f"{type(self).__name__}({args})"


@dataclass
class LMStep:
    """Outcome of one Levenberg-Marquardt iteration."""

    loss: float
    grad_norm: float
    mu: float
    accepted: bool
    trials: int


class LevenbergMarquardt(Solver):
    """trainlm's iteration on an :class:`Objective`; ``mu`` persists across iterations.

    The solver ``"lm"``: MATLAB trainlm's defaults. ``mu`` carries from one epoch to the
    next, and from one :func:`jacnet.train` call to the next when the same object (or one
    that :meth:`continue_from` it) trains again. ``chunk``: rows per block of the streamed
    Gauss-Newton system and of the loss's forward pass (None: chosen to bound memory).
    Standalone use: ``LevenbergMarquardt(mu=...).bind(objective).step()``.
    """

    name = "lm"

    def __init__(
        self,
        mu: float = 1e-3,
        mu_dec: float = 0.1,
        mu_inc: float = 10.0,
        mu_max: float = 1e10,
        chunk: int | None = None,
    ) -> None:
        self.mu = check_real(mu, "mu", "a positive number", lambda x: x > 0)
        self.mu_dec = check_real(mu_dec, "mu_dec", "a number in (0, 1)", lambda x: 0 < x < 1)
        self.mu_inc = check_real(mu_inc, "mu_inc", "a number > 1", lambda x: x > 1)
        self.mu_max = check_real(mu_max, "mu_max", "a positive number", lambda x: x > 0)
        self.chunk = None if chunk is None else check_int(chunk, "chunk")
        self.obj: Any = None
        self._current: tuple[float, Any] | None = None
        self._current_theta: Array | None = None  # the weights _current was evaluated at

    def bind(self, objective: Objective) -> LevenbergMarquardt:
        """Iterate on ``objective`` from now on (its network's current weights); returns self."""
        self.obj = objective
        self._current = None
        return self

    def step(self, min_grad: float = 0.0) -> LMStep:
        """One iteration: build the system once, try mu until the loss falls or mu_max.

        As trainlm, a gradient norm below ``min_grad`` ends the iteration before any
        trial (``accepted`` False, ``trials`` 0).
        """
        net = self.obj.net
        loss, Y = self.value()
        system = self.obj.system(Y, self.chunk)
        grad_norm = system.grad_norm
        if grad_norm < min_grad:
            return LMStep(loss, grad_norm, self.mu, False, 0)
        theta0 = net.get_flat()
        trials = 0
        while self.mu <= self.mu_max:
            trials += 1
            d = system.solve(self.mu)
            if d is not None:
                trial = theta0 + d
                net.theta[...] = trial
                new_loss, Y_new = self.obj.value()
                if math.isfinite(new_loss) and new_loss < loss:
                    self._current, self._current_theta = (new_loss, Y_new), trial
                    self.mu = max(self.mu * self.mu_dec, _MU_MIN)
                    return LMStep(new_loss, grad_norm, self.mu, True, trials)
            self.mu *= self.mu_inc
        net.theta[...] = theta0
        return LMStep(loss, grad_norm, self.mu, False, trials)

    def value(self) -> tuple[float, Any]:
        """``objective.value()`` at the current weights, kept for the next :meth:`step`
        (which would otherwise evaluate it again)."""
        if self._current is None:
            self._current = self.obj.value()
            self._current_theta = self.obj.net.get_flat()
        return self._current

    def reset(self) -> None:
        """Forget the cached loss (after theta was changed from outside)."""
        self._current = None

    def outputs_on(self, X: Array) -> Array | None:
        """The outputs of the last evaluation (the accepted trial's) when ``X`` is the
        objective's own rows and the weights are still the ones evaluated."""
        theta = self._current_theta
        if (self.obj is None or self._current is None or theta is None or self.obj.X is not X
                or not np.array_equal(theta, self.obj.net.theta)):
            return None
        return self.obj.outputs(self._current[1])

    # ------------------------------------------------- the solver protocol
    def start(self, run: Any) -> None:
        self.bind(run.objective(self.chunk))

    def start_loss(self) -> float | None:
        return self.value()[0]  # the first step reuses it

    def epoch(self, run: Any) -> EpochResult:
        """One trainlm iteration. A gradient norm below ``run.min_grad`` tries no step
        and is recorded (the MinGrad rule stops the run); no mu up to mu_max lowering the
        loss ends the run with ``mu_max`` (``non_finite`` when the loss is NaN/inf)."""
        step = self.step(run.min_grad)
        if step.accepted or (step.trials == 0 and step.grad_norm < run.min_grad):
            return EpochResult(step.loss, step.grad_norm, {"mu": step.mu})
        self.mu = min(self.mu, self.mu_max)  # a later call (partial_fit) may try again
        return EpochResult(step.loss, step.grad_norm,
                           stop="mu_max" if math.isfinite(step.loss) else "non_finite")

    def get_state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        return {}, {"mu": self.mu}

    def set_state(self, arrays: dict[str, Array], meta: dict[str, Any]) -> None:
        self.mu = meta["mu"]

    def continue_from(self, previous: Solver | None) -> None:
        if isinstance(previous, LevenbergMarquardt):
            self.mu = previous.mu

    def release(self) -> None:
        self.obj, self._current, self._current_theta = None, None, None


_SCIPY_FTOL = 2.220446049250313e-09  # scipy's default relative-reduction tolerance


class LBFGS(Solver):
    """Full-batch L-BFGS through scipy's L-BFGS-B on the flat theta, exact gradients.

    The solver ``"lbfgs"``. scipy drives the iterations, so this solver implements
    :meth:`run` and reports each iteration to ``run.end_epoch`` from scipy's callback. It
    hands the loop's ``min_grad`` and ``tol`` to scipy as ``gtol`` and ``ftol`` (``tol``
    0: scipy's default), and gives scipy's own endings their reasons (``converged``,
    ``max_fun``, ``line_search``). A resumed run restarts the curvature memory.

    Parameters
    ----------
    max_fun : int, default=15000
        Most evaluations of the objective (scipy's ``maxfun``).
    """

    name = "lbfgs"

    def __init__(self, max_fun: int = 15000) -> None:
        self.max_fun = check_int(max_fun, "max_fun")
        self.obj: Any = None

    def start(self, run: Any) -> None:
        self.obj = run.objective(None)

    def start_loss(self) -> float | None:
        return self.obj.value()[0]

    def release(self) -> None:
        self.obj = None

    def run(self, run: Any) -> str:
        net, obj = run.net, self.obj
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
            reason = run.end_epoch(EpochResult(float(intermediate_result.fun),
                                               float(np.linalg.norm(g))))
            if reason:
                stop.append(reason)
                raise StopIteration

        res = optimize.minimize(
            fun, net.get_flat().astype(np.float64), jac=True, method="L-BFGS-B",
            callback=callback,
            options={"maxiter": run.max_epochs - run.record.n_epochs, "maxfun": self.max_fun,
                     "gtol": run.min_grad, "ftol": run.tol or _SCIPY_FTOL},
        )
        if stop:
            return stop[0]
        if np.isfinite(res.x).all():
            net.theta[...] = res.x
        return _lbfgs_reason(res)


def _lbfgs_reason(res: optimize.OptimizeResult) -> str:
    """The stop reason of scipy's own ending of L-BFGS-B."""
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
