"""Losses: value and dJ/dY of each training objective.

Every loss takes the network output ``Y`` and the target ``T`` (both ``(N, m)``) and
optional per-sample weights ``w`` (``(N,)``). The seed's squared error is ``sse``:
``J = sum_s w_s sum_i (y_si - t_si)^2``. The others are weighted means over samples
(``sum_s w_s l_s / sum_s w_s``) of a per-sample loss summed over outputs.

A loss may offer a fused path with the output activation (``fused``): softmax with
cross-entropy and sigmoid with binary cross-entropy give ``delta_n = dJ/dY . f'_n`` in
closed form and a numerically stable value. Tests prove it equals the general path.
``fused_into`` is the same computation written into buffers reused from batch to batch
(:class:`OutputBuffers`, the mini-batch backprop's), by the same code: softmax with
cross-entropy, and identity with a squared error (whose ``dJ/dY`` is already ``delta_n``).
Where :func:`jacnet.accel.enabled`, softmax with cross-entropy runs its elementwise steps
as two compiled row loops around numpy's ``exp``, ``log``, row sums and ``vdot`` (whose
rounding a loop of ours would not reproduce), with the same numbers bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from . import accel
from .activations import Activation, Exp, Identity, Sigmoid, Softmax
from .registry import Registry

Array = np.ndarray

__all__ = [
    "Loss",
    "SSE",
    "MSE",
    "CrossEntropy",
    "BinaryCrossEntropy",
    "Huber",
    "Poisson",
    "Scaled",
    "OutputBuffers",
    "LOSSES",
    "get_loss",
]


def _sample_scale(w: Array | None, N: int, dtype: np.dtype) -> Array:
    """Per-sample factors of a weighted mean: ``w_s / sum(w)``, or ``1/N``; ``(N, 1)``."""
    if w is None:
        return np.full((N, 1), 1.0 / N, dtype=dtype)
    return (w / w.sum())[:, None].astype(dtype, copy=False)


def _sample_factor(w: Array | None, N: int, dtype: np.dtype) -> Array | float:
    """:func:`_sample_scale`, a Python float when unweighted: the same value ``1/N``
    rounded to ``dtype`` by the multiplication, without an (N, 1) array."""
    return 1.0 / N if w is None else _sample_scale(w, N, dtype)


class OutputBuffers(NamedTuple):
    """Scratch a fused output path writes into (:meth:`Loss.fused_into`), made once for
    the largest batch: ``D`` and ``R`` of the output's shape (n, q), ``c1``, ``c2``, ``c3``
    columns (n, 1)."""

    D: Array
    R: Array
    c1: Array
    c2: Array
    c3: Array

    @classmethod
    def empty(cls, n: int, q: int, dtype: np.dtype) -> OutputBuffers:
        return cls(*(np.empty((n, q), dtype) for _ in range(2)),
                   *(np.empty((n, 1), dtype) for _ in range(3)))

    def rows(self, n: int) -> OutputBuffers:
        """The leading ``n`` rows of every buffer (contiguous views)."""
        return OutputBuffers(*(a[:n] for a in self))


class Loss:
    """Base class: ``value_and_grad(Y, T, w) -> (J, dJ/dY)``.

    ``sum_of_squares`` marks losses of the form ``sum_s c_s ||y_s - t_s||^2``;
    ``mean_over_samples`` those normalised by ``sum(w)`` (or N). ``gauss_newton_terms``
    gives the (generalised) Gauss-Newton model that Levenberg-Marquardt minimises.
    """

    name: ClassVar[str] = ""
    sum_of_squares: ClassVar[bool] = False
    mean_over_samples: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # fused_into is written for one value_and_grad and fused: a subclass that changes
        # either and not it runs the general path, never its parent's buffered one.
        own = cls.__dict__
        if ("value_and_grad" in own or "fused" in own) and "fused_into" not in own:
            cls.fused_into = Loss.fused_into  # type: ignore[method-assign]

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        raise NotImplementedError

    def value(self, Y: Array, T: Array, w: Array | None = None) -> float:
        return self.value_and_grad(Y, T, w)[0]

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        """``(J, delta_n)`` in closed form for this output activation, or None."""
        return None

    def fused_into(
        self, act: Activation, Tpre: Array, T: Array, w: Array | None, out: OutputBuffers
    ) -> tuple[float, Array] | None:
        """``(J, delta_n)`` for the output pre-activation ``Tpre`` (n, q), computed in the
        buffers ``out`` (leading n rows) and over ``Tpre``, or None (then the caller runs
        ``act.forward``, then :meth:`fused` or :meth:`value_and_grad`). Its numbers are
        those of that general path, bit for bit; ``delta_n`` is one of the buffers."""
        return None

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        """Output-space terms ``(H, g, scale)`` of the Gauss-Newton model.

        With ``J`` the output Jacobian, the loss near theta is modelled (up to the
        factor ``scale``) by ``g^T J d + d^T J^T diag(H) J d / 2``, so that
        ``dJ/dtheta = scale * J^T g``. ``H`` and ``g`` are ``(N, m)``; ``H >= 0``.
        They are unnormalised (not divided by N) so that Levenberg-Marquardt's mu keeps
        MATLAB trainlm's meaning for squared errors: ``(J^T J + mu I) d = -J^T e``.
        """
        raise NotImplementedError(f"loss {self.name!r} has no Gauss-Newton model")

    def logit_model(
        self, act: Activation, Y: Array, T: Array, w: Array | None = None
    ) -> LogitModel | None:
        """The Gauss-Newton model at the output layer's pre-activation ``z`` (the logits)
        when this loss and ``act`` are a fused pair, else None.

        It is the model of :meth:`gauss_newton_terms` with the output Jacobian
        ``J_y = f'(z) J_z`` written out, so nothing is divided by ``y``: clipped at eps,
        that division lost the gradient of a confidently wrong sample (a softmax output
        below 2.2e-16, a sigmoid output rounded to 1), and LM stopped on ``min_grad``.
        """
        return None

    def _total_weight(self, w: Array | None, N: int) -> float:
        return float(N) if w is None else float(w.sum())

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@dataclass
class LogitModel:
    """The generalised Gauss-Newton model of a fused output pair at the logits ``z``.

    With ``J_z`` the Jacobian of the logits: ``dJ/dtheta = scale * J_z^T g``, and the
    model's curvature is ``scale * sum_s (A_s J_z,s)^T (A_s J_z,s)``, where ``rows(samples)``
    gives the stack of ``A_s`` (n, q, q) of those samples: the Jacobian recursion starts
    from them instead of the output activation's f' and fills ``A_s J_z,s`` directly.
    ``dual_r`` solves ``(A J_z)^T r = J_z^T g`` sample by sample (the dual form's
    residual), or is None where some ``A_s`` loses part of ``g`` (a zero curvature with a
    non-zero gradient).
    """

    g: Array
    scale: float
    rows: Callable[[slice], Array]
    dual_r: Array | None


def _sample_weights(Y: Array, w: Array | None) -> Array:
    """Each sample's weight as an (N, 1) column of Y's dtype (ones without weights)."""
    return np.ones((Y.shape[0], 1), Y.dtype) if w is None else w[:, None].astype(Y.dtype)


def _dual_residual(g: Array, root: Array) -> Array | None:
    """``g / root`` where ``root > 0`` (0 elsewhere), or None if ``g`` is not 0 there."""
    zero = root <= 0
    if (g[zero] != 0).any():
        return None
    return np.divide(g, root, out=np.zeros_like(g), where=~zero)


def _diagonal_model(H: Array, g: Array, scale: float) -> LogitModel:
    """A logit model whose curvature is diagonal, ``H`` (N, q) >= 0."""
    root = np.sqrt(H)
    eye = np.eye(H.shape[1], dtype=H.dtype)

    def rows(samples: slice) -> Array:  # A_s = diag(sqrt H_s)
        return root[samples][:, :, None] * eye

    return LogitModel(g, scale, rows, _dual_residual(g, root))


class SSE(Loss):
    """The seed's ``J = sum_s w_s sum_i (y_si - t_si)^2``; ``dJ/dY = 2 w (Y - T)``."""

    name = "sse"
    sum_of_squares = True
    mean_over_samples = False

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        R = Y - T
        if w is None:
            return np.ones_like(R), R, 2.0 / self._norm(w, Y.shape[0])
        H = np.broadcast_to(w[:, None], R.shape).astype(R.dtype)
        return H, H * R, 2.0 / self._norm(w, Y.shape[0])

    def _norm(self, w: Array | None, N: int) -> float:
        return 1.0

    def _weighted(self, R: Array, w: Array | None, out: Array | None = None) -> Array:
        """The residuals times each sample's factor in the sum (here ``w_s``, or 1),
        written into ``out`` when given (``R`` itself when there is no factor)."""
        return R if w is None else np.multiply(R, w[:, None], out=out)

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        return self._squares(Y, T, w, None)

    def fused_into(
        self, act: Activation, Tpre: Array, T: Array, w: Array | None, out: OutputBuffers
    ) -> tuple[float, Array] | None:
        if type(act) is not Identity:
            return None
        return self._squares(Tpre, T, w, out)  # y = t, f' = I: delta_n = dJ/dY

    def _squares(
        self, Y: Array, T: Array, w: Array | None, out: OutputBuffers | None
    ) -> tuple[float, Array]:
        """``(sum c R . R, 2 c R)`` with ``R = Y - T``: fresh arrays, or in ``out``."""
        R = np.subtract(Y, T, out=None if out is None else out.R)
        RW = self._weighted(R, w, None if out is None else out.D)
        value = float(np.vdot(RW, R))
        return value, np.multiply(RW, 2, out=None if out is None else RW)

    def value(self, Y: Array, T: Array, w: Array | None = None) -> float:
        # The same value without the gradient's array: each LM trial step asks for this.
        R = Y - T
        return float(np.vdot(self._weighted(R, w), R))


