"""Backpropagation on mini-batches with buffers reused from batch to batch.

:class:`BatchBackprop` computes what ``Network._loss_and_flat_grad`` computes, the seed's
backpropagation (L1-L4, R-b, R-w) with the same loss fusions, for one batch after another
of at most ``n_max`` rows; tests prove the two paths give the same loss and gradient. It
is the mini-batch training loop's fast path. What differs is where the numbers live:

- every pre-activation ``T = X W + b`` is written by the GEMM into the layer's own buffer
  (``out=``) and the bias is added in place;
- the elementwise built-ins (identity, ReLU, tanh, sigmoid) are applied in place, ``Y``
  overwrites ``T``: their backward needs only ``Y`` (ReLU's ``[t > 0]`` is ``[y > 0]``);
- softmax + cross-entropy and identity + squared error are computed in the output
  layer's buffers, in the general path's order of operations;
- ``G = delta W^T`` goes into a buffer, the activation's vjp multiplies it in place, and
  ``dW``, ``db`` are written straight into the flat gradient.

Any other activation or loss runs its own ``forward``, ``vjp``, ``fused`` or
``value_and_grad``, exactly as the general path does. The buffers are private: nothing
returned to a caller aliases them, except the gradient vector the caller passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy import special

from .activations import Activation, Identity, ReLU, Sigmoid, Softmax, Tanh
from .layers import checked_forward, checked_vjp
from .losses import MSE, SSE, CrossEntropy, Loss, Scaled, _sample_factor

if TYPE_CHECKING:
    from .network import Network

Array = np.ndarray

__all__ = ["BatchBackprop"]

# In-place forward of the elementwise built-ins: Y = f(T) written over T.
_FORWARD_IN_PLACE: dict[type[Activation], Callable[[Array], Array]] = {
    Identity: lambda T: T,
    ReLU: lambda T: np.maximum(T, 0, out=T),
    Tanh: lambda T: np.tanh(T, out=T),
    Sigmoid: lambda T: special.expit(T, out=T),
}


def _vjp_identity(Y: Array, G: Array, tmp: Array) -> Array:
    return G  # f' = I


def _vjp_relu(Y: Array, G: Array, tmp: Array) -> Array:
    # G * [t > 0] (ReLU.vjp); t > 0 exactly where y = max(t, 0) > 0. A masked copyto did
    # the same 15 times slower (250 µs for 128 x 256 float32).
    np.greater(Y, 0, out=tmp)
    return np.multiply(G, tmp, out=G)


def _vjp_tanh(Y: Array, G: Array, tmp: Array) -> Array:
    np.multiply(Y, Y, out=tmp)  # G * (1 - y^2), in Tanh.derivative's order
    np.subtract(1, tmp, out=tmp)
    return np.multiply(G, tmp, out=G)


def _vjp_sigmoid(Y: Array, G: Array, tmp: Array) -> Array:
    np.subtract(1, Y, out=tmp)  # G * (y (1 - y)), in Sigmoid.derivative's order
    np.multiply(Y, tmp, out=tmp)
    return np.multiply(G, tmp, out=G)


# In-place vjp from Y alone: vjp(G) = G . f', written over G (tmp: scratch of G's shape).
_VJP_IN_PLACE: dict[type[Activation], Callable[[Array, Array, Array], Array]] = {
    Identity: _vjp_identity,
    ReLU: _vjp_relu,
    Tanh: _vjp_tanh,
    Sigmoid: _vjp_sigmoid,
}


class BatchBackprop:
    """Loss and flat gradient of ``net`` on batches of at most ``n_max`` rows.

    Equivalent to ``net._loss_and_flat_grad(X, T, loss, w, grad)`` on checked arrays of the
    network's dtype; the network's parameters are read at every call (they are views into
    theta, so in-place updates are seen).

    Parameters
    ----------
    net : Network
    loss : Loss
    n_max : int
        The largest batch; smaller batches use the leading rows of the buffers.
    grad : ndarray of shape (P,), optional
        Where every call writes dJ/dtheta; allocated when not given (``self.grad``).
    """

    def __init__(self, net: Network, loss: Loss, n_max: int, grad: Array | None = None) -> None:
        layers = net.layers
        dt = net.dtype
        self.n_max = int(n_max)
        self.loss = loss
        self.grad = np.empty(net.n_params, dtype=dt) if grad is None else grad
        self._W = [layer.W for layer in layers]
        self._b = [layer.b for layer in layers]
        self._acts = [layer.activation for layer in layers]
        self._dW_db = net.split_flat(self.grad)
        hidden = self._acts[:-1]
        self._fwd = [_FORWARD_IN_PLACE.get(type(a)) for a in hidden]
        self._vjp = [_VJP_IN_PLACE.get(type(a)) for a in hidden]
        # The output layer with its loss: a scale factor (Scaled), then the base loss.
        base, self._factor = (loss.base, loss.factor) if type(loss) is Scaled else (loss, 1.0)
        out_act = type(self._acts[-1])
        self._out = "generic"
        if out_act is Softmax and type(base) is CrossEntropy:
            self._out = "softmax_ce"
        elif out_act is Identity and type(base) in (SSE, MSE):
            self._out = "mse" if type(base) is MSE else "sse"
        widths = [layer.n_out for layer in layers]
        n = self.n_max
        self._T = [np.empty((n, m), dtype=dt) for m in widths]
        self._G = [np.empty((n, m), dtype=dt) for m in widths[:-1]]
        self._tmp = [np.empty((n, m), dtype=dt) for m in widths[:-1]]
        q = widths[-1]
        self._D, self._R = np.empty((n, q), dtype=dt), np.empty((n, q), dtype=dt)
        self._col = [np.empty((n, 1), dtype=dt) for _ in range(3)]
        self._views: dict[int, tuple[list[Array], ...]] = {}

    def _rows(self, n: int) -> tuple[list[Array], ...]:
        """The buffers' leading ``n`` rows (contiguous views), made once per batch size."""
        views = self._views.get(n)
        if views is None:
            views = (
                [a[:n] for a in self._T],
                [a[:n] for a in self._G],
                [a[:n] for a in self._tmp],
                [self._D[:n], self._R[:n], *(c[:n] for c in self._col)],
            )
            self._views[n] = views
        return views

    def __call__(self, X: Array, T: Array, w: Array | None = None) -> float:
        """The loss on ``(X, T, w)``; dJ/dtheta is written into ``self.grad``.

        ``X`` (n, n_in), ``T`` (n, n_out) and ``w`` (n,) or None, already checked and of
        the network's dtype, ``n <= n_max``.
        """
        n = X.shape[0]
        Ts, Gs, tmps, outs = self._rows(n)
        Ws, bs, acts = self._W, self._b, self._acts
        L = len(Ws)
        # Forward, keeping (T, Y) of every hidden layer: the forward cache.
        Ys: list[Array] = [X]
        Tkeep: list[Array] = []
        Y = X
        for k in range(L - 1):
            Tk = np.matmul(Y, Ws[k], out=Ts[k])  # seed L2: t_k = y_{k-1} W_k + b_k
            np.add(Tk, bs[k], out=Tk)
            fwd = self._fwd[k]
            if fwd is not None:
                Y = fwd(Tk)
            else:
                Y = checked_forward(acts[k], Tk)
            Tkeep.append(Tk)
            Ys.append(Y)
        Tn = np.matmul(Y, Ws[-1], out=Ts[-1])
        np.add(Tn, bs[-1], out=Tn)
        value, delta = self._output(Tn, T, w, outs)
        # Backward: seed R-w and R-b from the last layer down.
        dW_db = self._dW_db
        for k in range(L - 1, -1, -1):
            dW, db = dW_db[k]
            np.dot(Ys[k].T, delta, out=dW)  # seed R-w: dJ/dW_k = Y_{k-1}^T Delta_k
            np.sum(delta, axis=0, out=db)
            if k:
                G = np.matmul(delta, Ws[k].T, out=Gs[k - 1])
                vjp = self._vjp[k - 1]
                if vjp is not None:
                    delta = vjp(Ys[k], G, tmps[k - 1])  # seed R-b, in place
                else:
                    delta = checked_vjp(acts[k - 1], Tkeep[k - 1], Ys[k], G)
        return value

    def _output(
        self, Tn: Array, T: Array, w: Array | None, outs: list[Array]
    ) -> tuple[float, Array]:
        """``(J, delta_n)`` from the output pre-activation ``Tn`` (overwritten)."""
        kind = self._out
        if kind == "generic":
            act = self._acts[-1]
            Yn = checked_forward(act, Tn)
            fused = self.loss.fused(act, Tn, Yn, T, w)
            if fused is not None:
                return fused
            value, dY = self.loss.value_and_grad(Yn, T, w)
            return value, checked_vjp(act, Tn, Yn, dY)  # seed L1: delta_n = dJ/dy_n . f'_n
        D, R, c1, c2, c3 = outs
        n = Tn.shape[0]
        if kind == "softmax_ce":
            # CrossEntropy.fused: log y by a stable log-softmax, delta = c (y sum_i t_i - t).
            np.max(Tn, axis=1, keepdims=True, out=c1)
            S = np.subtract(Tn, c1, out=Tn)
            E = np.exp(S, out=R)
            np.sum(E, axis=1, keepdims=True, out=c2)
            np.log(c2, out=c3)
            logY = np.subtract(S, c3, out=S)
            Y = np.divide(E, c2, out=E)  # Softmax.forward
            c = _sample_factor(w, n, D.dtype)
            value = -float(np.vdot(np.multiply(T, c, out=D), logY))
            np.sum(T, axis=1, keepdims=True, out=c1)
            np.multiply(Y, c1, out=D)
            np.subtract(D, T, out=D)
            delta = np.multiply(D, c, out=D)
        else:  # identity output, (mean) squared error: dJ/dY = 2 c (y - t), delta = dJ/dY
            np.subtract(Tn, T, out=R)
            if kind == "mse":
                np.multiply(R, _sample_factor(w, n, D.dtype), out=D)
            elif w is not None:
                np.multiply(R, w[:, None], out=D)
            else:
                np.copyto(D, R)
            value = float(np.vdot(D, R))
            delta = np.multiply(D, 2, out=D)
        if self._factor != 1.0:  # Scaled: factor * value, factor * delta
            value = self._factor * value
            delta = np.multiply(delta, self._factor, out=delta)
        return value, delta
