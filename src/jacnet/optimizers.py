"""First-order update rules with explicit state: SGD, Adam, AdamW, RMSprop.

An optimizer only holds hyperparameters; everything that changes during training lives in
an :class:`OptimizerState` that ``init`` returns and ``update`` advances::

    opt = Adam(lr=1e-3)
    state = opt.init(params)                          # params: list of float arrays
    opt.update(params, grads, state, lr=sched_lr)     # params[i] updated in place

``params`` and ``grads`` are lists of arrays of equal shapes and dtype (usually one flat
parameter vector and its gradient). ``update`` writes into the caller's ``params`` arrays,
never into ``grads``, and allocates no parameter-sized array: its temporaries are buffers
kept in the state, in the parameters' dtype (float32 stays float32).

Every optimizer first turns the raw gradient ``g`` into the gradient it actually uses:

1. L2 penalty (``alpha``): ``g ← g + alpha · mask ⊙ θ``, the gradient of
   ``alpha/2 · Σ mask ⊙ θ²``. ``mask`` (``decay_mask`` in :meth:`Optimizer.init`) is 1.0 on
   weights and 0.0 on biases; ``None`` penalises every entry. scikit-learn's MLP adds
   ``alpha/2 · ‖W‖² / n_samples`` to a batch-mean loss; here nothing is divided, so a loop
   that wants scikit-learn's scaling passes ``alpha / n_samples`` itself.
2. Clipping (``clip_norm``): ``g ← g · clip_norm / ‖g‖`` when ``‖g‖ > clip_norm``, with
   ``‖g‖`` the L2 norm over all arrays together. It clips the full gradient of step 1,
   penalty included; PyTorch's ``clip_grad_norm_`` clips the raw gradient before the
   optimizer adds its weight decay.

Then the rule of each class applies (formulas in their docstrings), with the ``lr`` given to
``update`` when not ``None`` (a schedule's value), else the constructor's ``lr``.

Each built-in rule has two homes with the same numbers bit for bit (``tests/test_kernels.py``
proves it): the numpy passes of ``_apply``, and, when :func:`jacnet.accel.enabled`, a
compiled kernel that runs the penalty of step 1 and the whole rule in one pass over the
arrays, every element through the same operations in the same order, each rounded to the
parameters' dtype. Clipping needs the norm of the whole gradient first, so with
``clip_norm`` the numpy preprocessing runs and the kernel applies the rule alone.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from . import accel
from .registry import Registry
from .validation import check_real

Array = np.ndarray

__all__ = [
    "OptimizerState",
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "OPTIMIZERS",
    "get_optimizer",
    "l2_penalty",
]


# Bytes of one array's piece in the multi-pass rules: five float32 arrays of 64 Ki entries
# (1.3 MiB) stay in a core's L2 while every pass runs over them.
_PIECE_BYTES = 1 << 18


def _pieces(*arrays: Array) -> Iterator[tuple[Array, ...]]:
    """The same stretch of each of the equal-shape ``arrays``, in cache-sized pieces.

    An update rule of k elementwise passes runs all k on one piece (in cache) before the
    next, instead of streaming each whole array k times from memory. Arrays that are not
    all C-contiguous come as one piece (a flat view of them would be a copy).
    """
    step = max(1, _PIECE_BYTES // arrays[0].itemsize)
    if arrays[0].size <= step or not all(a.flags.c_contiguous for a in arrays):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]
    for start in range(0, flat[0].size, step):
        yield tuple(f[start : start + step] for f in flat)


def l2_penalty(theta: Array, mask: Array | None, alpha: float) -> float:
    """The L2 penalty's value ``alpha/2 · Σ mask ⊙ θ²`` (the term whose gradient step 1 of
    the module docstring adds); 0.0 when ``mask`` is None (no penalty).

    The one place the penalty's value is computed: the mini-batch loop, the full-batch
    objective and the estimators' loss in data units all add this.

    Parameters
    ----------
    theta : ndarray of shape (P,)
    mask : ndarray of shape (P,) or None
        1.0 on weights, 0.0 on biases (``Network.weight_mask()``).
    alpha : float
    """
    if mask is None:
        return 0.0
    return 0.5 * alpha * float(np.vdot(theta * mask, theta))


# The compiled rules. Each element goes through the numpy path's operations in its order
# (the comments are the formulas of the _apply lines); scalars come in the parameters'
# dtype, so every operation rounds as numpy's does; each bool is the numpy path's own
# test (``alpha > 0``, ...) made on the Python float. ``mask`` is empty when the penalty
# spares nothing, ``total`` when no running sum is asked for (``step``'s ``total``, to
# which the raw gradient is added).
@accel.kernel(inline="always")
def _penalised(theta: Any, g: Any, mask: Any, penalise: bool, alpha: Any) -> Any:
    """Step 1 of the module docstring for one element: ``g + (alpha θ) mask`` (``mask``
    None where it spares nothing). Scalars only: array arguments of a called kernel
    would cost reference counting in the loop."""
    if not penalise:
        return g
    return theta * alpha + g if mask is None else theta * alpha * mask + g


@accel.kernel()
def _sgd_kernel(p: Array, g: Array, mask: Array, penalise: bool, alpha: Any, total: Array,
                velocity: Array, mu: Any, nesterov: bool, lr: Any) -> None:
    """SGD._apply in one pass; ``velocity`` empty when ``mu`` is 0."""
    for i in range(p.shape[0]):
        if total.shape[0]:
            total[i] = total[i] + g[i]
        gi = _penalised(p[i], g[i], mask[i] if mask.shape[0] else None, penalise, alpha)
        if velocity.shape[0] == 0:
            p[i] = p[i] - gi * lr
            continue
        v = velocity[i] * mu + gi  # v_t = μ v_{t-1} + g_t
        velocity[i] = v
        p[i] = p[i] - ((v * mu + gi) * lr if nesterov else v * lr)


@accel.kernel()
def _adam_kernel(p: Array, g: Array, mask: Array, penalise: bool, alpha: Any, total: Array,
                 m: Array, v: Array, b1: Any, c1: Any, b2: Any, c2: Any, eps: Any,
                 step_size: Any, decays: bool, decay: Any) -> None:
    """Adam._apply in one pass (``c1 = 1 - β1``, ``c2 = 1 - β2``), after AdamW's decay
    ``θ - (decay θ) mask`` when ``decays``."""
    for i in range(p.shape[0]):
        if total.shape[0]:
            total[i] = total[i] + g[i]
        gi = _penalised(p[i], g[i], mask[i] if mask.shape[0] else None, penalise, alpha)
        theta = p[i]
        if decays:
            theta = theta - (theta * decay * mask[i] if mask.shape[0] else theta * decay)
        mi = m[i] * b1 + gi * c1  # m_t = β1 m_{t-1} + (1 - β1) g_t
        vi = v[i] * b2 + gi * gi * c2  # v_t = β2 v_{t-1} + (1 - β2) g_t²
        m[i] = mi
        v[i] = vi
        p[i] = theta - mi / (np.sqrt(vi) + eps) * step_size


@accel.kernel()
def _rmsprop_kernel(p: Array, g: Array, mask: Array, penalise: bool, alpha: Any,
                    total: Array, square_avg: Array, momentum: Array, rho: Any, c: Any,
                    eps: Any, mu: Any, lr: Any) -> None:
    """RMSprop._apply in one pass (``c = 1 - ρ``); ``momentum`` empty when μ is 0."""
    for i in range(p.shape[0]):
        if total.shape[0]:
            total[i] = total[i] + g[i]
        gi = _penalised(p[i], g[i], mask[i] if mask.shape[0] else None, penalise, alpha)
        v = square_avg[i] * rho + gi * gi * c  # v_t = ρ v_{t-1} + (1 - ρ) g_t²
        square_avg[i] = v
        u = gi / (np.sqrt(v) + eps)  # u_t = g_t / (√v_t + ε)
        if momentum.shape[0]:
            b = momentum[i] * mu + u  # b_t = μ b_{t-1} + u_t
            momentum[i] = b
            u = b * lr
        else:
            u = u * lr
        p[i] = p[i] - u


def _accumulate(total: list[Array] | None, grads: list[Array]) -> None:
    """``total[i] += grads[i]`` (``Optimizer.step``'s running sum), unless ``total`` is None."""
    if total is not None:
        for t, g in zip(total, grads, strict=True):
            t += g


def _flat(a: Array | None, like: Array) -> Array:
    """``a`` as the kernels take it: a flat view, or an empty array for None."""
    return np.empty(0, like.dtype) if a is None else a.reshape(-1)


def _positive(value: Any, name: str) -> float:
    return check_real(value, name, "a positive float", lambda x: x > 0)


def _non_negative(value: Any, name: str) -> float:
    return check_real(value, name, "a non-negative float", lambda x: x >= 0)


def _unit_interval(value: Any, name: str) -> float:
    return check_real(value, name, "a float in [0, 1)", lambda x: 0 <= x < 1)


@dataclass(eq=False)
class OptimizerState:
    """Everything an optimizer changes during training.

    Attributes
    ----------
    step : int
        Number of updates done.
    n_arrays : int
        Number of parameter arrays the state was built for.
    buffers : dict of str to list of ndarray
        Per-parameter running quantities of the rule (``"velocity"``, ``"m"``, ``"v"``,
        ...); ``buffers[name][i]`` has the shape and dtype of ``params[i]``.
    decay_mask : list of (ndarray or None)
        Where the L2 penalty and AdamW's decay apply (1.0) or not (0.0); ``None``: everywhere.
    """

    step: int
    n_arrays: int
    buffers: dict[str, list[Array]]
    decay_mask: list[Array | None]
    # Scratch space, one array per parameter, rebuilt after a restore: ``grad`` holds the
    # penalised/clipped gradient (the caller's grads stay untouched; allocated only when
    # alpha or clip_norm is used), ``tmp`` the rule's temporaries. Neither carries
    # information from one step to the next, so neither is saved.
    grad: list[Array] | None = field(default=None, repr=False)
    tmp: list[Array] | None = field(default=None, repr=False)

    def to_arrays(self) -> dict[str, Array]:
        """Copy the state into flat named arrays (for a checkpoint file).

        Keys: ``"step"`` and ``"n_arrays"`` (int64 scalars), ``"<buffer>.<i>"`` and
        ``"decay_mask.<i>"`` (absent where the mask is ``None``). Scratch buffers are not
        saved. :meth:`from_arrays` restores a state that continues bit for bit.
        """
        out: dict[str, Array] = {
            "step": np.array(self.step, dtype=np.int64),
            "n_arrays": np.array(self.n_arrays, dtype=np.int64),
        }
        for name, arrays in self.buffers.items():
            out.update({f"{name}.{i}": a.copy() for i, a in enumerate(arrays)})
        out.update(
            {f"decay_mask.{i}": m.copy() for i, m in enumerate(self.decay_mask) if m is not None}
        )
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array]) -> OptimizerState:
        """Rebuild a state from the output of :meth:`to_arrays` (the arrays are copied)."""
        for key in ("step", "n_arrays"):
            if key not in arrays:
                raise ValueError(
                    f"optimizer state arrays must contain {key!r}, got keys {sorted(arrays)}"
                )
        n = int(np.asarray(arrays["n_arrays"]).item())
        groups: dict[str, dict[int, Array]] = {}
        for key, value in arrays.items():
            if key in ("step", "n_arrays"):
                continue
            name, _, index = key.rpartition(".")
            if not name or not index.isdigit() or int(index) >= n:
                raise ValueError(
                    f"optimizer state key must be '<name>.<i>' with i < {n}, got {key!r}"
                )
            groups.setdefault(name, {})[int(index)] = np.array(value, copy=True)
        masks = groups.pop("decay_mask", {})
        for name, group in groups.items():
            if len(group) != n:
                raise ValueError(
                    f"optimizer state buffer {name!r} must have {n} arrays, got {len(group)}"
                )
        return cls(
            step=int(np.asarray(arrays["step"]).item()),
            n_arrays=n,
            buffers={name: [group[i] for i in range(n)] for name, group in groups.items()},
            decay_mask=[masks.get(i) for i in range(n)],
        )


