"""Activations: the seed's f_k and its full Jacobian f'_k.

Conventions (seed, "The model"): rows are samples. For a batch the pre-activation is
``T`` of shape ``(N, m)`` and the output ``Y = f(T)`` has the same shape. The Jacobian of
one sample is the ``m x m`` matrix ``f'[i, j] = d f_i / d t_j``; over a batch it is the
array ``(N, m, m)``.

Every activation offers three things side by side:

``forward(T)``
    ``Y = f(T)``.
``jacobian(T, Y)``
    the full ``(N, m, m)`` Jacobian, for users, tests and the generic path.
``vjp(T, Y, G)``
    the backward product ``G . f'`` row by row, the only thing backprop needs. ``G`` is
    ``(N, m)`` (one row per sample, as in the loss gradient) or ``(N, q, m)`` (q rows per
    sample, as in the per-output Jacobian). The default builds the Jacobian; every built-in
    overrides it with a closed form that never materialises an ``m x m`` matrix.

Derivative fitting (Sobolev training, :mod:`jacnet.sobolev`) needs two more products,
each a closed form in the built-ins:

``jvp(T, Y, V)``
    the forward product ``V . f'^T`` row by row (a tangent of ``t`` carried to ``y``).
    The default builds the Jacobian.
``hvp(T, Y, V, U)``
    the second-order term: per row, the derivative with respect to ``t`` of
    ``<U, f'(t) V>`` (``V`` a tangent, ``U`` a cotangent of ``y``), that is
    ``h_l = sum_ij U_i V_j d^2 f_i / dt_j dt_l``, never an ``m x m x m`` tensor. There is
    no default: an activation without it cannot fit derivatives (a clear error names it).

Three optional hooks serve the mini-batch backprop's reused buffers (``Network.backprop``
with ``n_max``): ``forward_into(T)`` may write ``Y`` over ``T``, ``forward_bias_into(T,
b)`` adds the bias to ``T = X W`` first, and ``vjp_into(T, Y, G, tmp)`` may write ``G .
f'`` over ``G``. Their defaults are ``forward``, the bias added then ``forward_into``, and
``vjp``; the elementwise built-ins whose f' needs only ``Y`` (identity, ReLU, tanh,
sigmoid; the flag ``vjp_needs_T`` is False) override them next to their formulas, with the
same operations in the same order, so the results are the same bit for bit. Where
:func:`jacnet.accel.enabled`, the bias add (with ReLU's ``max(t, 0)`` in the same pass)
and those ``vjp_into`` run as compiled loops, again with the numpy path's operations and
order (``tests/test_kernels.py`` compares the bits).

A user activation only needs ``forward`` and ``jacobian``. To be exported to ONNX it
also gives its ONNX form, as methods ``onnx(g, t)`` and (for the input Jacobian)
``onnx_jvp(g, t, y, tdot)``: see :mod:`jacnet.onnxforms` and docs/deployment.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy import special

from . import accel
from .registry import Registry
from .validation import check_real

Array = np.ndarray

__all__ = [
    "Activation",
    "Elementwise",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softplus",
    "GELU",
    "SiLU",
    "Exp",
    "Softmax",
    "LogSoftmax",
    "Sparsemax",
    "L2Normalize",
    "LayerNorm",
    "ACTIVATIONS",
    "BUILTINS",
    "get_activation",
    "register_activation",
]


def _rows(A: Array, G: Array) -> Array:
    """View a per-sample ``(N, m)`` array so that it broadcasts against ``G``.

    ``G`` is ``(N, m)`` or ``(N, q, m)``; in the latter case ``A`` becomes ``(N, 1, m)``.
    """
    return A if G.ndim == 2 else A[:, None, :]


def _rowsum(A: Array) -> Array:
    return A.sum(axis=-1, keepdims=True)


#: What an activation computes, and the in-place hooks written for exactly that.
_FORMULAS = ("forward", "jacobian", "derivative", "vjp")
_HOOKS = ("forward_into", "forward_bias_into", "vjp_into", "vjp_needs_T")
#: The second-order products, written for exactly one formula (see __init_subclass__).
_SECOND = ("jvp", "hvp", "second_derivative")


# The compiled hooks (jacnet.accel): the numpy hooks' operations, element by element.
@accel.kernel()
def _bias_kernel(T: Array, b: Array, relu: bool) -> None:
    """``T + b`` on every row, over ``T``; with ``relu``, then ``max(·, 0)`` as
    np.maximum gives it (+0 for a zero of either sign, NaN kept)."""
    zero = T.dtype.type(0)
    for i in range(T.shape[0]):
        for j in range(T.shape[1]):
            t = T[i, j] + b[j]
            T[i, j] = t if not relu or t > 0 or t != t else zero


#: ``_vjp_kernel``'s ``kind``: which f'(y) multiplies G.
_RELU, _TANH, _SIGMOID = 0, 1, 2


@accel.kernel()
def _vjp_kernel(G: Array, Y: Array, kind: int) -> None:
    """``G . f'`` over ``G``, f' from ``Y``: ReLU ``[y > 0]``, tanh ``1 - y²``, sigmoid
    ``(1 - y) y``, each as its numpy ``vjp_into`` forms it."""
    one, zero = G.dtype.type(1), G.dtype.type(0)
    for i in range(G.shape[0]):
        for j in range(G.shape[1]):
            y = Y[i, j]
            if kind == _RELU:
                d = one if y > 0 else zero
            elif kind == _TANH:
                d = one - y * y
            else:
                d = (one - y) * y
            G[i, j] = G[i, j] * d


def _vjp_compiled(G: Array, Y: Array, kind: int) -> bool:
    """Run ``_vjp_kernel`` where the kernels are on and the arrays fit; False if not."""
    if G.ndim == 2 and accel.enabled() and accel.fits(G, Y) and Y.shape == G.shape:
        _vjp_kernel(G, Y, kind)
        return True
    return False


class Activation:
    """Base class of an activation ``f: R^m -> R^m`` applied to every row.

    Subclasses implement :meth:`forward` and :meth:`jacobian`; :meth:`vjp` then works
    through the Jacobian. ``name`` is how users and model files refer to the class;
    :meth:`get_config` returns the constructor arguments (JSON-serialisable).
    """

    name: ClassVar[str] = ""
    #: Whether :meth:`vjp` reads the pre-activation ``T``. False where ``Y`` alone gives
    #: f' (ReLU's ``[t > 0]`` is ``[y > 0]``, tanh's is ``1 - y^2``): then
    #: :meth:`forward_into` may write ``Y`` over ``T``.
    vjp_needs_T: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The in-place hooks are written for one formula: a subclass that changes the
        # formula and not the hooks runs its formula (the defaults), never its parent's
        # hooks (a subclass of Tanh with another derivative must not get Tanh's vjp_into).
        own = cls.__dict__
        if any(n in own for n in _FORMULAS) and not any(n in own for n in _HOOKS):
            for hook in ("forward_into", "forward_bias_into", "vjp_into"):
                setattr(cls, hook, getattr(Activation, hook))
            cls.vjp_needs_T = True
        # forward_bias_into runs forward_into's formula: a subclass with its own
        # forward_into and not its own forward_bias_into gets the default, which calls it.
        if "forward_into" in own and "forward_bias_into" not in own:
            cls.forward_bias_into = Activation.forward_bias_into  # type: ignore[method-assign]
        # Likewise the second-order products: a subclass that changes the formula and
        # gives none of them has no hvp (derivative fitting then asks for its own), and
        # a changed jacobian or vjp takes the jvp through the Jacobian.
        if any(n in own for n in _FORMULAS) and not any(n in own for n in _SECOND):
            cls.hvp = Activation.hvp  # type: ignore[method-assign]
            if "jacobian" in own or "vjp" in own:
                cls.jvp = Activation.jvp  # type: ignore[method-assign]

    def forward(self, T: Array) -> Array:
        """``Y = f(T)``; ``T`` and ``Y`` are ``(N, m)``."""
        raise NotImplementedError

    def forward_into(self, T: Array) -> Array:
        """``Y = f(T)``, free to write ``Y`` over ``T`` where ``vjp_needs_T`` is False.

        For a ``T`` in a buffer of the caller's that it reads again only as the ``T`` of
        :meth:`vjp_into`. Default: :meth:`forward` (``T`` is left as it is).
        """
        return self.forward(T)

    def forward_bias_into(self, T: Array, b: Array) -> Array:
        """:meth:`forward_into` of ``T + b``, ``b`` (m,) added to every row of ``T`` (N, m)
        in place first: ``T`` holds ``X W`` in a buffer of the caller's, and holds ``X W
        + b`` afterwards unless :meth:`forward_into` wrote ``Y`` over it. Default: the
        bias added in one pass (compiled where :func:`jacnet.accel.enabled`), then
        :meth:`forward_into`."""
        if accel.enabled() and accel.fits(T, b) and T.ndim == 2:
            _bias_kernel(T, b, False)
        else:
            np.add(T, b, out=T)
        return self.forward_into(T)

    def jacobian(self, T: Array, Y: Array) -> Array:
        """Full Jacobian ``(N, m, m)`` with ``[s, i, j] = d f_i / d t_j`` at sample ``s``.

        Takes both the pre-activation ``T`` and the output ``Y = f(T)``.
        """
        raise NotImplementedError

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        """Backward product ``G . f'`` row by row (seed: a row vector times f'_k).

        Parameters
        ----------
        T, Y : ndarray of shape (N, m)
            Pre-activation and output.
        G : ndarray of shape (N, m) or (N, q, m)
            Rows to multiply; ``q`` rows per sample for per-output Jacobians.

        Returns
        -------
        ndarray of the shape of ``G``.
        """
        J = self.jacobian(T, Y)
        N, m = T.shape
        if not isinstance(J, np.ndarray) or J.shape != (N, m, m):
            raise ValueError(
                f"{type(self).__name__}.jacobian must return an array of shape "
                f"(N, m, m) = {(N, m, m)}, got "
                f"{getattr(J, 'shape', type(J).__name__)}"
            )
        # One dtype end to end: a user Jacobian built in float64 (np.eye's default) must
        # not upcast a float32 network's backward pass.
        J = J.astype(G.dtype, copy=False)
        if G.ndim == 2:
            return np.matmul(G[:, None, :], J)[:, 0, :]
        return np.matmul(G, J)

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        """Forward product ``V . f'^T`` row by row: a tangent ``v`` of ``t`` carried to
        ``y`` (``(v . f'^T)_i = sum_j f'[i, j] v_j``). ``V`` is (N, m) or (N, R, m);
        returns ``V``'s shape. The default builds the Jacobian (checked as in :meth:`vjp`).
        """
        N, m = T.shape
        J = self.jacobian(T, Y)
        if not isinstance(J, np.ndarray) or J.shape != (N, m, m):
            raise ValueError(
                f"{type(self).__name__}.jacobian must return an array of shape "
                f"(N, m, m) = {(N, m, m)}, got {getattr(J, 'shape', type(J).__name__)}"
            )
        Jt = np.swapaxes(J.astype(V.dtype, copy=False), 1, 2)
        if V.ndim == 2:
            return np.matmul(V[:, None, :], Jt)[:, 0, :]
        return np.matmul(V, Jt)

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        """Second-order term: per row, ``d/dt <U, f'(t) V>``, i.e.
        ``h_l = sum_ij U_i V_j d^2 f_i / (dt_j dt_l)``.

        Parameters
        ----------
        T, Y : ndarray of shape (N, m)
            Pre-activation and output.
        V : ndarray of shape (N, m) or (N, R, m)
            Tangents of ``t`` (held fixed in the derivative).
        U : ndarray of ``V``'s shape
            Cotangents of ``y``, row for row with ``V``.

        Returns
        -------
        ndarray of ``V``'s shape.

        A user activation that should fit derivatives (``dTdX`` in :func:`jacnet.train`)
        implements it (an :class:`Elementwise` one may give ``second_derivative``
        instead); there is no default.
        """
        raise NotImplementedError(
            f"activation {type(self).__name__} ({self.name or 'user class'}) has no "
            "second-order term hvp(T, Y, V, U): derivative data (dTdX) needs it for every "
            "layer; implement it (see jacnet.Activation.hvp) or train without dTdX"
        )

    def vjp_into(self, T: Array, Y: Array, G: Array, tmp: Array) -> Array:
        """:meth:`vjp` for ``G`` of shape (N, m), free to overwrite ``G`` and ``tmp``.

        ``T`` is what :meth:`forward_into` left in its buffer (``Y`` itself where it wrote
        over it); ``tmp`` is scratch of ``G``'s shape and dtype. Default: :meth:`vjp`.
        """
        return self.vjp(T, Y, G)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for model files."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class Elementwise(Activation):
    """An activation with ``f_i`` depending on ``t_i`` only: f' is diagonal.

    Subclasses give :meth:`derivative`, the diagonal ``f'(t)`` as an ``(N, m)`` array.
    """

    def derivative(self, T: Array, Y: Array) -> Array:
        """Diagonal of f' per sample, ``(N, m)``."""
        raise NotImplementedError

    def _diagonal(self, T: Array, Y: Array) -> Array:
        """:meth:`derivative`, checked for shape and held in ``T``'s dtype (a user's
        float64 constants must not upcast a float32 network's backward pass)."""
        D = self.derivative(T, Y)
        if not isinstance(D, np.ndarray) or D.shape != T.shape:
            raise ValueError(
                f"{type(self).__name__}.derivative must return an array of shape "
                f"{T.shape}, got {getattr(D, 'shape', type(D).__name__)}"
            )
        return D.astype(T.dtype, copy=False)

    def jacobian(self, T: Array, Y: Array) -> Array:
        D = self._diagonal(T, Y)
        J = np.zeros(D.shape + (D.shape[1],), dtype=D.dtype)
        idx = np.arange(D.shape[1])
        J[:, idx, idx] = D
        return J

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        return G * _rows(self._diagonal(T, Y), G)

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return V * _rows(self._diagonal(T, Y), V)  # f' is diagonal: the same product

    def second_derivative(self, T: Array, Y: Array) -> Array:
        """``f''(t)`` elementwise, ``(N, m)``: what :meth:`hvp` needs. No default."""
        return Activation.hvp(self, T, Y, T, T)

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        # d^2 f_i / dt_j dt_l = f''(t_i) [i = j = l]: h = U * V * f''(t)
        D2 = self.second_derivative(T, Y)
        if not isinstance(D2, np.ndarray) or D2.shape != T.shape:
            raise ValueError(
                f"{type(self).__name__}.second_derivative must return an array of shape "
                f"{T.shape}, got {getattr(D2, 'shape', type(D2).__name__)}"
            )
        return U * V * _rows(D2.astype(V.dtype, copy=False), V)


class Identity(Elementwise):
    """``f(t) = t``, ``f'(t) = 1``."""

    name = "identity"
    vjp_needs_T = False

    def forward(self, T: Array) -> Array:
        return T.copy()

    def forward_into(self, T: Array) -> Array:
        return T  # y = t: the buffer already holds Y

    def derivative(self, T: Array, Y: Array) -> Array:
        return np.ones_like(T)

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        return G

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return V

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return np.zeros_like(T)  # f'' = 0


class Sigmoid(Elementwise):
    """Logistic ``f(t) = 1 / (1 + e^{-t})``, ``f'(t) = y (1 - y)``."""

    name = "sigmoid"
    vjp_needs_T = False

    def forward(self, T: Array) -> Array:
        return special.expit(T)

    def derivative(self, T: Array, Y: Array) -> Array:
        D = 1 - Y
        D *= Y  # y (1 - y) in one array
        return D

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return Y * (1 - Y) * (1 - 2 * Y)  # f'' = y (1 - y) (1 - 2 y)

    def forward_into(self, T: Array) -> Array:
        return special.expit(T, out=T)

    def vjp_into(self, T: Array, Y: Array, G: Array, tmp: Array) -> Array:
        if _vjp_compiled(G, Y, _SIGMOID):
            return G
        np.subtract(1, Y, out=tmp)  # G * (y (1 - y)), in derivative's order
        np.multiply(tmp, Y, out=tmp)
        return np.multiply(G, tmp, out=G)


class Tanh(Elementwise):
    """``f(t) = tanh t``, ``f'(t) = 1 - y^2``."""

    name = "tanh"
    vjp_needs_T = False

    def forward(self, T: Array) -> Array:
        return np.tanh(T)

    def derivative(self, T: Array, Y: Array) -> Array:
        D = Y * Y
        return np.subtract(1, D, out=D)  # 1 - y^2 in one array

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return -2 * Y * (1 - Y * Y)  # f'' = -2 y (1 - y^2)

    def forward_into(self, T: Array) -> Array:
        return np.tanh(T, out=T)

    def vjp_into(self, T: Array, Y: Array, G: Array, tmp: Array) -> Array:
        if _vjp_compiled(G, Y, _TANH):
            return G
        np.multiply(Y, Y, out=tmp)  # G * (1 - y^2), in derivative's order
        np.subtract(1, tmp, out=tmp)
        return np.multiply(G, tmp, out=G)


class ReLU(Elementwise):
    """``f(t) = max(t, 0)``, ``f'(t) = [t > 0]`` (0 at the kink)."""

    name = "relu"
    vjp_needs_T = False

    def forward(self, T: Array) -> Array:
        return np.maximum(T, 0)

    def derivative(self, T: Array, Y: Array) -> Array:
        return (T > 0).astype(T.dtype)

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return np.zeros_like(T)  # f'' = 0 (away from the kink)

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        return np.where(_rows(T, G) > 0, G, 0).astype(G.dtype, copy=False)

    def forward_into(self, T: Array) -> Array:
        return np.maximum(T, 0, out=T)

    def forward_bias_into(self, T: Array, b: Array) -> Array:
        if accel.enabled() and accel.fits(T, b) and T.ndim == 2:
            _bias_kernel(T, b, True)  # max(t + b, 0) in one pass
            return T
        return super().forward_bias_into(T, b)

    def vjp_into(self, T: Array, Y: Array, G: Array, tmp: Array) -> Array:
        # G * [t > 0], from Y: t > 0 exactly where y = max(t, 0) > 0. A product, not a
        # masked copy (slower; see benchmarks/README.md); it gives -0 where vjp's where
        # gives 0 (equal numbers, and equal sums).
        if _vjp_compiled(G, Y, _RELU):
            return G
        np.greater(Y, 0, out=tmp)
        return np.multiply(G, tmp, out=G)


class LeakyReLU(Elementwise):
    """``f(t) = t`` for ``t > 0``, ``a t`` otherwise; ``f'(t) = 1`` or ``a``."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = check_real(negative_slope, "negative_slope", "a finite float")

    def forward(self, T: Array) -> Array:
        return np.where(T > 0, T, self.negative_slope * T)

    def derivative(self, T: Array, Y: Array) -> Array:
        return np.where(T > 0, 1, self.negative_slope).astype(T.dtype)

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return np.zeros_like(T)  # f'' = 0 (away from the kink)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class ELU(Elementwise):
    """``f(t) = t`` for ``t > 0``, ``a (e^t - 1)`` otherwise; ``f'(t) = 1`` or ``y + a``."""

    name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = check_real(alpha, "alpha", "a finite float")

    def forward(self, T: Array) -> Array:
        return np.where(T > 0, T, self.alpha * np.expm1(np.minimum(T, 0)))

    def derivative(self, T: Array, Y: Array) -> Array:
        return np.where(T > 0, 1, Y + self.alpha).astype(T.dtype)

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return np.where(T > 0, 0, Y + self.alpha).astype(T.dtype)  # f'' = 0 or y + a

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Elementwise):
    """``f(t) = log(1 + e^t)``, ``f'(t) = sigmoid(t)``."""

    name = "softplus"

    def forward(self, T: Array) -> Array:
        return np.logaddexp(T, 0).astype(T.dtype, copy=False)

    def derivative(self, T: Array, Y: Array) -> Array:
        return special.expit(T)

    def second_derivative(self, T: Array, Y: Array) -> Array:
        s = special.expit(T)
        return s * (1 - s)  # f'' = sigmoid'(t)


