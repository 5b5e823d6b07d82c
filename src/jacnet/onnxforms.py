"""Each activation as ONNX nodes: its forward form and its forward-mode derivative.

The export (:mod:`jacnet.export`) builds a graph with an :class:`OnnxBuilder` and asks
:func:`form_of` for each layer's activation. A form has two parts, side by side as in
:mod:`jacnet.activations`:

``forward(g, act, t) -> y``
    ``y = f(t)`` on the names of ``(N, m)`` tensors, with the operations of the
    activation's ``forward`` in the same order, so that the graph gives its numbers to a
    few units in the last place.
``jvp(g, act, t, y, tdot) -> ydot``
    the tangent carried forward, ``ydot = tdot . f'^T`` row by row: ``t`` and ``y`` are
    ``(N, 1, m)``, ``tdot`` is ``(N, n, m)`` (or ``(1, n, m)``), one row per input ``x_r``
    (row ``r`` is ``dt / dx_r``). Elementwise activations multiply by their f'; the vector
    ones use their closed forms (every built-in f' is symmetric except log_softmax's).

Only operators that ONNX Runtime runs in float64 are used: it has no float64 ``Erf``, so
GELU's normal CDF is a series here; ``log1p`` and ``expm1`` (which ONNX lacks) are the
accurate rewrites of Goldberg and Kahan rather than ``log(1 + x)`` and ``exp(x) - 1``.

A user activation supplies its own form through two methods on its class (see
``docs/deployment.md``): ``onnx(self, g, t) -> y`` and, for ``with_input_jacobian``,
``onnx_jvp(self, g, t, y, tdot) -> ydot``, with the shapes above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .activations import (
    ELU,
    GELU,
    Activation,
    Exp,
    Identity,
    L2Normalize,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Sparsemax,
    Tanh,
)

__all__ = ["OPSET", "ML_OPSET", "ExportError", "OnnxBuilder", "OnnxForm", "FORMS", "form_of"]

#: The ONNX opset of every exported graph. 18 is the first where every reduction
#: (ReduceMax, ReduceMean, ReduceSum) takes its axes as an input, the one form used here;
#: TopK and CumSum (sparsemax) date from 11. ONNX Runtime 1.14 and later run it.
OPSET = 18
#: ``ai.onnx.ml``'s opset, for ``OneHotEncoder`` (the text columns of a table).
ML_OPSET = 3


class ExportError(ValueError):
    """A model that cannot be exported as asked (the message is one line)."""


class OnnxBuilder:
    """The graph under construction: nodes, constants and fresh names.

    Parameters
    ----------
    dtype : float32 or float64
        The float type of the graph; :meth:`const` stores numbers in it.
    prefix : str, default ""
        The start of every name :meth:`fresh` makes (so inner names cannot meet inputs').
    """

    def __init__(self, dtype: Any, prefix: str = "") -> None:
        from onnx import helper, numpy_helper

        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._helper, self._numpy_helper = helper, numpy_helper
        self.prefix = prefix
        self._count = 0
        self._consts: dict[tuple[Any, ...], str] = {}

    def fresh(self, hint: str) -> str:
        """A name no other tensor of the graph has (``hint`` and a number)."""
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = None) -> str:
        """A constant tensor, in the graph's float type unless ``dtype`` is given."""
        arr = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.dtype.kind != "O" else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(self._numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def axes(self, *axes: int) -> str:
        """The int64 axes input of a reduction, ``Unsqueeze`` or ``CumSum``."""
        return self.const(list(axes), "axes", np.int64)

    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1,
           domain: str = "", **attrs: Any) -> Any:
        """Add one node; return its output name (a list of names when ``n_out > 1``)."""
        outs = [out or self.fresh(op_type.lower())] if n_out == 1 else [
            self.fresh(f"{op_type.lower()}{k}") for k in range(n_out)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outs, domain=domain,
                                                 **attrs))
        return outs[0] if n_out == 1 else outs

    # shorthands for the forms below: a row's reductions keep the axis, as numpy's
    # keepdims=True, so that they broadcast against the row
    def rsum(self, x: str) -> str:
        return self.op("ReduceSum", x, self.axes(-1), keepdims=1)

    def rmax(self, x: str) -> str:
        return self.op("ReduceMax", x, self.axes(-1), keepdims=1)

    def rmean(self, x: str) -> str:
        return self.op("ReduceMean", x, self.axes(-1), keepdims=1)

    def cast(self, x: str, dtype: Any = None) -> str:
        """``x`` cast to ``dtype`` (the graph's float type by default)."""
        from onnx.helper import np_dtype_to_tensor_dtype

        to = np_dtype_to_tensor_dtype(np.dtype(self.dtype if dtype is None else dtype))
        return self.op("Cast", x, to=to)

    def positive(self, x: str) -> str:
        """``[x > 0]`` in the graph's float type."""
        return self.cast(self.op("Greater", x, self.const(0.0)))