class MSE(SSE):
    """Mean over samples of the seed's J: ``sse / N`` (weighted: ``sum w_s J_s / sum w``)."""

    name = "mse"
    sum_of_squares = True
    mean_over_samples = True

    def _norm(self, w: Array | None, N: int) -> float:
        return self._total_weight(w, N)

    def _weighted(self, R: Array, w: Array | None, out: Array | None = None) -> Array:
        return np.multiply(R, _sample_factor(w, R.shape[0], R.dtype), out=out)


class CrossEntropy(Loss):
    """``J = -mean_s sum_i t_si log y_si`` for probability outputs.

    ``dJ/dY = -c_s t / y`` (``y`` clipped at the dtype's eps). Fused with softmax:
    ``delta_n = c_s (y sum_i t_i - t)`` and ``log y`` from a stable log-softmax.
    """

    name = "cross_entropy"

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        Yc = np.clip(Y, np.finfo(Y.dtype).eps, None)
        value = -float(np.vdot(c * T, np.log(Yc)))
        return value, -c * T / Yc

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        if type(act) is not Softmax:
            return None
        return self._with_softmax(Tpre, Y, T, w, None)

    def fused_into(
        self, act: Activation, Tpre: Array, T: Array, w: Array | None, out: OutputBuffers
    ) -> tuple[float, Array] | None:
        if type(act) is not Softmax:
            return None
        if Tpre.ndim == 2 and accel.enabled() and accel.fits(Tpre, T, *out):
            return self._with_softmax_compiled(Tpre, T, w, out)
        return self._with_softmax(Tpre, None, T, w, out)

    @staticmethod
    def _with_softmax_compiled(
        Tpre: Array, T: Array, w: Array | None, out: OutputBuffers
    ) -> tuple[float, Array]:
        """:meth:`_with_softmax` into ``out``, its elementwise steps in two compiled row
        loops; ``delta`` is written into ``out.R`` (over ``y``) instead of ``out.D``."""
        D, E, top, total, log_total = out
        n, dt = Tpre.shape[0], Tpre.dtype
        # _sample_factor's c: 1/N rounded to the dtype, (1,), or one factor per row
        c = np.full(1, 1.0 / n, dt) if w is None else _sample_scale(w, n, dt).reshape(-1)
        _shift_rows(Tpre, top)
        np.exp(Tpre, out=E)
        np.add.reduce(E, axis=1, keepdims=True, out=total)
        np.log(total, out=log_total)
        st = np.add.reduce(T, axis=1, keepdims=True, out=top)
        _softmax_ce_rows(Tpre, E, total, log_total, T, c, st, D)
        return -float(np.vdot(D, Tpre)), E

    @staticmethod
    def _with_softmax(
        Tpre: Array, Y: Array | None, T: Array, w: Array | None, out: OutputBuffers | None
    ) -> tuple[float, Array]:
        """The fused pair: ``log y`` by a stable log-softmax, ``delta = c (y sum_i t_i - t)``.

        Fresh arrays without ``out``; with it, the buffers and ``Tpre`` hold every
        intermediate, and ``Y`` (None) is computed here as :meth:`Softmax.forward` does.
        """
        fresh = out is None
        D, E, c1, c2, c3 = (None,) * 5 if out is None else out
        c = _sample_factor(w, Tpre.shape[0], Tpre.dtype)
        # np.max and np.sum are these ufunc reductions behind a Python wrapper whose cost
        # a small batch notices.
        top = np.maximum.reduce(Tpre, axis=1, keepdims=True, out=c1)
        S = np.subtract(Tpre, top, out=None if fresh else Tpre)
        E = np.exp(S, out=E)
        total = np.add.reduce(E, axis=1, keepdims=True, out=c2)
        logY = np.subtract(S, np.log(total, out=c3), out=S)
        if Y is None:
            Y = np.divide(E, total, out=E)  # Softmax.forward
        value = -float(np.vdot(np.multiply(T, c, out=D), logY))
        st = np.add.reduce(T, axis=1, keepdims=True, out=None if fresh else top)
        D = np.multiply(Y, st, out=D)
        np.subtract(D, T, out=D)
        return value, np.multiply(D, c, out=D)

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        # Generalised Gauss-Newton split at the softmax's logits z: with J_y = S J_z,
        # S = diag(y) - y^T y, the GGN J_z^T S J_z equals J_y^T diag(1/y) J_y (sum y = 1).
        Yc = np.clip(Y, np.finfo(Y.dtype).eps, None)
        ws = _sample_weights(Y, w)
        return ws / Yc, -ws * T / Yc, 1.0 / self._total_weight(w, Y.shape[0])

    def logit_model(
        self, act: Activation, Y: Array, T: Array, w: Array | None = None
    ) -> LogitModel | None:
        if type(act) is not Softmax:
            return None
        # Per sample the Hessian in z is (sum t) (diag(y) - y^T y) = A^T A with
        # A = sqrt(sum t) diag(sqrt y) (I - 1 y): row i of A J_z is
        # sqrt(y_i sum t) (J_z,i - sum_j y_j J_z,j). The gradient is (y sum t - t).
        st = T.sum(axis=1, keepdims=True)
        ws = _sample_weights(Y, w)
        g = ws * (Y * st - T)
        root = np.sqrt(np.maximum(ws * st, 0) * Y)
        eye = np.eye(Y.shape[1], dtype=Y.dtype)

        def rows(samples: slice) -> Array:  # A_s[i, j] = root_i (delta_ij - y_j)
            return root[samples][:, :, None] * (eye - Y[samples][:, None, :])

        # (A J_z)^T (g / root) = J_z^T (I - y^T 1) g = J_z^T g, as sum_i g_i = 0
        return LogitModel(g, 1.0 / self._total_weight(w, Y.shape[0]), rows,
                          _dual_residual(g, root))