class GELU(Elementwise):
    """Exact (erf) GELU: ``f(t) = t Phi(t)``, ``f'(t) = Phi(t) + t phi(t)``.

    ``Phi`` is the standard normal CDF and ``phi`` its density; this is the exact form
    (PyTorch's default, ``jax.nn.gelu(approximate=False)``), not the tanh approximation.
    """

    name = "gelu"

    def forward(self, T: Array) -> Array:
        return T * special.ndtr(T)

    def derivative(self, T: Array, Y: Array) -> Array:
        pdf = np.exp(-0.5 * T * T) * (1 / np.sqrt(2 * np.pi))
        return special.ndtr(T) + T * pdf.astype(T.dtype, copy=False)

    def second_derivative(self, T: Array, Y: Array) -> Array:
        pdf = np.exp(-0.5 * T * T) * (1 / np.sqrt(2 * np.pi))
        return (pdf * (2 - T * T)).astype(T.dtype, copy=False)  # f'' = phi (2 - t^2)


class SiLU(Elementwise):
    """Swish: ``f(t) = t sigmoid(t)``, ``f'(t) = s (1 + t (1 - s))`` with ``s = sigmoid(t)``."""

    name = "silu"

    def forward(self, T: Array) -> Array:
        return T * special.expit(T)

    def derivative(self, T: Array, Y: Array) -> Array:
        s = special.expit(T)
        return s * (1 + T * (1 - s))

    def second_derivative(self, T: Array, Y: Array) -> Array:
        s = special.expit(T)
        return s * (1 - s) * (2 + T * (1 - 2 * s))  # f'' = s (1 - s) (2 + t (1 - 2 s))


