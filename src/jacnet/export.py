"""ONNX export: a fitted estimator, or a network, as one ONNX graph that runs anywhere.

The graph holds the whole model: the table encoding of a command-line model (one input
per feature column, text one-hot), the input standardisation, every layer
(``MatMul`` + ``Add`` + the activation's form from :mod:`jacnet.onnxforms`), the target
unscaling of a regressor; for a classifier the labels (as ``predict``) and the
probabilities (as ``predict_proba``). With ``with_input_jacobian`` one more output holds
dy/dx per sample in the data's units, carried forward through the graph: the tangent of
each layer is ``tdot = ydot_prev . W`` (seed R-b read forwards) and ``ydot = tdot . f'^T``.

Everything is float64 unless asked otherwise: the model's own precision (scikit-learn's
converter, skl2onnx, works in float32 without saying so). The opset is
:data:`jacnet.onnxforms.OPSET`. The ``onnx`` package is imported only here, when a model
is exported (the optional extra ``jacnet[onnx]``); an estimator reaches this module only
through its ``to_onnx`` method, and this module never imports the estimators: it reads
them through their ``to_state()``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .activations import Activation
from .checkpoint import atomic_write
from .network import Network
from .onnxforms import ML_OPSET, OPSET, ExportError, OnnxBuilder, form_of

__all__ = ["ExportError", "export_onnx", "onnx_model", "describe_onnx", "OPSET"]

Array = np.ndarray
PathLike = str | os.PathLike[str]
DTYPES = ("float32", "float64")
#: Output names, and the prefix of every inner tensor (a feature column may not use them).
OUTPUTS = ("output", "prediction", "label", "probabilities", "input_jacobian")
INNER = "jacnet/"


@dataclass
class ModelParts:
    """What the graph needs of a model, read from a :class:`Network` or ``to_state()``."""

    kind: str  # "network", "MLPRegressor" or "MLPClassifier"
    layers: list[tuple[Array, Array, Activation]]
    stats: dict[str, Array] = field(default_factory=dict)  # x_mean, x_scale, y_mean, y_scale
    classes: Array | None = None
    y_type: str = ""
    threshold: float = 0.5
    feature_names: list[str] | None = None

    @property
    def n_in(self) -> int:
        return self.layers[0][0].shape[0]

    @property
    def n_out(self) -> int:
        return self.layers[-1][0].shape[1]


def model_parts(model: Any) -> ModelParts:
    """The parts of a :class:`Network` or a fitted ``MLPRegressor``/``MLPClassifier``."""
    if isinstance(model, Network):
        return ModelParts("network", [(la.W, la.b, la.activation) for la in model.layers])
    if not callable(getattr(model, "to_state", None)):
        raise TypeError("model must be a jacnet Network, MLPRegressor or MLPClassifier, got "
                        f"{type(model).__name__}")
    if hasattr(model, "estimators_") or type(model).__name__ == "Ensemble":
        raise ExportError(f"cannot export a {type(model).__name__}: export takes one model "
                          "(a Network, MLPRegressor or MLPClassifier); export each member "
                          "(ensemble.estimators_[k]) on its own")
    if getattr(model, "network_", None) is None:
        raise ExportError(f"cannot export an unfitted {type(model).__name__}: call fit first")
    tensors, meta = model.to_state()
    layers = [(tensors[f"layers.{k}.W"], tensors[f"layers.{k}.b"], spec["activation"])
              for k, spec in enumerate(meta["architecture"])]
    stats = {name: np.asarray(tensors[f"preprocessing.{name}"], dtype=np.float64)
             for name in meta["preprocessing"]}
    parts = ModelParts(meta["kind"], layers, stats, feature_names=meta["feature_names_in"])
    if meta["kind"] == "MLPClassifier":
        lb = meta["label_binarizer"]
        parts.classes = np.asarray(meta["classes"])
        parts.y_type = lb["y_type"]
        parts.threshold = (lb["pos_label"] + lb["neg_label"]) / 2.0  # LabelBinarizer's
    return parts


# ------------------------------------------------------------------ the graph's parts
def _tensor_type(dtype: Any) -> int:
    from onnx.helper import np_dtype_to_tensor_dtype

    return int(np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _inputs(g: OnnxBuilder, parts: ModelParts, encoder: Any) -> tuple[list[Any], str]:
    """The graph's inputs and the name of the (N, n_in) feature matrix built from them.

    Without an encoder: one input ``X``. With one (a command-line model's
    ``FeatureEncoder``): one 1-D input per feature column, numbers in the graph's float
    type, text as strings one-hot encoded on the stored categories by ``ai.onnx.ml``'s
    ``OneHotEncoder`` with ``zeros=0``, which fails on an unseen category as
    ``jacnet predict`` does.
    """
    if encoder is None:
        return [("X", _tensor_type(g.dtype), ["N", parts.n_in])], "X"
    inputs, blocks = [], []
    for col in encoder.columns:
        if col in OUTPUTS or col.startswith(INNER):
            raise ExportError(f"feature column {col!r} has the name of an output or of the "
                              "graph's inner tensors; rename it before training")
        cats = encoder.categories.get(col)
        if cats is None:
            inputs.append((col, _tensor_type(g.dtype), ["N"]))
            blocks.append(g.op("Unsqueeze", col, g.axes(1)))
        else:
            inputs.append((col, _tensor_type(np.str_), ["N"]))
            onehot = g.op("OneHotEncoder", col, domain="ai.onnx.ml",
                          cats_strings=[str(c) for c in cats], zeros=0)
            blocks.append(g.cast(onehot))
    x = g.op("Concat", *blocks, axis=1) if len(blocks) > 1 else blocks[0]
    width = sum(len(encoder.categories.get(c, [None])) for c in encoder.columns)
    if width != parts.n_in:
        raise ExportError(f"the encoder gives {width} columns, the model takes {parts.n_in}")
    return inputs, x


def _forward(g: OnnxBuilder, parts: ModelParts, x: str, jacobian: bool
             ) -> tuple[str, str | None]:
    """The network's output (N, n_out) from the feature matrix, and the tangent
    (N or 1, n_in, n_out) of the outputs per input in the network's units (or None)."""
    forms = [form_of(act, jacobian) for _, _, act in parts.layers]  # every error first
    tangent = None
    if "x_mean" in parts.stats:
        x = g.op("Div", g.op("Sub", x, g.const(parts.stats["x_mean"], "x_mean")),
                 g.const(parts.stats["x_scale"], "x_scale"))
    if jacobian:  # d x_scaled / d x = diag(1 / x_scale)
        scale = parts.stats.get("x_scale", np.ones(parts.n_in))
        tangent = g.const(np.diag(1 / scale)[None], "dx")
    for k, ((W, b, act), form) in enumerate(zip(parts.layers, forms, strict=True)):
        w = g.const(W, f"W{k}")
        t = g.op("Add", g.op("MatMul", x, w), g.const(b, f"b{k}"))  # t = y_prev W + b
        x = form.forward(g, act, t)
        if tangent is not None and form.jvp is not None:  # form_of gave one when asked
            tdot = g.op("MatMul", tangent, w)  # seed R-b forwards: tdot = ydot_prev . W
            rows = [g.op("Unsqueeze", v, g.axes(1)) for v in (t, x)]
            tangent = form.jvp(g, act, rows[0], rows[1], tdot)
    return x, tangent