# The compiled steps of CrossEntropy._with_softmax, each element as its numpy lines.
@accel.kernel()
def _shift_rows(Tpre: Array, top: Array) -> None:
    """``top`` = each row's max (NaN if the row holds one, as np.maximum.reduce), and
    ``Tpre - top`` over ``Tpre``."""
    for i in range(Tpre.shape[0]):
        m = Tpre[i, 0]
        for j in range(1, Tpre.shape[1]):
            t = Tpre[i, j]
            if m == m and not t <= m:  # a NaN, once met, stays
                m = t
        top[i, 0] = m
        for j in range(Tpre.shape[1]):
            Tpre[i, j] = Tpre[i, j] - m


@accel.kernel()
def _softmax_ce_rows(S: Array, E: Array, total: Array, log_total: Array, T: Array,
                     c: Array, st: Array, D: Array) -> None:
    """From ``S = t - max t``, ``E = exp S`` and the row sums: ``log y = S - log Σ E``
    over ``S``, ``D = T c`` (the value's factor), and ``delta = (y Σ_i t_i - t) c`` with
    ``y = E / Σ E``, over ``E``; ``c`` has one entry (1/N) or one per row."""
    for i in range(S.shape[0]):
        ci = c[i if c.shape[0] > 1 else 0]
        for j in range(S.shape[1]):
            S[i, j] = S[i, j] - log_total[i, 0]
            D[i, j] = T[i, j] * ci
            E[i, j] = (E[i, j] / total[i, 0] * st[i, 0] - T[i, j]) * ci