class Exp(Elementwise):
    """``f(t) = e^t``, ``f'(t) = y``: the inverse of the log link (Poisson regression)."""

    name = "exp"

    def forward(self, T: Array) -> Array:
        return np.exp(T)

    def derivative(self, T: Array, Y: Array) -> Array:
        return Y

    def second_derivative(self, T: Array, Y: Array) -> Array:
        return Y  # f'' = e^t


class Softmax(Activation):
    """``f_i(t) = e^{t_i} / sum_j e^{t_j}``; ``f' = diag(y) - y^T y``.

    Closed-form vjp: ``g . f' = y * (g - <g, y>)``.
    f' is symmetric, so jvp is the same product. Second order, with
    ``S(a) = a . f' = y * (a - <a, y>)``: ``<u, f' v> = <u v, y> - <u, y><v, y>`` and
    ``dy/dt = f'`` give ``hvp = S(u v) - <v, y> S(u) - <u, y> S(v)``.
    """

    name = "softmax"

    def forward(self, T: Array) -> Array:
        E = np.exp(T - T.max(axis=1, keepdims=True))
        E /= E.sum(axis=1, keepdims=True)
        return E

    def jacobian(self, T: Array, Y: Array) -> Array:
        J = -Y[:, :, None] * Y[:, None, :]
        idx = np.arange(Y.shape[1])
        J[:, idx, idx] += Y
        return J

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        Yr = _rows(Y, G)
        return Yr * (G - _rowsum(G * Yr))

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return self.vjp(T, Y, V)  # f' = f'^T: the same product

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        Yr = _rows(Y, V)
        return (self.vjp(T, Y, U * V) - _rowsum(V * Yr) * self.vjp(T, Y, U)
                - _rowsum(U * Yr) * self.vjp(T, Y, V))


