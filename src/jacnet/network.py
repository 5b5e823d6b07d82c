"""The network: a stack of dense layers, backpropagation as the seed derives it.

Rows are samples; ``Y = f(X W + b)`` layer by layer; ``W`` is ``(n_in, n_out)``. All
parameters live in one flat vector ``theta = [W_1.ravel(), b_1, W_2.ravel(), b_2, ...]``
(C order) and every ``layer.W``, ``layer.b`` is a view into it, so solvers and
optimizers update the network in place.

:class:`Backprop` is the one backward pass (seed L1-L4, R-b, R-w): ``loss_and_grad``, the
solvers and the mini-batch loop (with buffers reused from batch to batch) all run it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import gauss_newton as _gn
from . import jacobian as _jac
from .layers import Dense, Product, checked_forward, checked_vjp, forward_cache
from .losses import Loss, OutputBuffers, get_loss
from .validation import as_matrix, as_weights, check_int, finite_as

Array = np.ndarray

__all__ = ["Network", "Backprop"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Network:
    """A multilayer perceptron ``y_n = f_n(... f_1(x W_1 + b_1) ... W_n + b_n)``.

    Parameters
    ----------
    layers : list of Dense
        Consecutive layers; each ``n_in`` must equal the previous ``n_out``.
    seed : int, numpy.random.Generator or None
        Source of the initial weights (He for rectifiers, Glorot otherwise).
    dtype : float32 or float64, default float64
        The one dtype of parameters, activations and derivatives.
    """

    def __init__(
        self,
        layers: list[Dense],
        seed: int | np.random.Generator | None = None,
        dtype: Any = np.float64,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one Dense layer, got an empty list")
        for k, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{k}] must be a jacnet.Dense, got {type(layer).__name__}")
            if k and layer.n_in != layers[k - 1].n_out:
                raise ValueError(
                    f"layers[{k}].n_in must equal layers[{k - 1}].n_out = "
                    f"{layers[k - 1].n_out}, got {layer.n_in}"
                )
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("layers must be distinct Dense objects (one is listed twice)")
        for k, layer in enumerate(layers):
            # A network's layers read their W and b from its theta; a second network
            # would rebind them to its own, and the first would silently compute with it.
            if layer.bound:
                raise ValueError(
                    f"layers[{k}] already belongs to another Network: give each network "
                    "its own Dense objects (Network.copy() makes an independent copy)"
                )
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        # Everything that can fail comes before the layers are bound to this network.
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.layers = layers
        self.dtype = dt
        self._offsets = _jac.param_offsets(layers)
        self._theta = np.zeros(self._offsets[-1][2], dtype=dt)
        self._bind()
        self.init_params(rng)

    def _bind(self) -> None:
        """Make every layer's W and b views into ``self._theta``."""
        for layer, (w0, b0, end) in zip(self.layers, self._offsets, strict=True):
            layer.bind(
                self._theta[w0:b0].reshape(layer.n_in, layer.n_out), self._theta[b0:end], self
            )

    def __copy__(self) -> Network:
        # A shallow copy would share the layers and rebind them to its own theta, taking
        # them from this network: copy.copy gives an independent network instead.
        return self.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickle and deepcopy restore theta and the layers' arrays as separate copies;
        # rebind W and b as views so that theta stays the one home of the parameters.
        self.__dict__.update(state)
        if not self._theta.flags.writeable:  # e.g. loaded from a read-only memmap
            self._theta = self._theta.copy()
        self._bind()

    # ----------------------------------------------------------------- parameters
    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    @property
    def n_params(self) -> int:
        """P, the length of theta."""
        return self._theta.size

    @property
    def theta(self) -> Array:
        """The flat parameter vector itself (a writable view, not a copy)."""
        return self._theta

    def init_params(self, seed: int | np.random.Generator | None = None) -> None:
        """Redraw all weights from ``numpy.random.default_rng(seed)``; biases to zero."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for layer in self.layers:
            layer.init_params(rng)

    def get_flat(self) -> Array:
        """A copy of theta, shape (P,)."""
        return self._theta.copy()

    def set_flat(self, theta: Array) -> None:
        """Copy ``theta`` (P,) into the parameters."""
        theta = np.asarray(theta)
        if theta.shape != self._theta.shape:
            raise ValueError(f"theta must have shape ({self.n_params},), got {theta.shape}")
        if theta.dtype.kind not in "biuf":
            raise ValueError(f"theta must hold finite real numbers, got dtype {theta.dtype}")
        self._theta[...] = finite_as(theta, self.dtype, "theta")

    def split_flat(self, v: Array) -> list[tuple[Array, Array]]:
        """Views ``[(W_1, b_1), ...]`` of a flat vector laid out like theta."""
        return [
            (v[w0:b0].reshape(layer.n_in, layer.n_out), v[b0:end])
            for layer, (w0, b0, end) in zip(self.layers, self._offsets, strict=True)
        ]

    def weight_mask(self) -> Array:
        """1 where theta holds a weight, 0 where it holds a bias, shape (P,)."""
        mask = np.zeros(self.n_params, dtype=self.dtype)
        for w0, b0, _ in self._offsets:
            mask[w0:b0] = 1
        return mask

    def copy(self) -> Network:
        """An independent network with the same layers' settings and parameters."""
        layers = [Dense(la.n_in, la.n_out, la.activation) for la in self.layers]
        net = Network(layers, seed=0, dtype=self.dtype)
        net.set_flat(self._theta)
        return net

    # -------------------------------------------------------------------- checks
    def check_X(self, X: Any, name: str = "X") -> Array:
        """``X`` as a finite (N, n_in) array of the network's dtype."""
        return as_matrix(X, name, self.dtype, n_cols=self.n_in)

    def check_T(self, T: Any, n_rows: int, name: str = "T") -> Array:
        """``T`` as a finite (N, n_out) array; a vector is accepted when n_out == 1."""
        return as_matrix(T, name, self.dtype, n_cols=self.n_out, n_rows=n_rows,
                         allow_1d=self.n_out == 1)

    # ------------------------------------------------------------------- forward
    def forward(self, X: Any) -> Array:
        """Outputs ``Y`` (N, n_out) for inputs ``X`` (N, n_in)."""
        return self._forward_last(self.check_X(X))[1]

    __call__ = forward

    # ------------------------------------------------------------------ backprop
    def backprop(
        self, loss: str | Loss = "sse", n_max: int | None = None, grad: Array | None = None
    ) -> Backprop:
        """The backward pass of ``loss`` on this network: ``bp(X, T, w)`` returns J and
        writes dJ/dtheta into ``bp.grad``.

        Parameters
        ----------
        loss : str or Loss, default "sse"
        n_max : int, optional
            The largest batch: buffers for batches of at most ``n_max`` rows, made once
            and reused by every call (the mini-batch loop's). None: fresh arrays.
        grad : ndarray of shape (P,), optional
            Where every call writes dJ/dtheta (``bp.grad``): C-contiguous, writeable, of
            the network's dtype. Allocated when not given.
        """
        n_max = None if n_max is None else check_int(n_max, "n_max")
        return Backprop(self, get_loss(loss), n_max, grad)

    def loss(self, X: Any, T: Any, loss: str | Loss = "sse", sample_weight: Any = None) -> float:
        """The loss value only."""
        X = self.check_X(X)
        T = self.check_T(T, X.shape[0])
        w = as_weights(sample_weight, X.shape[0], self.dtype)
        return self.evaluate(X, T, get_loss(loss), w)[0]

    def evaluate(
        self, X: Array, T: Array, loss: Loss, w: Array | None, chunk: int | None = None,
        product: Product | None = None,
    ) -> tuple[float, Array, list[tuple[Array, Array, Array]] | None]:
        """Loss value, outputs and forward cache on arrays already checked (``check_X``,
        ``check_T``, ``as_weights``): the solvers' full-batch evaluation.

        The forward pass runs on at most ``chunk`` rows at a time (default: a bounded
        number of elements per layer), so that its memory is that of the outputs, not of
        every hidden layer over all N samples (Levenberg-Marquardt on large N). The loss
        takes the fused path with the output activation when there is one.

        Returns
        -------
        value : float
        Y : ndarray of shape (N, n_out)
        cache : list of (input, T, Y) per layer, or None
            The forward cache when all N rows ran as one chunk (its memory is then bounded
            like a chunk's), else None. Levenberg-Marquardt hands the cache of the accepted
            trial to the next Gauss-Newton system, which would otherwise run the same
            forward pass again. ``product``: as in :meth:`Dense.forward` (LM passes
            :func:`layers.blas_matmul`).
        """
        N = X.shape[0]
        step = chunk or _jac.default_chunk(N, max(layer.n_out for layer in self.layers))
        cache = None
        if step >= N:
            cache = forward_cache(self.layers, X, product)
            _, Tn, Y = cache[-1]
        else:
            Tn = np.empty((N, self.n_out), dtype=self.dtype)
            Y = np.empty_like(Tn)
            for start in range(0, N, step):
                Tn[start : start + step], Y[start : start + step] = self._forward_last(
                    X[start : start + step], product
                )
        fused = loss.fused(self.layers[-1].activation, Tn, Y, T, w)
        return (fused[0] if fused is not None else loss.value(Y, T, w)), Y, cache

    def _forward_last(self, X: Array, product: Product | None = None) -> tuple[Array, Array]:
        """The last layer's pre-activation and output on checked ``X``."""
        Y = X
        for layer in self.layers:
            Tn, Y = layer.forward(Y, product)
        return Tn, Y

    def loss_and_flat_grad(
        self, X: Any, T: Any, loss: str | Loss = "sse", sample_weight: Any = None
    ) -> tuple[float, Array]:
        """``(J, dJ/dtheta)`` with the gradient flat, shape (P,), laid out like theta."""
        X = self.check_X(X)
        T = self.check_T(T, X.shape[0])
        w = as_weights(sample_weight, X.shape[0], self.dtype)
        bp = self.backprop(loss)
        return bp(X, T, w), bp.grad

    def loss_and_grad(
        self, X: Any, T: Any, loss: str | Loss = "sse", sample_weight: Any = None
    ) -> tuple[float, list[tuple[Array, Array]]]:
        """Loss and its gradient by the seed's backpropagation.

        Parameters
        ----------
        X : array-like of shape (N, n_in)
        T : array-like of shape (N, n_out)
            Targets (a vector when n_out == 1).
        loss : str or Loss, default "sse"
            ``"sse"`` is the seed's J summed over samples; see ``jacnet.LOSSES``.
        sample_weight : array-like of shape (N,), optional

        Returns
        -------
        loss : float
        grads : list of (dW, db)
            ``dW`` (n_in, n_out) and ``db`` (n_out,) per layer.
        """
        value, g = self.loss_and_flat_grad(X, T, loss, sample_weight)
        return value, self.split_flat(g)

    # ----------------------------------------------------------------- Jacobians
    def jacobian(self, X: Any, chunk: int | None = None, out: Array | None = None) -> Array:
        """Per-output parameter Jacobian (seed 1-6, R-b, R-w).

        Parameters
        ----------
        X : array-like of shape (N, n_in)
        chunk : int, optional
            Samples per chunk of the computation (the result is the same).
        out : ndarray of shape (N, n_out, P), optional
            Where to write J: C-contiguous, writeable, of the network's dtype. A loop that
            needs J again and again (a solver of one's own) saves the fresh allocation of
            each call, which for a large J costs more than filling it (page faults).

        Returns
        -------
        J : ndarray of shape (N, n_out, P)
            ``J[s, i, p] = dy_{s,i} / dtheta_p`` in theta order; ``out`` when given.
        """
        X = self.check_X(X)
        if out is not None:
            shape = (X.shape[0], self.n_out, self.n_params)
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a numpy ndarray, got {type(out).__name__}")
            if out.shape != shape or out.dtype != self.dtype:
                raise ValueError(
                    f"out must have shape {shape} and dtype {self.dtype}, got {out.shape} "
                    f"{out.dtype}"
                )
            if not (out.flags.c_contiguous and out.flags.writeable):
                raise ValueError("out must be C-contiguous and writeable")
        return _jac.param_jacobian(self.layers, X, self._chunk(chunk), out=out)

    def input_jacobian(self, X: Any, chunk: int | None = None) -> Array:
        """``dy_{s,i} / dx_{s,j}``, shape (N, n_out, n_in)."""
        return _jac.input_jacobian(self.layers, self.check_X(X), self._chunk(chunk))

    def gauss_newton(
        self, X: Any, R: Any, weights: Any = None, chunk: int | None = None
    ) -> tuple[Array, Array]:
        """``(J^T W J, J^T W r)`` accumulated over chunks, never holding all of J.

        Parameters
        ----------
        X : array-like of shape (N, n_in)
        R : array-like of shape (N, n_out)
            Residuals, e.g. ``Y - T``.
        weights : array-like of shape (N,) or (N, n_out), optional
            W's diagonal: per-sample weights repeated over outputs, or one per output.
        chunk : int, optional
            Samples per chunk; memory is O(P^2 + chunk * n_out * P).

        Returns
        -------
        JtJ : ndarray of shape (P, P)
        Jtr : ndarray of shape (P,)
        """
        X = self.check_X(X)
        R = self.check_T(R, X.shape[0], name="R")
        w: Array | None
        if np.ndim(weights) == 2:
            w = self.check_T(weights, X.shape[0], name="weights")
            if (w < 0).any():
                raise ValueError("weights must be non-negative")
            if not w.sum() > 0:  # as as_weights for per-sample weights
                raise ValueError("weights must not be all zero")
        else:
            w = as_weights(weights, X.shape[0], self.dtype, name="weights")
        return _gn.normal_equations(self.layers, X, R, w, chunk=self._chunk(chunk))

    @staticmethod
    def _chunk(chunk: int | None) -> int | None:
        if chunk is None:
            return None
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
        return int(chunk)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Network([\n  {inner}\n], dtype={self.dtype.name}, n_params={self.n_params})"