class Optimizer(ABC):
    """Base class: shared arguments, gradient preprocessing, state handling.

    Subclasses set ``name``, list their running buffers in :meth:`buffer_names` and apply
    their rule in :meth:`_apply`.

    Parameters
    ----------
    lr : float
        Learning rate, > 0; ``update(..., lr=...)`` overrides it for one step.
    alpha : float, default=0.0
        L2 penalty: ``alpha · mask ⊙ θ`` is added to the gradient (module docstring).
    clip_norm : float or None, default=None
        Clip the gradient to this global L2 norm (after the penalty); ``None``: no clipping.
    """

    name: ClassVar[str] = ""

    def __init__(self, lr: float, *, alpha: float = 0.0, clip_norm: float | None = None) -> None:
        self.lr = _positive(lr, "lr")
        self.alpha = _non_negative(alpha, "alpha")
        self.clip_norm = None if clip_norm is None else _positive(clip_norm, "clip_norm")

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``type(opt)(**opt.get_config())``."""
        return {"lr": self.lr, "alpha": self.alpha, "clip_norm": self.clip_norm}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def buffer_names(self) -> tuple[str, ...]:
        """Names of the per-parameter buffers the rule keeps from step to step."""
        return ()

    @abstractmethod
    def _apply(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float
    ) -> None:
        """Update ``params`` in place from the preprocessed ``grads``; ``state.step`` is t."""

    def init(
        self, params: list[Array], decay_mask: list[Array | None] | None = None
    ) -> OptimizerState:
        """Create the state for ``params`` (zero buffers, step 0).

        Parameters
        ----------
        params : list of ndarray
            The float arrays ``update`` will modify, any shapes.
        decay_mask : list of (ndarray or None), optional
            ``decay_mask[i]`` has the shape of ``params[i]``, 1.0 where the L2 penalty
            (and AdamW's decay) applies and 0.0 where not (biases); ``None``, or a ``None``
            entry, applies it everywhere.

        Returns
        -------
        OptimizerState
        """
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                got = f"ndarray of {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"params[{i}] must be a float ndarray, got {got}")
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] must be writeable, it is updated in place")
        masks: list[Array | None] = [None] * len(params)
        if decay_mask is not None:
            if len(decay_mask) != len(params):
                raise ValueError(
                    f"decay_mask must have {len(params)} entries (one per params "
                    f"array), got {len(decay_mask)}"
                )
            for i, (p, m) in enumerate(zip(params, decay_mask, strict=True)):
                if m is None:
                    continue
                m = np.asarray(m)
                if m.shape != p.shape:
                    raise ValueError(f"decay_mask[{i}] must have shape {p.shape}, got {m.shape}")
                if not np.isin(m, (0, 1)).all():
                    raise ValueError(f"decay_mask[{i}] must hold only 0.0 and 1.0")
                masks[i] = m.astype(p.dtype)  # a copy, in the dtype the update multiplies with
        state = OptimizerState(
            step=0,
            n_arrays=len(params),
            buffers={name: [np.zeros_like(p) for p in params] for name in self.buffer_names()},
            decay_mask=masks,
        )
        self._ensure_scratch(params, state)
        return state

    @staticmethod
    def state_from_arrays(arrays: dict[str, Array]) -> OptimizerState:
        """Rebuild a state saved with ``state.to_arrays()`` (see :class:`OptimizerState`)."""
        return OptimizerState.from_arrays(arrays)

    def update(
        self,
        params: list[Array],
        grads: list[Array],
        state: OptimizerState,
        lr: float | None = None,
    ) -> None:
        """Apply one update to every ``params[i]`` in place and advance ``state``.

        Parameters
        ----------
        params : list of ndarray
            The arrays given to :meth:`init` (or of the same shapes and dtypes).
        grads : list of ndarray
            ``grads[i]`` has the shape and dtype of ``params[i]``; not modified.
        state : OptimizerState
            From :meth:`init` or :meth:`state_from_arrays`; ``state.step`` grows by one.
        lr : float or None, default=None
            Learning rate for this step (>= 0, e.g. a schedule's value); ``None``: ``self.lr``.
        """
        lr = self.prepare(params, grads, state, lr)
        self.step(params, grads, state, lr)

    def prepare(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float | None
    ) -> float:
        """Check the arguments of :meth:`update` once and allocate its scratch buffers;
        returns the step's lr. A loop that updates the same ``params``, ``grads`` arrays
        and ``state`` many times (an epoch of mini-batches) calls this once, then
        :meth:`step` for each update."""
        lr = self.lr if lr is None else _non_negative(lr, "lr")
        if len(params) != state.n_arrays or len(grads) != state.n_arrays:
            raise ValueError(
                f"params and grads must have {state.n_arrays} arrays (as at init), "
                f"got {len(params)} and {len(grads)}"
            )
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}] must be an ndarray, got {type(g).__name__}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] must have shape {p.shape}, got {g.shape}")
            if g.dtype != p.dtype:
                # out= ufuncs would cast silently; refuse instead of mixing precisions.
                raise TypeError(f"grads[{i}] must have dtype {p.dtype}, got {g.dtype}")
        self._ensure_scratch(params, state)
        return lr

    def step(
        self,
        params: list[Array],
        grads: list[Array],
        state: OptimizerState,
        lr: float,
        total: list[Array] | None = None,
    ) -> None:
        """:meth:`update` without the checks, after :meth:`prepare` on the same ``params``,
        ``grads`` arrays and ``state`` and with the lr it returned. The same update, bit
        for bit.

        ``total``: arrays like ``grads`` (C-contiguous) that the raw ``grads`` are added
        to, a running sum the caller keeps (the mini-batch loop's gradient sum for its
        record); the compiled rules add it in their pass over the gradient."""
        if accel.enabled() and self._step_compiled(params, grads, state, lr, total):
            return
        _accumulate(total, grads)
        grads = self._effective_grads(params, grads, state)
        state.step += 1
        self._apply(params, grads, state, lr)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A kernel is written for one rule: a subclass that changes the rule or the
        # preprocessing and not the kernel runs its own numpy code, never its parent's kernel.
        own = cls.__dict__
        if ("_apply" in own or "_effective_grads" in own) and "_compiled_rule" not in own:
            cls._compiled_rule = Optimizer._compiled_rule  # type: ignore[method-assign]

    def _compiled_rule(
        self, t: int, lr: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]] | None:
        """The rule's kernel for step ``t``, the state buffers it takes after ``(p, g,
        mask, penalise, alpha)`` (one the rule does not use now, not in
        :meth:`buffer_names`, as an empty array) and its scalar arguments; None: no
        kernel, the numpy path runs."""
        return None

    def _step_compiled(
        self,
        params: list[Array],
        grads: list[Array],
        state: OptimizerState,
        lr: float,
        total: list[Array] | None,
    ) -> bool:
        """:meth:`step` by the rule's kernel; False, with nothing done, where the rule
        has none or an array does not fit one (:func:`jacnet.accel.fits`)."""
        rule = self._compiled_rule(state.step + 1, lr)
        if rule is None:
            return False
        kernel, names, scalars = rule
        used = self.buffer_names()
        buffers = [[state.buffers[n][i] if n in used else None for n in names]
                   for i in range(state.n_arrays)]
        sums: list[Array | None] = [None] * len(params) if total is None else [*total]
        if not all(accel.fits(p, g, *(a for a in (m, s, *bufs) if a is not None))
                   for p, g, m, s, bufs in zip(params, grads, state.decay_mask, sums,
                                               buffers, strict=True)):
            return False
        alpha = self.alpha
        if self.clip_norm is not None:  # the norm of the whole gradient comes first
            _accumulate(total, grads)
            sums = [None] * len(params)
            grads, alpha = self._effective_grads(params, grads, state), 0.0
        penalise = alpha > 0
        state.step += 1
        for p, g, m, s, bufs in zip(params, grads, state.decay_mask, sums, buffers,
                                    strict=True):
            cast = p.dtype.type  # every scalar rounded to the dtype, as numpy's ufuncs do
            kernel(p.reshape(-1), g.reshape(-1), _flat(m, p), penalise, cast(alpha),
                   _flat(s, p), *(_flat(b, p) for b in bufs),
                   *(x if isinstance(x, bool) else cast(x) for x in scalars))
        return True

    def _ensure_scratch(self, params: list[Array], state: OptimizerState) -> None:
        """Allocate the scratch buffers once (at init or the first update after a restore)."""
        if state.tmp is not None and all(
            t.shape == p.shape and t.dtype == p.dtype
            for t, p in zip(state.tmp, params, strict=True)
        ):
            return
        missing = [name for name in self.buffer_names() if name not in state.buffers]
        if missing:
            raise ValueError(
                f"state lacks the buffers {missing} that {type(self).__name__} "
                f"needs; was it made by another optimizer?"
            )
        for name in self.buffer_names():
            for i, (b, p) in enumerate(zip(state.buffers[name], params, strict=True)):
                if b.shape != p.shape or b.dtype != p.dtype:
                    raise ValueError(
                        f"state buffer {name}[{i}] must have shape {p.shape} and dtype "
                        f"{p.dtype} like params[{i}], got {b.shape} {b.dtype}"
                    )
        state.tmp = [np.empty_like(p) for p in params]
        state.grad = None

    def _ensure_grad_scratch(self, params: list[Array], state: OptimizerState) -> list[Array]:
        # Only penalty and clipping need a copy of the gradient: allocate it on first use.
        if state.grad is None:
            state.grad = [np.empty_like(p) for p in params]
        return state.grad

    def _effective_grads(
        self, params: list[Array], grads: list[Array], state: OptimizerState
    ) -> list[Array]:
        """The gradient the rule uses: penalised, then clipped (module docstring)."""
        if self.alpha > 0:
            work = self._ensure_grad_scratch(params, state)
            for p, g, m, out in zip(params, grads, state.decay_mask, work, strict=True):
                np.multiply(p, self.alpha, out=out)  # g + alpha · mask ⊙ θ
                if m is not None:
                    out *= m
                out += g
            grads = work
        if self.clip_norm is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > self.clip_norm:
                work = self._ensure_grad_scratch(params, state)
                scale = self.clip_norm / norm
                for g, out in zip(grads, work, strict=True):
                    np.multiply(g, scale, out=out)
                grads = work
        return grads


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, PyTorch's formulation.

    With momentum ``μ`` (Polyak 1964; Nesterov form as in Sutskever et al., ICML 2013)::

        v_t = μ v_{t-1} + g_t                   (v_0 = 0)
        θ_t = θ_{t-1} - lr · v_t                (classical)
        θ_t = θ_{t-1} - lr · (g_t + μ v_t)      (nesterov=True)

    and ``θ_t = θ_{t-1} - lr · g_t`` when ``μ = 0``. scikit-learn keeps ``u = -lr · v``
    instead (``u_t = μ u_{t-1} - lr g_t``, ``θ_t = θ_{t-1} + u_t``); both give the same
    iterates while ``lr`` is constant and differ once a schedule changes it, where PyTorch's
    form applies the new ``lr`` to the whole velocity at once.

    Parameters
    ----------
    lr : float, default=0.01
    momentum : float, default=0.0
        ``μ`` in [0, 1).
    nesterov : bool, default=False
        Needs ``momentum > 0``.
    alpha, clip_norm
        See :class:`Optimizer`.
    """

    name = "sgd"

    def __init__(
        self,
        lr: float = 0.01,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        alpha: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, alpha=alpha, clip_norm=clip_norm)
        self.momentum = _unit_interval(momentum, "momentum")
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__} {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0.0")
        self.nesterov = nesterov

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def buffer_names(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum > 0 else ()

    def _compiled_rule(
        self, t: int, lr: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]]:
        return _sgd_kernel, ("velocity",), (self.momentum, self.nesterov, lr)

    def _apply(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float
    ) -> None:
        assert state.tmp is not None
        mu = self.momentum
        if mu == 0:
            for p, g, tmp in zip(params, grads, state.tmp, strict=True):
                np.multiply(g, lr, out=tmp)  # θ_t = θ_{t-1} - lr · g_t
                p -= tmp
            return
        for p, g, v, tmp in zip(params, grads, state.buffers["velocity"], state.tmp, strict=True):
            v *= mu  # v_t = μ v_{t-1} + g_t
            v += g
            if self.nesterov:
                np.multiply(v, mu, out=tmp)  # lr · (g_t + μ v_t)
                tmp += g
                tmp *= lr
            else:
                np.multiply(v, lr, out=tmp)
            p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba, ICLR 2015, Algorithm 1), bias-corrected.

    ::

        m_t = β1 m_{t-1} + (1 - β1) g_t
        v_t = β2 v_{t-1} + (1 - β2) g_t²
        m̂_t = m_t / (1 - β1^t),   v̂_t = v_t / (1 - β2^t)
        θ_t = θ_{t-1} - lr · m̂_t / (√v̂_t + ε)

    This is PyTorch's form (ε added to ``√v̂``). scikit-learn uses the paper's "efficient"
    variant (ε added to ``√v``), which is this rule with ε replaced by ``ε / √(1 - β2^t)``;
    the two differ only where ``√v̂`` is comparable to that value.

    Parameters
    ----------
    lr : float, default=1e-3
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates in [0, 1).
    epsilon : float, default=1e-8
        > 0.
    alpha, clip_norm
        See :class:`Optimizer`. ``alpha`` is the coupled L2 penalty (it passes through the
        moments); for decoupled weight decay use :class:`AdamW`.
    """

    name = "adam"

    def __init__(
        self,
        lr: float = 1e-3,
        *,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        alpha: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, alpha=alpha, clip_norm=clip_norm)
        self.beta_1 = _unit_interval(beta_1, "beta_1")
        self.beta_2 = _unit_interval(beta_2, "beta_2")
        self.epsilon = _positive(epsilon, "epsilon")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }

    def buffer_names(self) -> tuple[str, ...]:
        return ("m", "v")

    def _corrected(self, t: int, lr: float) -> tuple[float, float]:
        """``(step_size, eps)`` of step ``t``: lr · m̂/(√v̂ + ε) = (lr √(1-β2^t) / (1-β1^t))
        · m / (√v + ε √(1-β2^t)), the bias corrections as two scalars instead of three
        array passes."""
        sqrt_bc2 = math.sqrt(1.0 - self.beta_2**t)
        return lr * sqrt_bc2 / (1.0 - self.beta_1**t), self.epsilon * sqrt_bc2

    def _compiled_rule(
        self, t: int, lr: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]]:
        return self._adam_rule(t, lr, False, 0.0)

    def _adam_rule(
        self, t: int, lr: float, decays: bool, decay: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]]:
        """``_adam_kernel``'s arguments for step ``t``, with AdamW's decay or without."""
        b1, b2 = self.beta_1, self.beta_2
        step_size, eps = self._corrected(t, lr)
        return (_adam_kernel, ("m", "v"),
                (b1, 1.0 - b1, b2, 1.0 - b2, eps, step_size, decays, decay))

    def _apply(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float
    ) -> None:
        assert state.tmp is not None
        b1, b2 = self.beta_1, self.beta_2
        step_size, eps = self._corrected(state.step, lr)
        arrays = zip(params, grads, state.buffers["m"], state.buffers["v"], state.tmp, strict=True)
        for p, g, m, v, tmp in (piece for a in arrays for piece in _pieces(*a)):
            m *= b1  # m_t = β1 m_{t-1} + (1 - β1) g_t
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2  # v_t = β2 v_{t-1} + (1 - β2) g_t²
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            np.sqrt(v, out=tmp)  # (√v̂_t + ε) √(1-β2^t)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019, Algorithm 2).

    ::

        θ_t = θ_{t-1} - lr · λ · mask ⊙ θ_{t-1} - lr · m̂_t / (√v̂_t + ε)

    with ``m̂_t, v̂_t`` as in :class:`Adam`; the decay never enters the moments. As in
    PyTorch the decay is scaled by the current ``lr`` (so a schedule scales it too; the paper
    writes ``η_t`` for that multiplier). ``mask`` is the ``decay_mask`` given to ``init``.

    Parameters
    ----------
    weight_decay : float, default=0.01
        ``λ`` >= 0.
    lr, beta_1, beta_2, epsilon, alpha, clip_norm
        See :class:`Adam`.
    """

    name = "adamw"

    def __init__(
        self,
        lr: float = 1e-3,
        *,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.01,
        alpha: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(
            lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, alpha=alpha, clip_norm=clip_norm
        )
        self.weight_decay = _non_negative(weight_decay, "weight_decay")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight_decay": self.weight_decay}

    def _compiled_rule(
        self, t: int, lr: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]]:
        return self._adam_rule(t, lr, self.weight_decay > 0, lr * self.weight_decay)

    def _apply(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float
    ) -> None:
        assert state.tmp is not None
        if self.weight_decay > 0:
            # Decay first: the Adam step does not read θ, so both terms use θ_{t-1}.
            for p, mask, tmp in zip(params, state.decay_mask, state.tmp, strict=True):
                np.multiply(p, lr * self.weight_decay, out=tmp)
                if mask is not None:
                    tmp *= mask
                p -= tmp
        super()._apply(params, grads, state, lr)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012, Coursera lecture 6.5), PyTorch's formulation.

    ::

        v_t = ρ v_{t-1} + (1 - ρ) g_t²
        u_t = g_t / (√v_t + ε)
        b_t = μ b_{t-1} + u_t,  θ_t = θ_{t-1} - lr · b_t      (momentum μ > 0)
        θ_t = θ_{t-1} - lr · u_t                              (μ = 0)

    No bias correction: ``v_0 = 0`` makes the first steps large (as in PyTorch and Keras).

    Parameters
    ----------
    lr : float, default=0.01
    rho : float, default=0.99
        Decay rate of the squared-gradient average, in [0, 1) (PyTorch's ``alpha``).
    epsilon : float, default=1e-8
    momentum : float, default=0.0
        ``μ`` in [0, 1).
    alpha, clip_norm
        See :class:`Optimizer`.
    """

    name = "rmsprop"

    def __init__(
        self,
        lr: float = 0.01,
        *,
        rho: float = 0.99,
        epsilon: float = 1e-8,
        momentum: float = 0.0,
        alpha: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, alpha=alpha, clip_norm=clip_norm)
        self.rho = _unit_interval(rho, "rho")
        self.epsilon = _positive(epsilon, "epsilon")
        self.momentum = _unit_interval(momentum, "momentum")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rho": self.rho,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }

    def buffer_names(self) -> tuple[str, ...]:
        return ("square_avg", "momentum") if self.momentum > 0 else ("square_avg",)

    def _compiled_rule(
        self, t: int, lr: float
    ) -> tuple[accel.Kernel, tuple[str, ...], tuple[Any, ...]]:
        return (_rmsprop_kernel, ("square_avg", "momentum"),
                (self.rho, 1.0 - self.rho, self.epsilon, self.momentum, lr))

    def _apply(
        self, params: list[Array], grads: list[Array], state: OptimizerState, lr: float
    ) -> None:
        assert state.tmp is not None
        rho, mu = self.rho, self.momentum
        square_avg = state.buffers["square_avg"]
        momentum: list[Array | None] = [*state.buffers.get("momentum", [None] * len(params))]
        for p, g, v, b, tmp in zip(params, grads, square_avg, momentum, state.tmp, strict=True):
            v *= rho  # v_t = ρ v_{t-1} + (1 - ρ) g_t²
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - rho
            v += tmp
            np.sqrt(v, out=tmp)  # u_t = g_t / (√v_t + ε)
            tmp += self.epsilon
            np.divide(g, tmp, out=tmp)
            if b is not None:
                b *= mu  # b_t = μ b_{t-1} + u_t
                b += tmp
                np.multiply(b, lr, out=tmp)
            else:
                tmp *= lr
            p -= tmp


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", Optimizer, (SGD, Adam, AdamW, RMSprop))


def get_optimizer(spec: str | Optimizer, **config: Any) -> Optimizer:
    """Return an optimizer from a name or an instance.

    Parameters
    ----------
    spec : str or Optimizer
        A name in ``OPTIMIZERS`` (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``) or an
        instance, returned as is.
    **config
        Constructor arguments when ``spec`` is a name; not allowed with an instance.
    """
    return OPTIMIZERS.create(spec, **config)