class LogSoftmax(Activation):
    """``f_i(t) = t_i - log sum_j e^{t_j}``; ``f'[i, j] = delta_ij - p_j``, ``p = e^y``.

    Closed-form vjp: ``g . f' = g - (sum_i g_i) p``.
    jvp: ``v . f'^T = v - <v, p>``. Second order: ``<u, f' v> = <u, v> - (sum u) <p, v>``
    and ``dp/dt = diag(p) - p^T p`` give ``hvp = -(sum_i u_i) p * (v - <v, p>)``.
    """

    name = "log_softmax"

    def forward(self, T: Array) -> Array:
        S = T - T.max(axis=1, keepdims=True)
        return S - np.log(np.exp(S).sum(axis=1, keepdims=True))

    def jacobian(self, T: Array, Y: Array) -> Array:
        P = np.exp(Y)
        m = Y.shape[1]
        return np.eye(m, dtype=Y.dtype)[None, :, :] - P[:, None, :]

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        return G - _rowsum(G) * _rows(np.exp(Y), G)

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return V - _rowsum(V * _rows(np.exp(Y), V))

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        P = _rows(np.exp(Y), V)
        return -_rowsum(U) * P * (V - _rowsum(V * P))


class Sparsemax(Activation):
    """Euclidean projection onto the simplex (Martins & Astudillo, 2016).

    ``f(t) = max(t - tau, 0)`` with ``tau`` chosen so the outputs sum to 1. On the support
    ``S = {i : y_i > 0}`` with indicator ``s``: ``f' = diag(s) - s^T s / |S|``.

    Closed-form vjp: ``g . f' = s * (g - <g, s> / |S|)``.
    f' is symmetric (jvp = vjp) and constant while the support stays: its second-order
    term is 0 wherever f' is defined (off the points where a unit enters the support).
    """

    name = "sparsemax"

    def forward(self, T: Array) -> Array:
        m = T.shape[1]
        # Shift-invariant: from the row max, so a large common offset costs no precision
        # in the cumulative sums (float32 rows near 1e4 lost 1e-3 of their sum to it).
        T = T - T.max(axis=1, keepdims=True)
        Z = -np.sort(-T, axis=1)  # descending
        k = np.arange(1, m + 1, dtype=T.dtype)
        cums = np.cumsum(Z, axis=1)
        in_support = 1 + k * Z > cums
        k_max = in_support.sum(axis=1, keepdims=True)
        tau = (np.take_along_axis(cums, k_max - 1, axis=1) - 1) / k_max.astype(T.dtype)
        return np.maximum(T - tau, 0)

    def jacobian(self, T: Array, Y: Array) -> Array:
        s = (Y > 0).astype(Y.dtype)
        J = -s[:, :, None] * s[:, None, :] / s.sum(axis=1)[:, None, None]
        idx = np.arange(Y.shape[1])
        J[:, idx, idx] += s
        return J

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        s = (Y > 0).astype(Y.dtype)
        sr = _rows(s, G)
        return sr * (G - _rowsum(G * sr) / _rowsum(sr))

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return self.vjp(T, Y, V)  # f' = f'^T: the same product

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        return np.zeros_like(U * V)  # f' is piecewise constant: f'' = 0 where defined