Form = Callable[..., str]


class OnnxForm(NamedTuple):
    """An activation's ONNX form: ``forward(g, act, t)`` and ``jvp(g, act, t, y, tdot)``."""

    forward: Form
    jvp: Form | None


def _elementwise(forward: Form, derivative: Form | None) -> OnnxForm:
    """The form of an elementwise activation: ``ydot = tdot * f'(t)`` (f' diagonal)."""
    if derivative is None:  # identity: f' = 1
        return OnnxForm(forward, lambda g, act, t, y, tdot: tdot)

    def jvp(g: OnnxBuilder, act: Activation, t: str, y: str, tdot: str) -> str:
        return g.op("Mul", tdot, derivative(g, act, t, y))

    return OnnxForm(forward, jvp)


# ---------------------------------------------------------------- accurate pieces
def _log1p(g: OnnxBuilder, x: str) -> str:
    """``log(1 + x)`` for ``x >= 0`` to a few ulps (Goldberg: ``log(u) x / (u - 1)``)."""
    u = g.op("Add", g.const(1.0), x)
    um1 = g.op("Sub", u, g.const(1.0))
    ratio = g.op("Div", g.op("Mul", g.op("Log", u), x), um1)
    return g.op("Where", g.op("Equal", um1, g.const(0.0)), x, ratio)


def _expm1(g: OnnxBuilder, x: str) -> str:
    """``e^x - 1`` for ``x <= 0`` to a few ulps (Kahan: ``(u - 1) x / log(u)``)."""
    u = g.op("Exp", x)
    um1 = g.op("Sub", u, g.const(1.0))
    ratio = g.op("Div", g.op("Mul", um1, x), g.op("Log", u))
    small = g.op("Where", g.op("Equal", um1, g.const(0.0)), x, ratio)
    return g.op("Where", g.op("Equal", u, g.const(0.0)), g.const(-1.0), small)


def _erf_series(dtype: np.dtype) -> tuple[float, np.ndarray]:
    """``(x0, a)``: erf(x) = (2/sqrt(pi)) x e^{-x^2} sum_n a_n (x/x0)^{2n} for |x| <= x0.

    From erf(x) = (2/sqrt(pi)) e^{-x^2} sum_n 2^n x^{2n+1} / (2n+1)!!, every term positive
    (no cancellation), in the variable (x/x0)^2 so that no coefficient under- or
    overflows; beyond x0, erf(x) = sign(x) to the dtype's precision (erfc(6) = 2e-17,
    erfc(4) = 2e-8). Terms are kept until they fall below the dtype's rounding.
    """
    x0, tol = (6.0, 1e-18) if dtype == np.float64 else (4.0, 1e-9)
    z = 2 * x0 * x0
    a = [1.0]
    while a[-1] > tol * math.exp(x0 * x0):  # the sum is below e^{x0^2}
        a.append(a[-1] * z / (2 * len(a) + 1))
    return x0, np.asarray(a)


def _ndtr(g: OnnxBuilder, t: str) -> str:
    """The standard normal CDF ``0.5 + 0.5 erf(t / sqrt 2)``, to ~1e-16 absolute."""
    x0, a = _erf_series(g.dtype)
    x = g.op("Mul", t, g.const(1 / math.sqrt(2)))
    xc = g.op("Min", g.op("Max", x, g.const(-x0)), g.const(x0))
    x2 = g.op("Mul", xc, xc)
    w = g.op("Mul", x2, g.const(1 / (x0 * x0)))
    s = g.const(a[-1])
    for coef in a[-2::-1]:  # Horner in w = (x/x0)^2
        s = g.op("Add", g.op("Mul", s, w), g.const(coef))
    scale = g.op("Mul", g.op("Exp", g.op("Neg", x2)), g.const(2 / math.sqrt(math.pi)))
    series = g.op("Mul", g.op("Mul", xc, scale), s)
    erf = g.op("Where", g.op("Greater", g.op("Abs", x), g.const(x0)), g.op("Sign", x), series)
    return g.op("Add", g.const(0.5), g.op("Mul", g.const(0.5), erf))


# ---------------------------------------------------------------- elementwise forms
def _sigmoid_d(g: OnnxBuilder, act: Activation, t: str, y: str) -> str:
    return g.op("Mul", g.op("Sub", g.const(1.0), y), y)  # y (1 - y)


def _tanh_d(g: OnnxBuilder, act: Activation, t: str, y: str) -> str:
    return g.op("Sub", g.const(1.0), g.op("Mul", y, y))  # 1 - y^2