class BinaryCrossEntropy(Loss):
    """``J = -mean_s sum_i [t log y + (1 - t) log(1 - y)]`` for outputs in (0, 1).

    ``dJ/dY = c_s (y - t) / (y (1 - y))``. Fused with sigmoid: ``delta_n = c_s (y - t)``
    and ``log y = -softplus(-t)``, ``log(1 - y) = -softplus(t)``.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        eps = np.finfo(Y.dtype).eps
        Yc = np.clip(Y, eps, 1 - eps)
        value = -float(np.vdot(c * T, np.log(Yc)) + np.vdot(c * (1 - T), np.log1p(-Yc)))
        return value, c * (Yc - T) / (Yc * (1 - Yc))

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        if type(act) is not Sigmoid:
            return None
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        log_y = -np.logaddexp(0, -Tpre)
        log_1my = -np.logaddexp(0, Tpre)
        value = -float(np.vdot(c * T, log_y) + np.vdot(c * (1 - T), log_1my))
        return value, c * (Y - T)

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        # GGN split at the sigmoid's logit: J_z^T y(1-y) J_z = J_y^T [1 / (y(1-y))] J_y.
        eps = np.finfo(Y.dtype).eps
        Yc = np.clip(Y, eps, 1 - eps)
        ws = _sample_weights(Y, w)
        H = ws / (Yc * (1 - Yc))
        return H, H * (Yc - T), 1.0 / self._total_weight(w, Y.shape[0])

    def logit_model(
        self, act: Activation, Y: Array, T: Array, w: Array | None = None
    ) -> LogitModel | None:
        if type(act) is not Sigmoid:
            return None
        # In z: gradient (y - t), curvature y (1 - y): 0 for an output rounded to 1, whose
        # gradient still counts in full
        ws = _sample_weights(Y, w)
        return _diagonal_model(ws * Y * (1 - Y), ws * (Y - T),
                               1.0 / self._total_weight(w, Y.shape[0]))


class Huber(Loss):
    """``J = mean_s sum_i h(y_si - t_si)``, ``h(r) = r^2/2`` for ``|r| <= d``, else
    ``d (|r| - d/2)``; ``dJ/dY = c_s clip(r, -d, d)``."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise ValueError(f"delta must be a positive float, got {delta!r}")
        self.delta = float(delta)

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        R = Y - T
        A = np.abs(R)
        d = self.delta
        h = np.where(A <= d, 0.5 * R * R, d * (A - 0.5 * d))
        return float(np.vdot(c, h.sum(axis=1))), c * np.clip(R, -d, d)

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        R = Y - T
        ws = _sample_weights(Y, w)
        H = ws * (np.abs(R) <= self.delta)
        return H.astype(Y.dtype), ws * np.clip(R, -self.delta, self.delta), (
            1.0 / self._total_weight(w, Y.shape[0])
        )

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta}