def _unscaled(g: OnnxBuilder, parts: ModelParts, y: str) -> str:
    if "y_mean" not in parts.stats:
        return y
    return g.op("Add", g.op("Mul", y, g.const(parts.stats["y_scale"], "y_scale")),
                g.const(parts.stats["y_mean"], "y_mean"))


def _labels(g: OnnxBuilder, parts: ModelParts, y: str) -> tuple[str, int, list[Any]]:
    """``LabelBinarizer.inverse_transform``: argmax over classes (multiclass), the 0/1
    matrix (multilabel) or the class of ``y > threshold`` (binary)."""
    assert parts.classes is not None
    if parts.y_type.startswith("multilabel"):
        above = g.op("Greater", y, g.const(parts.threshold))
        return g.cast(above, np.int64), _tensor_type(np.int64), ["N", parts.n_out]
    classes = parts.classes
    kind = classes.dtype.kind
    values = classes.astype(object if kind in "OUS" else np.int64 if kind in "iu" else
                            classes.dtype)
    table = g.const(values, "classes", values.dtype)
    if parts.y_type == "multiclass":
        idx = g.op("ArgMax", y, axis=1, keepdims=0)
    else:
        above = g.op("Greater", g.op("Reshape", y, g.const([-1], "flat", np.int64)),
                     g.const(parts.threshold))
        idx = g.cast(above, np.int64)
        if len(classes) == 1:  # one class seen: always that one
            idx = g.op("Mul", idx, g.const(0, "zero", np.int64))
    out_type = _tensor_type(np.str_ if values.dtype == object else values.dtype)
    return g.op("Gather", table, idx, axis=0), out_type, ["N"]


