"""Losses: value and dJ/dY of each training objective.

Every loss takes the network output ``Y`` and the target ``T`` (both ``(N, m)``) and
optional per-sample weights ``w`` (``(N,)``). The seed's squared error is ``sse``:
``J = sum_s w_s sum_i (y_si - t_si)^2``. The others are weighted means over samples
(``sum_s w_s l_s / sum_s w_s``) of a per-sample loss summed over outputs.

A loss may offer a fused path with the output activation (``fused``): softmax with
cross-entropy and sigmoid with binary cross-entropy give ``delta_n = dJ/dY . f'_n`` in
closed form and a numerically stable value. Tests prove it equals the general path.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .activations import Activation, Exp, Sigmoid, Softmax

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


class Loss:
    """Base class: ``value_and_grad(Y, T, w) -> (J, dJ/dY)``.

    ``sum_of_squares`` marks losses of the form ``sum_s c_s ||y_s - t_s||^2``;
    ``mean_over_samples`` those normalised by ``sum(w)`` (or N). ``gauss_newton_terms``
    gives the (generalised) Gauss-Newton model that Levenberg-Marquardt minimises.
    """

    name: ClassVar[str] = ""
    sum_of_squares: ClassVar[bool] = False
    mean_over_samples: ClassVar[bool] = True

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        raise NotImplementedError

    def value(self, Y: Array, T: Array, w: Array | None = None) -> float:
        return self.value_and_grad(Y, T, w)[0]

    def fused(
        self, act: Activation, Tpre: Array, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[float, Array] | None:
        """``(J, delta_n)`` in closed form for this output activation, or None."""
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

    def _total_weight(self, w: Array | None, N: int) -> float:
        return float(N) if w is None else float(w.sum())

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


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

    def _weighted(self, R: Array, w: Array | None) -> Array:
        """The residuals times each sample's factor in the sum (here ``w_s``, or 1)."""
        return R if w is None else R * w[:, None]

    def value_and_grad(self, Y: Array, T: Array, w: Array | None = None) -> tuple[float, Array]:
        R = Y - T
        RW = self._weighted(R, w)
        return float(np.vdot(RW, R)), 2 * RW

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

    def _weighted(self, R: Array, w: Array | None) -> Array:
        return R * _sample_factor(w, R.shape[0], R.dtype)


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
        c = _sample_scale(w, Y.shape[0], Y.dtype)
        S = Tpre - Tpre.max(axis=1, keepdims=True)
        logY = S - np.log(np.exp(S).sum(axis=1, keepdims=True))
        value = -float(np.vdot(c * T, logY))
        delta = c * (Y * T.sum(axis=1, keepdims=True) - T)
        return value, delta

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        # Generalised Gauss-Newton split at the softmax's logits z: with J_y = S J_z,
        # S = diag(y) - y^T y, the GGN J_z^T S J_z equals J_y^T diag(1/y) J_y (sum y = 1).
        Yc = np.clip(Y, np.finfo(Y.dtype).eps, None)
        ws = np.ones((Y.shape[0], 1), Y.dtype) if w is None else w[:, None].astype(Y.dtype)
        return ws / Yc, -ws * T / Yc, 1.0 / self._total_weight(w, Y.shape[0])


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
        ws = np.ones((Y.shape[0], 1), Y.dtype) if w is None else w[:, None].astype(Y.dtype)
        H = ws / (Yc * (1 - Yc))
        return H, H * (Yc - T), 1.0 / self._total_weight(w, Y.shape[0])


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
        ws = np.ones((Y.shape[0], 1), Y.dtype) if w is None else w[:, None].astype(Y.dtype)
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
        ws = np.ones((Y.shape[0], 1), Y.dtype) if w is None else w[:, None].astype(Y.dtype)
        return ws / Yc, ws * (1 - T / Yc), 1.0 / self._total_weight(w, Y.shape[0])


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

    def gauss_newton_terms(
        self, Y: Array, T: Array, w: Array | None = None
    ) -> tuple[Array, Array, float]:
        H, g, scale = self.base.gauss_newton_terms(Y, T, w)
        return H, g, self.factor * scale

    def get_config(self) -> dict[str, Any]:
        return {"base": self.base.name, "factor": self.factor}


#: name -> class, built from the classes themselves.
LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (SSE, MSE, CrossEntropy, BinaryCrossEntropy, Huber, Poisson)
}


def get_loss(spec: str | Loss) -> Loss:
    """Return a loss instance from a name (see ``LOSSES``) or an instance."""
    if isinstance(spec, Loss):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"loss must be a str or a jacnet Loss, got {type(spec).__name__}")
    try:
        return LOSSES[spec]()
    except KeyError:
        valid = ", ".join(sorted(LOSSES))
        raise ValueError(f"unknown loss {spec!r}; valid names: {valid}") from None