def _leaky(g: OnnxBuilder, act: Any, t: str) -> str:
    scaled = g.op("Mul", g.const(act.negative_slope), t)
    return g.op("Where", g.op("Greater", t, g.const(0.0)), t, scaled)


def _leaky_d(g: OnnxBuilder, act: Any, t: str, y: str) -> str:
    return g.op("Where", g.op("Greater", t, g.const(0.0)), g.const(1.0),
                g.const(act.negative_slope))


def _elu(g: OnnxBuilder, act: Any, t: str) -> str:
    neg = g.op("Mul", g.const(act.alpha), _expm1(g, g.op("Min", t, g.const(0.0))))
    return g.op("Where", g.op("Greater", t, g.const(0.0)), t, neg)


def _elu_d(g: OnnxBuilder, act: Any, t: str, y: str) -> str:
    return g.op("Where", g.op("Greater", t, g.const(0.0)), g.const(1.0),
                g.op("Add", y, g.const(act.alpha)))


def _softplus(g: OnnxBuilder, act: Activation, t: str) -> str:
    # numpy's logaddexp(t, 0): max(t, 0) + log1p(e^{-|t|})
    tail = _log1p(g, g.op("Exp", g.op("Neg", g.op("Abs", t))))
    return g.op("Add", g.op("Max", t, g.const(0.0)), tail)


def _gelu_d(g: OnnxBuilder, act: Activation, t: str, y: str) -> str:
    pdf = g.op("Mul", g.op("Exp", g.op("Mul", g.op("Mul", g.const(-0.5), t), t)),
               g.const(1 / math.sqrt(2 * math.pi)))
    return g.op("Add", _ndtr(g, t), g.op("Mul", t, pdf))  # Phi(t) + t phi(t)


def _silu_d(g: OnnxBuilder, act: Activation, t: str, y: str) -> str:
    s = g.op("Sigmoid", t)  # s (1 + t (1 - s))
    return g.op("Mul", s, g.op("Add", g.const(1.0),
                               g.op("Mul", t, g.op("Sub", g.const(1.0), s))))


# ---------------------------------------------------------------- vector forms
def _softmax(g: OnnxBuilder, act: Activation, t: str) -> str:
    e = g.op("Exp", g.op("Sub", t, g.rmax(t)))
    return g.op("Div", e, g.rsum(e))


def _softmax_jvp(g: OnnxBuilder, act: Activation, t: str, y: str, tdot: str) -> str:
    # f' = diag(y) - y^T y is symmetric: ydot = y * (tdot - <tdot, y>)
    return g.op("Mul", y, g.op("Sub", tdot, g.rsum(g.op("Mul", tdot, y))))


def _log_softmax(g: OnnxBuilder, act: Activation, t: str) -> str:
    s = g.op("Sub", t, g.rmax(t))
    return g.op("Sub", s, g.op("Log", g.rsum(g.op("Exp", s))))


def _log_softmax_jvp(g: OnnxBuilder, act: Activation, t: str, y: str, tdot: str) -> str:
    # f'[i, j] = delta_ij - p_j: ydot_i = tdot_i - <tdot, p>, p = e^y
    return g.op("Sub", tdot, g.rsum(g.op("Mul", tdot, g.op("Exp", y))))


def _sparsemax(g: OnnxBuilder, act: Activation, t: str) -> str:
    """Sparsemax's forward in its order: shift by the row max, sort descending (TopK),
    cumulative sums, the support size k_max and tau = (cums[k_max - 1] - 1) / k_max."""
    t = g.op("Sub", t, g.rmax(t))
    m = g.op("Shape", t, start=-1)  # the row width, (1,) int64
    z = g.op("TopK", t, m, axis=-1, largest=1, sorted=1, n_out=2)[0]
    cums = g.op("CumSum", z, g.const(1, "axis", np.int64))
    end = g.op("Add", g.cast(g.op("Squeeze", m)), g.const(1.0))
    k = g.op("Range", g.const(1.0), end, g.const(1.0))  # 1, 2, ..., m
    support = g.op("Greater", g.op("Add", g.const(1.0), g.op("Mul", k, z)), cums)
    k_max = g.rsum(g.cast(support, np.int64))
    at = g.op("GatherElements", cums, g.op("Sub", k_max, g.const([[1]], "one", np.int64)),
              axis=1)
    tau = g.op("Div", g.op("Sub", at, g.const(1.0)), g.cast(k_max))
    return g.op("Max", g.op("Sub", t, tau), g.const(0.0))


def _sparsemax_jvp(g: OnnxBuilder, act: Activation, t: str, y: str, tdot: str) -> str:
    # f' = diag(s) - s^T s / |S| is symmetric: ydot = s * (tdot - <tdot, s> / |S|)
    s = g.positive(y)
    mean = g.op("Div", g.rsum(g.op("Mul", tdot, s)), g.rsum(s))
    return g.op("Mul", s, g.op("Sub", tdot, mean))