def _outputs(g: OnnxBuilder, parts: ModelParts, y: str) -> list[tuple[str, int, list[Any]]]:
    """The named outputs: what ``predict`` returns first, the probabilities next."""
    f = _tensor_type(g.dtype)
    q = parts.n_out
    if parts.kind == "network":
        g.op("Identity", y, out="output")
        return [("output", f, ["N", q])]
    y = _unscaled(g, parts, y)
    if parts.kind == "MLPRegressor":
        if q == 1:
            g.op("Reshape", y, g.const([-1], "flat", np.int64), out="prediction")
            return [("prediction", f, ["N"])]
        g.op("Identity", y, out="prediction")
        return [("prediction", f, ["N", q])]
    labels, label_type, label_shape = _labels(g, parts, y)
    g.op("Identity", labels, out="label")
    if q == 1 and not parts.y_type.startswith("multilabel"):
        g.op("Concat", g.op("Sub", g.const(1.0), y), y, axis=1, out="probabilities")
        n_proba = 2
    else:
        g.op("Identity", y, out="probabilities")
        n_proba = q
    return [("label", label_type, label_shape), ("probabilities", f, ["N", n_proba])]


def _jacobian_output(g: OnnxBuilder, parts: ModelParts, x: str, tangent: str
                     ) -> tuple[str, int, list[Any]]:
    """dy/dx (N, n_out, n_in) in the data's units, as ``input_jacobian``."""
    q, n = parts.n_out, parts.n_in
    J = g.op("Transpose", tangent, perm=[0, 2, 1])
    if "y_scale" in parts.stats:
        J = g.op("Mul", J, g.const(parts.stats["y_scale"][None, :, None], "y_scale_col"))
    shape = g.op("Concat", g.op("Shape", x, start=0, end=1), g.const([q, n], "qn", np.int64),
                 axis=0)
    g.op("Expand", J, shape, out="input_jacobian")  # the same rows where the net is affine
    return ("input_jacobian", _tensor_type(g.dtype), ["N", q, n])


# ------------------------------------------------------------------ the model
def _dtype(dtype: Any) -> np.dtype:
    name = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", str(dtype))
    if name not in DTYPES:
        raise ExportError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(name)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("exporting to ONNX needs the onnx package: "
                          "pip install 'jacnet[onnx]'") from exc
    return onnx


def _metadata(parts: ModelParts, dtype: np.dtype, inputs: list[Any], outputs: list[Any],
              encoder: Any, version: str) -> dict[str, str]:
    from onnx import TensorProto

    def io(items: list[Any]) -> str:
        return json.dumps([{"name": n, "type": TensorProto.DataType.Name(t).lower(),
                            "shape": s} for n, t, s in items])

    meta = {"jacnet.version": version, "jacnet.kind": parts.kind,
            "jacnet.dtype": dtype.name, "jacnet.opset": str(OPSET),
            "jacnet.inputs": io(inputs), "jacnet.outputs": io(outputs),
            "jacnet.layers": json.dumps([[W.shape[0], W.shape[1], repr(act)]
                                         for W, _, act in parts.layers]),
            "jacnet.standardized": json.dumps(sorted(parts.stats))}
    if parts.classes is not None:
        meta["jacnet.classes"] = json.dumps([str(c) for c in parts.classes.tolist()])
        meta["jacnet.target_type"] = parts.y_type
    if encoder is not None:
        meta["jacnet.features"] = json.dumps(encoder.to_dict())
    elif parts.feature_names is not None:
        meta["jacnet.features"] = json.dumps({"columns": parts.feature_names})
    return meta


