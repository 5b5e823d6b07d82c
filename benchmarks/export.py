"""Suite "export": one scikit-learn MLP as ONNX through skl2onnx and through jacnet's export.

scikit-learn's ``MLPRegressor`` (one output and three) and ``MLPClassifier`` (multiclass)
are fitted; a jacnet estimator of the same architecture carries the very same weights
(its live ``coefs_``/``intercepts_`` set to scikit-learn's). jacnet's graph
(``jacnet.export_onnx``, float64 and float32) and skl2onnx's (``FloatTensorType``, its
usual float32 input, and ``DoubleTensorType``) run in ONNX Runtime on the same held-out
rows; each graph's outputs are compared with scikit-learn's own ``predict`` /
``predict_proba`` in float64, and each graph is timed at batch 1 and 1000 with the same
thread count. skl2onnx is optional: without it its rows are skipped with a note.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import sklearn.neural_network as sknn
from sklearn.exceptions import ConvergenceWarning

import jacnet as jn

from ._harness import Case, Context, MismatchError, Row, Timing

try:  # loaded with the suite, before the runner pins the threads
    import onnxruntime as ort
except ImportError:  # pragma: no cover - the dev extra installs it
    ort = None
try:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
except ImportError:
    convert_sklearn = None

TITLE = "ONNX export: jacnet's graph against skl2onnx's, same scikit-learn MLP"

#: Rows, features, hidden layers, scikit-learn's Adam epochs: (full, smoke).
N_TRAIN = (2000, 200)
N_TEST = (1000, 20)
N_FEATURES = (20, 5)
HIDDEN = ((64, 64), (8,))
MAX_ITER = (200, 5)
#: Timed batch sizes: the first rows of the held-out set.
BATCHES = ((1, 1000), (1, 20))
#: jacnet's float64 graph must reproduce scikit-learn's predict to this (scaled by the
#: largest entry), its float32 graph to FLOAT32_TOL: the same weights, the same formulas.
FLOAT64_TOL = 1e-12
FLOAT32_TOL = 1e-5

def _version_text() -> str:
    try:
        import skl2onnx
    except ImportError:
        return "(not installed here)"
    return str(skl2onnx.__version__)


DESCRIPTION = f"""\
The same fitted model exported by jacnet and by skl2onnx, run in ONNX Runtime. scikit-learn's
`MLPRegressor` (one output, and three outputs) and `MLPClassifier` (5 classes) are fitted
with Adam ({MAX_ITER[0]} epochs, ReLU, hidden {HIDDEN[0]}, every other parameter at its
default) on {N_TRAIN[0]} synthetic rows of {N_FEATURES[0]} standard-normal features (seed 0).
A jacnet estimator of the same architecture takes the very same weights (its live
`coefs_`/`intercepts_` set to scikit-learn's; its own `predict` checked equal to
scikit-learn's) and is exported by `jacnet.export_onnx` in float64 and float32. skl2onnx
{_version_text()} converts the scikit-learn model with `convert_sklearn` and a `FloatTensorType`
input (float32: its usual conversion) and with a `DoubleTensorType` input (float64); the
classifier with `options={{"zipmap": False}}`, so its probabilities come out as a tensor as
jacnet's do (skl2onnx's default wraps them in a ZipMap: a list of dicts). Every graph runs
in ONNX Runtime (CPU provider, default graph optimisations, `intra_op_num_threads` set to
the run's thread count, `inter_op_num_threads` 1) on the same {N_TEST[0]} held-out rows.
**Differences** (first table per model): the max absolute difference of the graph's first
float output (prediction or probabilities) from scikit-learn's own `predict` /
`predict_proba` in float64, and the max relative one (|a − e| / |e| over the entries with
e ≠ 0: a float32 graph's 1 is a probability below float32's smallest number, about 1e-45,
that came out 0); a wrongly shaped output is named and compared after a reshape to scikit-learn's
shape. jacnet's float64 graph must agree to {FLOAT64_TOL:g} and its float32 graph to
{FLOAT32_TOL:g} (scaled by the largest entry), or the run fails. **Times**: one
`session.run` per batch of the first 1 and {BATCHES[0][1]} held-out rows, all graphs (and
scikit-learn's `predict`, for reference) interleaved in one measurement; the rows table
compares jacnet's graph with skl2onnx's of the same float type, ratio = skl2onnx time /
jacnet time (above 1: jacnet's graph runs faster), no target. Both write each layer as
`MatMul`, `Add`, `Relu` (skl2onnx adds a `Cast` of the input); jacnet writes softmax as five
nodes (max shift, `Exp`, sum, `Div`) where skl2onnx uses ONNX's `Softmax`."""

Array = np.ndarray


# ------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Task:
    """One scikit-learn model to export: its kind, its targets, its case id."""

    name: str
    kind: str  # "reg" or "clf"
    n_outputs: int

    def targets(self, X: Array) -> Array:
        """Smooth nonlinear targets of the first features (classes: quantiles of one)."""
        s = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
        if self.kind == "clf":
            score = s + 0.5 * X[:, 3] ** 2
            return np.digitize(score, np.quantile(score, [0.2, 0.4, 0.6, 0.8]))
        cols = [s, np.cos(X[:, 3]) - X[:, 4], np.tanh(X[:, 0] * X[:, 4])]
        Y = np.stack(cols[: self.n_outputs], axis=1)
        return Y[:, 0] if self.n_outputs == 1 else Y


TASKS = (
    Task("regressor", "reg", 1),
    Task("multioutput", "reg", 3),
    Task("classifier", "clf", 1),
)


@dataclass
class Fitted:
    """scikit-learn's model, jacnet's copy of it, and the held-out rows."""

    sk: Any
    jacnet: Any
    X_test: Array
    reference: Array  # scikit-learn's predict (regressor) or predict_proba, float64
    labels: Array | None  # scikit-learn's predict of a classifier

    def describe(self) -> str:
        widths = [self.sk.coefs_[0].shape[0], *(c.shape[1] for c in self.sk.coefs_)]
        kind = type(self.sk).__name__
        return f"{kind} {'-'.join(map(str, widths))}"


def fit(task: Task, smoke: bool) -> Fitted:
    """Fit scikit-learn's MLP and give a jacnet estimator its weights."""
    i = 1 if smoke else 0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRAIN[i] + N_TEST[i], N_FEATURES[i]))
    y = task.targets(X)
    Xtr, Xte, ytr = X[: N_TRAIN[i]], X[N_TRAIN[i] :], y[: N_TRAIN[i]]
    sk_cls = sknn.MLPClassifier if task.kind == "clf" else sknn.MLPRegressor
    jn_cls = jn.MLPClassifier if task.kind == "clf" else jn.MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = sk_cls(hidden_layer_sizes=HIDDEN[i], max_iter=MAX_ITER[i], random_state=0)
        sk.fit(Xtr, ytr)
        # One epoch builds jacnet's network, classes and output layer for this data;
        # the weights are then replaced by scikit-learn's.
        ours = jn_cls(hidden_layer_sizes=HIDDEN[i], max_iter=1, random_state=0).fit(Xtr, ytr)
    ours.coefs_ = [np.array(c) for c in sk.coefs_]
    ours.intercepts_ = [np.array(b) for b in sk.intercepts_]
    if task.kind == "clf":
        reference, labels = sk.predict_proba(Xte), sk.predict(Xte)
        mine = ours.predict_proba(Xte)
        if not np.array_equal(ours.predict(Xte), labels):
            raise MismatchError(f"export.{task.name}: jacnet's labels differ from sklearn's")
    else:
        reference, labels, mine = sk.predict(Xte), None, ours.predict(Xte)
    _require(f"export.{task.name}: jacnet's predict with sklearn's weights", mine, reference,
             FLOAT64_TOL)
    return Fitted(sk, ours, Xte, np.asarray(reference, dtype=np.float64), labels)


# ------------------------------------------------------------------------- graphs
@dataclass
class Graph:
    """One ONNX graph in a session: who made it, its float type, how to call it."""

    label: str
    maker: str  # "jacnet" or "skl2onnx"
    dtype: str
    session: Any

    def run(self, X: Array) -> list[Array]:
        name = self.session.get_inputs()[0].name
        return list(self.session.run(None, {name: X.astype(self.dtype)}))


def _session(path: Path, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def graphs(fitted: Fitted, ctx: Context, folder: Path) -> list[Graph]:
    """jacnet's graphs (float64, float32) and skl2onnx's (float32, float64) when it is
    installed, each written to ``folder`` and loaded in an ONNX Runtime session."""
    out = []
    for dtype in ("float64", "float32"):
        path = folder / f"jacnet-{dtype}.onnx"
        jn.export_onnx(fitted.jacnet, path, dtype=dtype)
        out.append(Graph(f"jacnet export_onnx, {dtype}", "jacnet", dtype,
                         _session(path, ctx.threads)))
    if convert_sklearn is None:
        return out
    n_in = fitted.X_test.shape[1]
    options = {id(fitted.sk): {"zipmap": False}} if fitted.labels is not None else None
    for dtype, tensor_type in (("float32", FloatTensorType), ("float64", DoubleTensorType)):
        proto = convert_sklearn(fitted.sk, initial_types=[("X", tensor_type([None, n_in]))],
                                options=options)
        path = folder / f"skl2onnx-{dtype}.onnx"
        path.write_bytes(proto.SerializeToString())
        out.append(Graph(f"skl2onnx {tensor_type.__name__}, {dtype}", "skl2onnx", dtype,
                         _session(path, ctx.threads)))
    return out


# -------------------------------------------------------------------- differences
def _require(what: str, actual: Array, expected: Array, tol: float) -> None:
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise MismatchError(f"{what}: shapes differ, {a.shape} vs {e.shape}")
    err = float(np.max(np.abs(a - e))) / max(1.0, float(np.max(np.abs(e))))
    if not err <= tol:
        raise MismatchError(f"{what}: scaled max difference {err:.3g} > {tol:g}")


@dataclass
class Difference:
    """How one graph's outputs compare with scikit-learn's in float64."""

    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    labels_agree: str = ""

    def shape_text(self, expected: tuple[int, ...]) -> str:
        text = str(self.shape)
        if self.shape != expected:
            text += f" **≠ {expected}**, compared after a reshape"
        return text


def difference(graph: Graph, fitted: Fitted) -> Difference:
    """The graph's float output against scikit-learn's (reshaped when its shape is off)."""
    outs = graph.run(fitted.X_test)
    floats = [o for o in outs if o.dtype.kind == "f"]
    a = floats[0]
    e = fitted.reference
    shape = tuple(a.shape)
    if a.size != e.size:
        raise MismatchError(f"{graph.label}: output {shape} holds {a.size} numbers, "
                            f"scikit-learn's {e.shape} holds {e.size}")
    a = a.astype(np.float64).reshape(e.shape)
    gap = np.abs(a - e)
    nonzero = e != 0
    rel = float(np.max(gap[nonzero] / np.abs(e[nonzero]))) if nonzero.any() else 0.0
    diff = Difference(shape, float(np.max(gap)), rel)
    if fitted.labels is not None:
        labels = next(o for o in outs if o.dtype.kind in "iuUO")
        same = int(np.sum(np.asarray(labels).reshape(-1) == fitted.labels))
        diff.labels_agree = f"{same}/{len(fitted.labels)}"
    if graph.maker == "jacnet":  # the same weights and formulas: anything else is a bug
        tol = FLOAT64_TOL if graph.dtype == "float64" else FLOAT32_TOL
        _require(graph.label, a, e, tol)
    return diff


# -------------------------------------------------------------------------- cases
def _fns(gs: list[Graph], fitted: Fitted, n: int) -> dict[str, Callable[[], Any]]:
    """One call per graph on the first ``n`` rows, and scikit-learn's own predict."""
    fns: dict[str, Callable[[], Any]] = {}
    for g in gs:
        name = g.session.get_inputs()[0].name
        feed = {name: np.ascontiguousarray(fitted.X_test[:n], dtype=g.dtype)}
        fns[g.label] = partial(g.session.run, None, feed)
    rows = fitted.X_test[:n]
    predict = fitted.sk.predict_proba if fitted.labels is not None else fitted.sk.predict
    fns["scikit-learn predict"] = partial(predict, rows)
    return fns


def _table(gs: list[Graph], diffs: dict[str, Difference], times: dict[int, dict[str, Timing]],
           fitted: Fitted) -> str:
    """Per graph: output shape, differences from scikit-learn and time per batch."""
    batches = sorted(times)
    clf = fitted.labels is not None
    head = ["graph", "output shape", "max abs diff", "max rel diff",
            *(["labels = predict"] if clf else []),
            *(f"time, batch {n}" for n in batches)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    expected = tuple(fitted.reference.shape)
    for g in gs:
        d = diffs[g.label]
        cells = [g.label, d.shape_text(expected), f"{d.max_abs:.2g}", f"{d.max_rel:.2g}",
                 *([d.labels_agree] if clf else []),
                 *(times[n][g.label].describe() for n in batches)]
        lines.append("| " + " | ".join(cells) + " |")
    ref = ["scikit-learn `predict" + ("_proba`" if clf else "`") + " (reference)",
           str(expected), "0", "0", *(["—"] if clf else []),
           *(times[n]["scikit-learn predict"].describe() for n in batches)]
    lines.append("| " + " | ".join(ref) + " |")
    return "\n".join(lines)


def _shape_note(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """What skl2onnx's output shape is, against scikit-learn's."""
    if got == expected:
        return f"skl2onnx's output has predict's shape {expected}"
    text = (f"skl2onnx's output is {got} where predict gives {expected}: its MLPRegressor "
            "converter reshapes the output to (-1, 1) whatever the number of outputs")
    if len(expected) == 2 and expected[1] > 1:
        text += (f", so the {expected[1]} outputs of each row come one under another "
                 f"(right values, row-major; reshape to {expected} to read them; "
                 "onnx/sklearn-onnx#474, open)")
    return text


def task_case(ctx: Context, task: Task) -> list[Row]:
    case = f"export.{task.name}"
    if ort is None:
        return [ctx.row(case, case, "skl2onnx", note="skipped: onnxruntime not installed")]
    fitted = fit(task, ctx.smoke)
    batches = BATCHES[1 if ctx.smoke else 0]
    with tempfile.TemporaryDirectory() as folder:
        gs = graphs(fitted, ctx, Path(folder))
        diffs = {g.label: difference(g, fitted) for g in gs}
        times = {n: ctx.measure(_fns(gs, fitted, n)) for n in batches}
    title = f"{task.name}: {fitted.describe()}, {len(fitted.X_test)} held-out rows"
    ctx.add_table(title, _table(gs, diffs, times, fitted))
    rows = []
    for dtype in ("float32", "float64"):
        ours = next(g for g in gs if g.maker == "jacnet" and g.dtype == dtype)
        peer = next((g for g in gs if g.maker == "skl2onnx" and g.dtype == dtype), None)
        for n in batches:
            name = f"{fitted.describe()}, {dtype}, batch {n}"
            if peer is None:
                rows.append(ctx.row(case, name, "skl2onnx", jacnet=times[n][ours.label],
                                    note="skipped: skl2onnx not installed "
                                    "(pip install -e '.[bench]')"))
                continue
            rows.append(ctx.row(case, name, peer.label, jacnet=times[n][ours.label],
                                peer_time=times[n][peer.label]))
    peer_diff = next((diffs[g.label] for g in gs if g.maker == "skl2onnx"), None)
    if rows and peer_diff is not None:
        rows[0].note = _shape_note(peer_diff.shape, tuple(fitted.reference.shape))
    return rows


def cases(smoke: bool) -> list[Case]:
    """One case per model: a regressor, a three-output regressor, a classifier."""
    return [Case(f"export.{t.name}", partial(task_case, task=t)) for t in TASKS]