def _l2_norm(g: OnnxBuilder, act: Any, t: str) -> tuple[str, str]:
    n = g.op("Sqrt", g.rsum(g.op("Mul", t, t)))
    return g.op("Max", n, g.const(act.eps)), n


def _l2_normalize(g: OnnxBuilder, act: Any, t: str) -> str:
    return g.op("Div", t, _l2_norm(g, act, t)[0])


def _l2_normalize_jvp(g: OnnxBuilder, act: Any, t: str, y: str, tdot: str) -> str:
    # f' = (I - y^T y) / ||t|| (I / eps within eps of zero), symmetric
    n, raw = _l2_norm(g, act, t)
    yo = g.op("Mul", g.cast(g.op("Greater", raw, g.const(act.eps))), y)
    return g.op("Div", g.op("Sub", tdot, g.op("Mul", g.rsum(g.op("Mul", tdot, yo)), yo)), n)


def _ln_scale(g: OnnxBuilder, act: Any, t: str) -> tuple[str, str]:
    """``(t - mean t, sqrt(var t + eps))``, the biased variance as numpy's ``var``."""
    c = g.op("Sub", t, g.rmean(t))
    return c, g.op("Sqrt", g.op("Add", g.rmean(g.op("Mul", c, c)), g.const(act.eps)))


def _layer_norm(g: OnnxBuilder, act: Any, t: str) -> str:
    c, s = _ln_scale(g, act, t)
    return g.op("Div", c, s)


def _layer_norm_jvp(g: OnnxBuilder, act: Any, t: str, y: str, tdot: str) -> str:
    # f' = ((I - 1/m) - y^T y / m) / s, symmetric: (tdot - mean tdot - y mean(tdot y)) / s
    s = _ln_scale(g, act, t)[1]
    centred = g.op("Sub", tdot, g.rmean(tdot))
    return g.op("Div", g.op("Sub", centred, g.op("Mul", y, g.rmean(g.op("Mul", tdot, y)))), s)


def _unary(op_type: str) -> Form:
    return lambda g, act, t: g.op(op_type, t)


#: The built-in activations' forms, by exact class (a subclass may change the formula).
FORMS: dict[type[Activation], OnnxForm] = {
    Identity: _elementwise(lambda g, act, t: t, None),
    Sigmoid: _elementwise(_unary("Sigmoid"), _sigmoid_d),
    Tanh: _elementwise(_unary("Tanh"), _tanh_d),
    ReLU: _elementwise(_unary("Relu"), lambda g, act, t, y: g.positive(t)),
    LeakyReLU: _elementwise(_leaky, _leaky_d),
    ELU: _elementwise(_elu, _elu_d),
    Softplus: _elementwise(_softplus, lambda g, act, t, y: g.op("Sigmoid", t)),
    GELU: _elementwise(lambda g, act, t: g.op("Mul", t, _ndtr(g, t)), _gelu_d),
    SiLU: _elementwise(lambda g, act, t: g.op("Mul", t, g.op("Sigmoid", t)), _silu_d),
    Exp: _elementwise(_unary("Exp"), lambda g, act, t, y: y),
    Softmax: OnnxForm(_softmax, _softmax_jvp),
    LogSoftmax: OnnxForm(_log_softmax, _log_softmax_jvp),
    Sparsemax: OnnxForm(_sparsemax, _sparsemax_jvp),
    L2Normalize: OnnxForm(_l2_normalize, _l2_normalize_jvp),
    LayerNorm: OnnxForm(_layer_norm, _layer_norm_jvp),
}


def form_of(act: Activation, jacobian: bool = False) -> OnnxForm:
    """The ONNX form of ``act``: a built-in's, or the ``onnx``/``onnx_jvp`` methods of a
    user class; an :class:`ExportError` naming the activation where there is none."""
    form = FORMS.get(type(act))
    if form is None:
        hook, jvp = getattr(act, "onnx", None), getattr(act, "onnx_jvp", None)
        if not callable(hook):
            raise ExportError(
                f"activation {act.name or type(act).__name__!r} ({type(act).__name__}) has no "
                "ONNX form: give its class a method onnx(self, g, t) returning the output's "
                "name (see docs/deployment.md)")
        form = OnnxForm(lambda g, a, t: hook(g, t),
                        None if not callable(jvp) else (lambda g, a, t, y, td: jvp(g, t, y, td)))
    if jacobian and form.jvp is None:
        raise ExportError(
            f"activation {act.name or type(act).__name__!r} ({type(act).__name__}) has no "
            "ONNX derivative for with_input_jacobian: give its class a method "
            "onnx_jvp(self, g, t, y, tdot) (see docs/deployment.md)")
    return form