class Poisson(Loss):
    """Poisson deviance up to a constant: ``J = mean_s sum_i (y_si - t_si log y_si)``.

    For positive outputs (an ``exp`` output layer); ``dJ/dY = c_s (1 - t / y)``. Fused
    with exp (the log link): ``log y = z`` and ``delta_n = c_s (y - t)``.
    """

    name = "poisson"

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        Yc = np.clip(Y, np.finfo(Y.dtype).tiny, None)
        value = float(np.vdot(c, (Yc - T * np.log(Yc)).sum(axis=1)))
        return value, c * (1 - T / Yc)

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        if type(act) is not Exp:
            return None
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        return float(np.vdot(c, (Y - T * Tpre).sum(axis=1))), c * (Y - T)

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        # GGN split at the log link z: J_z^T diag(y) J_z = J_y^T diag(1/y) J_y.
        Yc = np.clip(Y, np.finfo(Y.dtype).tiny, None)
        ws = _sample_weights(Y, w)
        return ws / Yc, ws * (1 - T / Yc), 1.0 / self._total_weight(w, Y.shape[0])

    def logit_model(
        self, act: Activation, Y: Array, T: Array, w: Array | None = None
    ) -> LogitModel | None:
        if type(act) is not Exp:
            return None
        ws = _sample_weights(Y, w)  # in z = log y: gradient (y - t), curvature y
        return _diagonal_model(ws * Y, ws * (Y - T), 1.0 / self._total_weight(w, Y.shape[0]))