class L2Normalize(Activation):
    """``f(t) = t / max(||t||, eps)``; ``f' = (I - y^T y) / ||t||`` where ``||t|| > eps``.

    Closed-form vjp: ``g . f' = (g - <g, y> y) / ||t||``. Within ``eps`` of zero, where
    ``t / ||t||`` has no derivative, ``f`` is ``t / eps`` and ``f' = I / eps`` (finite, as
    PyTorch's ``normalize`` with the same default ``eps``); a zero row maps to zero.

    f' is symmetric (jvp = vjp). Second order, from ``d||t||/dt = y`` and ``dy/dt = f'``:
    ``hvp = -(<u, f' v> y + <v, y> f' u + <u, y> f' v) / ||t||`` (0 within ``eps``,
    where f is linear).
    """

    name = "l2_normalize"

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = check_real(eps, "eps", "a positive finite float", lambda v: v > 0)

    def _norm(self, T: Array) -> tuple[Array, Array]:
        """``(max(||t||, eps), [||t|| > eps])`` per row, as (N, 1) columns."""
        n = np.sqrt(np.einsum("ij,ij->i", T, T))[:, None]
        return np.maximum(n, self.eps), (n > self.eps).astype(T.dtype)

    def forward(self, T: Array) -> Array:
        return T / self._norm(T)[0]

    def jacobian(self, T: Array, Y: Array) -> Array:
        m = T.shape[1]
        n, outside = self._norm(T)
        J = np.eye(m, dtype=T.dtype)[None] - (outside * Y)[:, :, None] * Y[:, None, :]
        return J / n[:, :, None]

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        n, outside = self._norm(T)
        Yr = _rows(outside * Y, G)
        return (G - _rowsum(G * Yr) * Yr) / _rows(n, G)

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return self.vjp(T, Y, V)  # f' = f'^T: the same product

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        n, outside = self._norm(T)
        Yo = _rows(outside * Y, V)  # 0 within eps: every term below vanishes there
        fu, fv = self.vjp(T, Y, U), self.vjp(T, Y, V)
        return -(_rowsum(U * fv) * Yo + _rowsum(V * Yo) * fu + _rowsum(U * Yo) * fv) / (
            _rows(n, V))

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps}