class _Rows(NamedTuple):
    """Where one call of :class:`Backprop` writes, per layer (None: a fresh array)."""

    T: list[Array | None]  # T_k = Y_{k-1} W_k + b_k, every layer
    G: list[Array | None]  # delta_{k+1} W_{k+1}^T, then G . f'_k, every hidden layer
    tmp: list[Array | None]  # the hidden activations' vjp scratch
    out: OutputBuffers | None  # the output layer's fused loss


class Backprop:
    """The seed's backpropagation (L1-L4, R-b, R-w) of ``loss`` on ``net``: the one
    backward pass that the loss gradients, the solvers and mini-batch training run.

    Made by :meth:`Network.backprop`. ``bp(X, T, w)`` returns J and writes dJ/dtheta into
    ``bp.grad``. The network's parameters are read at every call (views into theta, so
    in-place updates are seen). Two homes for the numbers, the same numbers bit for bit
    (tests prove it):

    - fresh arrays (``n_max`` None): the activations' ``forward`` and ``vjp``, the loss's
      ``fused`` or ``value_and_grad``;
    - buffers for batches of at most ``n_max`` rows, made once: every ``T = X W + b`` is
      written into its layer's buffer and ``b`` added in place, the activations run their
      in-place hooks (``forward_into``: ``Y`` over ``T`` where f' needs only ``Y``;
      ``vjp_into``: ``G . f'`` over ``G``), the output layer with its loss runs the loss's
      ``fused_into`` in the output buffers where it has one. Nothing returned aliases the
      buffers, except ``grad``.
    """

    def __init__(
        self, net: Network, loss: Loss, n_max: int | None = None, grad: Array | None = None
    ) -> None:
        if grad is None:
            grad = np.empty(net.n_params, dtype=net.dtype)
        elif not (isinstance(grad, np.ndarray) and grad.shape == (net.n_params,)
                  and grad.dtype == net.dtype and grad.flags.c_contiguous
                  and grad.flags.writeable):
            raise ValueError(
                f"grad must be a writeable C-contiguous array of shape ({net.n_params},) "
                f"and dtype {net.dtype}, got {getattr(grad, 'shape', type(grad).__name__)}"
            )
        self.loss = loss
        self.grad = grad
        self.n_max = n_max
        self._layers = net.layers
        self._dW_db = net.split_flat(grad)
        L = len(net.layers)
        self._views: dict[int, _Rows] = {}
        self._fresh = _Rows([None] * L, [None] * (L - 1), [None] * (L - 1), None)
        widths = [layer.n_out for layer in net.layers]
        n, dt = n_max or 0, net.dtype  # the buffers (none without n_max)
        self._T = [np.empty((n, m), dt) for m in widths] if n_max else []
        self._G = [np.empty((n, m), dt) for m in widths[:-1]] if n_max else []
        self._tmp = [np.empty((n, m), dt) for m in widths[:-1]] if n_max else []
        self._out = OutputBuffers.empty(n, widths[-1], dt) if n_max else None

    def _rows(self, n: int) -> _Rows:
        """The buffers' leading ``n`` rows (contiguous views), made once per batch size;
        None everywhere without buffers."""
        if self._out is None:
            return self._fresh
        views = self._views.get(n)
        if views is None:
            if n > self._out.D.shape[0]:
                raise ValueError(f"a batch holds at most n_max = {self.n_max} rows, got {n}")
            views = _Rows([a[:n] for a in self._T], [a[:n] for a in self._G],
                          [a[:n] for a in self._tmp], self._out.rows(n))
            self._views[n] = views
        return views

    def __call__(self, X: Array, T: Array, w: Array | None = None) -> float:
        """The loss J on ``(X, T, w)``; dJ/dtheta is written into ``self.grad``.

        ``X`` (n, n_in), ``T`` (n, n_out) and ``w`` (n,) or None, already checked and of
        the network's dtype (``Network.check_X``, ``check_T``); ``n <= n_max``.
        """
        rows = self._rows(X.shape[0])
        layers = self._layers
        hidden = forward_cache(layers[:-1], X, out=rows.T[:-1])
        Tn = layers[-1].pre_activation(hidden[-1][2] if hidden else X, out=rows.T[-1])
        value, delta = self._output(Tn, T, w, rows.out)
        for k in range(len(layers) - 1, -1, -1):  # from the last layer down
            dW, db = self._dW_db[k]
            X_in = hidden[k - 1][2] if k else X  # layer k's input
            np.dot(X_in.T, delta, out=dW)  # seed R-w: dJ/dW_k = Y_{k-1}^T Delta_k
            # dJ/db_k: delta_k summed over the samples. np.sum is this ufunc reduction
            # behind a Python wrapper whose cost a small batch notices.
            np.add.reduce(delta, axis=0, out=db)
            if k:
                _, T_prev, Y_prev = hidden[k - 1]
                G = np.matmul(delta, layers[k].W.T, out=rows.G[k - 1])
                act = layers[k - 1].activation
                # seed R-b: delta_{k-1} = delta_k W_k^T . f'_{k-1}
                delta = checked_vjp(act, T_prev, Y_prev, G, rows.tmp[k - 1])
        return value

    def _output(
        self, Tn: Array, T: Array, w: Array | None, out: OutputBuffers | None
    ) -> tuple[float, Array]:
        """``(J, delta_n)`` from the output pre-activation ``Tn`` (overwritten when
        ``out`` is given)."""
        act_n = self._layers[-1].activation
        if out is not None:
            fused = self.loss.fused_into(act_n, Tn, T, w, out)
            if fused is not None:
                return fused
        Yn = checked_forward(act_n, Tn)
        fused = self.loss.fused(act_n, Tn, Yn, T, w)
        if fused is not None:
            return fused
        value, dY = self.loss.value_and_grad(Yn, T, w)
        delta = checked_vjp(act_n, Tn, Yn, dY)  # seed L1: delta_n = dJ/dy_n . f'_n
        return value, delta