class Scaled(Loss):
    """``factor * base``: the same loss in other units (e.g. scikit-learn's half MSE).

    Values, gradients and the fused path scale by ``factor``; the Gauss-Newton model
    keeps ``H`` and ``g`` (so LM's mu means the same) and scales its ``scale``.
    """

    def __init__(self, base: Loss | str, factor: float) -> None:
        if not factor > 0:
            raise ValueError(f"factor must be a positive float, got {factor!r}")
        self.base = get_loss(base)
        self.factor = float(factor)
        self.sum_of_squares = self.base.sum_of_squares  # type: ignore[misc]
        self.mean_over_samples = self.base.mean_over_samples  # type: ignore[misc]

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.base.name

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        value, dY = self.base.value_and_grad(Y, T, w)
        return self.factor * value, self.factor * dY

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        out = self.base.fused(act, Tpre, Y, T, w)
        return None if out is None else (self.factor * out[0], self.factor * out[1])

    def fused_into(
        self, act: Activation, Tpre: Array, T: Array, w: Array | None, out: OutputBuffers
    ) -> tuple[float, Array] | None:
        res = self.base.fused_into(act, Tpre, T, w, out)
        if res is None:
            return None
        value, delta = res  # delta is the base's buffer: scaled in place
        return self.factor * value, np.multiply(delta, self.factor, out=delta)

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        H, g, scale = self.base.gauss_newton_terms(Y, T, w)
        return H, g, self.factor * scale

    def logit_model(
        self, act: Activation, Y: Array, T: Array, w: Array | None = None
    ) -> LogitModel | None:
        model = self.base.logit_model(act, Y, T, w)
        if model is not None:
            model.scale *= self.factor
        return model

    def get_config(self) -> dict[str, Any]:
        return {"base": self.base.name, "factor": self.factor}


#: name -> class, built from the classes themselves.
LOSSES: Registry[Loss] = Registry(
    "loss", Loss, (SSE, MSE, CrossEntropy, BinaryCrossEntropy, Huber, Poisson)
)


def get_loss(spec: str | Loss) -> Loss:
    """Return a loss instance from a name (see ``LOSSES``) or an instance."""
    return LOSSES.create(spec)