class LayerNorm(Activation):
    """Layer normalisation without affine parameters.

    ``y = (t - mean t) / s`` with ``s = sqrt(var t + eps)`` (biased variance, as PyTorch);
    ``f'[i, j] = (delta_ij - 1/m) / s - y_i y_j / (m s)``.

    Closed-form vjp: ``g . f' = (g - mean(g) - y mean(g y)) / s``.

    f' is symmetric (jvp = vjp). Second order, from ``ds/dt = y / m`` and ``dy/dt = f'``:
    ``hvp = -(<u, f' v> y + <v, y> f' u + <u, y> f' v) / (m s)``.
    """

    name = "layer_norm"

    def __init__(self, eps: float = 1e-5) -> None:
        self.eps = check_real(eps, "eps", "a non-negative finite float", lambda v: v >= 0)

    def _scale(self, T: Array) -> Array:
        return np.sqrt(T.var(axis=1, keepdims=True) + self.eps)

    def forward(self, T: Array) -> Array:
        return (T - T.mean(axis=1, keepdims=True)) / self._scale(T)

    def jacobian(self, T: Array, Y: Array) -> Array:
        m = T.shape[1]
        s = self._scale(T)[:, :, None]
        J = (np.eye(m, dtype=T.dtype)[None] - 1 / m) - Y[:, :, None] * Y[:, None, :] / m
        return J / s

    def vjp(self, T: Array, Y: Array, G: Array) -> Array:
        Yr = _rows(Y, G)
        return (G - G.mean(axis=-1, keepdims=True) - Yr * (G * Yr).mean(axis=-1, keepdims=True)) / (
            _rows(self._scale(T), G)
        )

    def jvp(self, T: Array, Y: Array, V: Array) -> Array:
        return self.vjp(T, Y, V)  # f' = f'^T: the same product

    def hvp(self, T: Array, Y: Array, V: Array, U: Array) -> Array:
        Yr = _rows(Y, V)
        fu, fv = self.vjp(T, Y, U), self.vjp(T, Y, V)
        ms = T.shape[1] * _rows(self._scale(T), V)
        return -(_rowsum(U * fv) * Yr + _rowsum(V * Yr) * fu + _rowsum(U * Yr) * fv) / ms

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps}