def onnx_model(model: Any, *, dtype: Any = "float64", with_input_jacobian: bool = False,
               encoder: Any = None) -> Any:
    """The ONNX ``ModelProto`` of ``model``, checked by ``onnx.checker`` (full check).

    Parameters as :func:`export_onnx`.
    """
    dt = _dtype(dtype)
    parts = model_parts(model)
    onnx = _onnx()
    helper = onnx.helper
    g = OnnxBuilder(dt, prefix=INNER)
    inputs, x = _inputs(g, parts, encoder)
    y, tangent = _forward(g, parts, x, with_input_jacobian)
    outputs = _outputs(g, parts, y)
    if tangent is not None:
        outputs.append(_jacobian_output(g, parts, x, tangent))
    graph = helper.make_graph(
        g.nodes, f"jacnet {parts.kind}",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if encoder is not None and encoder.categories:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    from . import __version__

    proto = helper.make_model(graph, opset_imports=opsets, producer_name="jacnet",
                              producer_version=__version__)
    proto.ir_version = 8  # the IR of opset 18: runtimes as old as the opset read it
    helper.set_model_props(proto, _metadata(parts, dt, inputs, outputs, encoder, __version__))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Any, path: PathLike, *, dtype: Any = "float64",
                with_input_jacobian: bool = False, encoder: Any = None) -> None:
    """Write ``model`` as an ONNX file at ``path`` (atomically: no partial file).

    Parameters
    ----------
    model : Network, MLPRegressor or MLPClassifier
        A network, or a fitted estimator (its standardisation, labels and probabilities
        go into the graph).
    path : str or path-like
    dtype : {"float64", "float32"}, default "float64"
        The float type of the graph's inputs, weights and outputs. float64 is the model's
        own precision; float32 halves the file and gives up about eight digits.
    with_input_jacobian : bool, default False
        Add the output ``input_jacobian``, dy/dx of shape (N, n_outputs, n_features) in
        the data's units (as ``input_jacobian``).
    encoder : jacnet.data.FeatureEncoder, optional
        The table encoding of a model trained by ``jacnet train``: the graph then takes
        one input per feature column (numbers as floats, text as strings).

    Raises
    ------
    ExportError
        An unfitted estimator, an activation without an ONNX form, an unknown dtype.
    OSError
        ``path`` cannot be written.
    """
    proto = onnx_model(model, dtype=dtype, with_input_jacobian=with_input_jacobian,
                       encoder=encoder)
    atomic_write(path, proto.SerializeToString())


def describe_onnx(path: PathLike) -> dict[str, Any]:
    """What an ONNX file holds: ``inputs`` and ``outputs`` as ``(name, type, shape)``, the
    ``opsets``, the ``producer`` and the ``jacnet.*`` metadata (empty for a file that
    jacnet did not make)."""
    onnx = _onnx()
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # a protobuf decode error has no common public base class
        raise ExportError(f"{path} is not a readable ONNX file ({exc})") from exc

    def items(values: Any) -> list[tuple[str, str, list[Any]]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param or d.dim_value for d in t.shape.dim]
            out.append((v.name, onnx.TensorProto.DataType.Name(t.elem_type).lower(), shape))
        return out

    return {"inputs": items(proto.graph.input), "outputs": items(proto.graph.output),
            "opsets": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "jacnet": {p.key[7:]: p.value for p in proto.metadata_props
                       if p.key.startswith("jacnet.")}}