#: The package's own activation classes (what ``ACTIVATIONS`` holds before any user
#: registration).
BUILTINS: tuple[type[Activation], ...] = (
    Identity,
    Sigmoid,
    Tanh,
    ReLU,
    LeakyReLU,
    ELU,
    Softplus,
    GELU,
    SiLU,
    Exp,
    Softmax,
    LogSoftmax,
    Sparsemax,
    L2Normalize,
    LayerNorm,
)

#: name -> class, built from the classes themselves (plus the alias ``logistic``).
ACTIVATIONS: Registry[Activation] = Registry("activation", Activation, BUILTINS)
ACTIVATIONS.register(Sigmoid, "logistic")


def register_activation(cls: type[Activation]) -> type[Activation]:
    """Register a user activation class under ``cls.name`` (usable as a decorator).

    Registered names can be passed as strings and are needed to load a model file that
    uses the activation.
    """
    return ACTIVATIONS.register(cls)


def get_activation(spec: str | Activation, **config: Any) -> Activation:
    """Return an activation instance from a name or an instance.

    Parameters
    ----------
    spec : str or Activation
        A registered name (see ``ACTIVATIONS``) or an instance, returned as is.
    **config
        Constructor arguments when ``spec`` is a name.
    """
    return ACTIVATIONS.create(spec, **config)
