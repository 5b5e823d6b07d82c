"""Model files: safetensors tensors plus one JSON document, no pickle, no code on load.

A model file is a standard safetensors file. Its tensors are every layer's ``W`` and
``b`` (``layers.0.W``, ``layers.0.b``, ...) and, for an estimator, the standardisation
statistics (``preprocessing.x_mean``, ``x_scale``, ``y_mean``, ``y_scale``). Its
safetensors ``metadata`` (a str -> str map) holds:

- ``format`` = ``"jacnet-model"`` and ``format_version`` = ``"1"``;
- ``jacnet``: a JSON document with the jacnet version, the ``kind`` (``"network"``,
  ``"MLPRegressor"``, ``"MLPClassifier"``), the dtype, the architecture (per layer
  ``n_in``, ``n_out`` and the activation's registered name and ``get_config()``), the
  estimator's parameters and fitted attributes (classes, feature names, loss curve,
  training record) and an optional ``extra`` dict (the command line's data encoding);
- ``sha256``: a digest of the document and every tensor, so a flipped byte anywhere is
  reported instead of silently changing the model.

Loading trusts nothing in the file: shapes, dtypes and the architecture are checked
against each other, only whitelisted attributes are set, and an activation is looked up
by name in ``jacnet.ACTIVATIONS`` (a custom one must be registered with
:func:`jacnet.register_activation` first). Any problem is one :class:`ModelFileError`.
Writes go through :func:`jacnet.checkpoint.atomic_write`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np
import safetensors.numpy
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.validation import check_is_fitted

from .activations import ACTIVATIONS, Activation, get_activation
from .checkpoint import atomic_write
from .data import FeatureEncoder
from .estimators import MLPClassifier, MLPRegressor
from .layers import Dense
from .network import Network
from .record import TrainingRecord

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "TableEncoder",
    "load",
    "load_network",
    "load_pipeline",
    "read_model",
    "save_estimator",
    "save_network",
]

FORMAT = "jacnet-model"
FORMAT_VERSION = 1

PathLike = str | os.PathLike[str]
Estimator = MLPRegressor | MLPClassifier

_ESTIMATORS: dict[str, type[MLPRegressor] | type[MLPClassifier]] = {
    "MLPRegressor": MLPRegressor,
    "MLPClassifier": MLPClassifier,
}
_PREPROCESSING = ("x_mean", "x_scale", "y_mean", "y_scale")
# Fitted attributes a file may set, and nothing else (the file is untrusted input).
_FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
           "best_validation_score_", "n_layers_", "n_outputs_", "n_features_in_",
           "out_activation_", "_multiclass", "_y_1d")


class ModelFileError(ValueError):
    """A file that is not a readable jacnet model file (the message is one line)."""


# ---------------------------------------------------------------------------- save
def save_network(net: Network, path: PathLike, *, extra: dict[str, Any] | None = None) -> None:
    """Write ``net`` to a safetensors model file at ``path`` (atomically).

    Parameters
    ----------
    net : Network
    path : str or path
    extra : dict, optional
        JSON-serialisable data stored alongside (returned by :func:`read_model`).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jacnet.Network, got {type(net).__name__}")
    _write(path, _network_tensors(net), _network_doc(net, "network", extra))


def save_estimator(est: Estimator, path: PathLike, *,
                   extra: dict[str, Any] | None = None) -> None:
    """Write a fitted ``MLPRegressor``/``MLPClassifier`` to ``path`` (atomically).

    The optimizer state kept for ``warm_start``/``partial_fit`` is not stored: a loaded
    estimator predicts exactly as the saved one, and further training restarts the
    optimizer's moments (and LM's mu) from their defaults. Without ``extra``, an estimator
    loaded from a file keeps that file's ``extra`` (the command line's data encoding) until
    a fresh fit, so saving it again writes the same model file.
    """
    kind = type(est).__name__
    if kind not in _ESTIMATORS or not isinstance(est, _ESTIMATORS[kind]):
        raise TypeError(f"est must be a jacnet MLPRegressor or MLPClassifier, got {kind}")
    check_is_fitted(est, "network_")
    net: Network = est.network_
    tensors = _network_tensors(net)
    present = []
    for name in _PREPROCESSING:
        value = getattr(est, f"{name}_", None)
        if value is not None:
            tensors[f"preprocessing.{name}"] = np.ascontiguousarray(value)
            present.append(name)
    doc = _network_doc(net, kind, extra if extra is not None else
                       getattr(est, "_file_extra", None))
    doc["preprocessing"] = present
    fitted = {name: _encode(getattr(est, name), name) for name in _FITTED if hasattr(est, name)}
    estimator: dict[str, Any] = {
        "params": {k: _encode_param(k, v) for k, v in est.get_params(deep=False).items()},
        "fitted": fitted,
        "feature_names_in": (None if getattr(est, "feature_names_in_", None) is None
                             else [str(s) for s in est.feature_names_in_]),
    }
    if isinstance(est, MLPClassifier):
        lb = est._label_binarizer
        estimator["classes"] = _encode(np.asarray(lb.classes_), "classes_")
        estimator["label_binarizer"] = {
            "y_type": str(lb.y_type_), "neg_label": int(lb.neg_label),
            "pos_label": int(lb.pos_label), "sparse_input": bool(lb.sparse_input_),
        }
    doc["estimator"] = estimator
    record = getattr(est, "training_record_", None)
    doc["training_record"] = None if record is None else record.to_dict()
    _write(path, tensors, doc)


def _network_tensors(net: Network) -> dict[str, np.ndarray]:
    tensors = {}
    for k, layer in enumerate(net.layers):
        tensors[f"layers.{k}.W"] = np.ascontiguousarray(layer.W)
        tensors[f"layers.{k}.b"] = np.ascontiguousarray(layer.b)
    return tensors


def _network_doc(net: Network, kind: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    from . import __version__

    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jacnet_version": __version__,
        "kind": kind,
        "dtype": net.dtype.name,
        "n_params": net.n_params,
        "architecture": [
            {"n_in": layer.n_in, "n_out": layer.n_out,
             "activation": _activation_spec(layer.activation)}
            for layer in net.layers
        ],
        "extra": extra,
    }


def _activation_spec(act: Activation) -> dict[str, Any]:
    """``{"name", "config"}``; the name must be registered to this very class."""
    cls, name = type(act), act.name
    if not name:
        raise ValueError(f"activation {cls.__name__} has no name: give the class a unique "
                         "`name` and register it with jacnet.register_activation to save it")
    owner = ACTIVATIONS.get(name)
    if owner is None:
        raise ValueError(f"activation {cls.__name__} (name {name!r}) is not registered: call "
                         f"jacnet.register_activation({cls.__name__}) before saving and loading")
    if owner is not cls:
        raise ValueError(f"activation {cls.__name__} uses the name {name!r} of "
                         f"{owner.__name__}: give it its own name and register it")
    config = act.get_config()
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"activation {name!r}: get_config() must return a JSON-serialisable "
                         f"dict of finite values to be saved ({exc})") from None
    return {"name": name, "config": config}


def _write(path: PathLike, tensors: dict[str, np.ndarray], doc: dict[str, Any]) -> None:
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot store the model's metadata as JSON: {exc}") from None
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "jacnet": text,
                "sha256": _digest(text, tensors)}
    atomic_write(path, safetensors.numpy.save(tensors, metadata=metadata))


def _digest(text: str, tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype.str}|{t.shape}".encode())
        h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- load
def load(path: PathLike) -> Network | Estimator:
    """Load a model file: the estimator it holds, or a :class:`Network` (kind "network").

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is not a valid jacnet model file (truncated, corrupted, foreign, of a
        newer format version, or using an activation that is not registered).
    """
    return read_model(path)[0]


class TableEncoder(TransformerMixin, BaseEstimator):
    """The command line's encoding of a table's feature columns, as a scikit-learn
    transformer: the columns in training order, each text column one-hot on the stored
    categories. Fitted when made (from a model file); ``fit`` changes nothing."""

    def __init__(self, encoder: FeatureEncoder | None = None) -> None:
        self.encoder = encoder

    def fit(self, X: Any, y: Any = None) -> TableEncoder:
        return self

    def transform(self, X: Any) -> Any:
        import pandas as pd

        if self.encoder is None:
            raise ValueError("TableEncoder needs the encoder of a model file (load_pipeline)")
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame with the feature columns "
                            f"{self.encoder.columns}, got {type(X).__name__}")
        return self.encoder.transform(X)

    def __sklearn_is_fitted__(self) -> bool:
        return self.encoder is not None


def load_pipeline(path: PathLike) -> Pipeline:
    """A model file as a scikit-learn ``Pipeline`` that takes the raw table.

    For a file written by ``jacnet train`` the pipeline is the stored encoding of the
    feature columns (:class:`TableEncoder`) then the estimator, so
    ``load_pipeline(path).predict(frame)`` gives what ``jacnet predict`` writes for the
    same rows. Read text codes as text (``pd.read_csv(..., dtype={"zone": str})``): "010"
    read as the number 10 is another category. A file saved from Python, with no stored
    encoding, gives a pipeline of the estimator alone.
    """
    model, doc = read_model(path)
    if isinstance(model, Network):
        raise TypeError(f"{path} holds a bare network; load_pipeline needs an estimator "
                        "(use load)")
    spec = ((doc.get("extra") or {}).get("data") or {}).get("features")
    steps: list[tuple[str, Any]] = []
    if spec is not None:
        steps.append(("encode", TableEncoder(FeatureEncoder.from_dict(spec))))
    steps.append(("model", model))
    return Pipeline(steps)


def load_network(path: PathLike) -> Network:
    """Load the :class:`Network` of a model file (an estimator's ``network_`` too)."""
    obj = load(path)
    return obj if isinstance(obj, Network) else obj.network_


def read_model(path: PathLike) -> tuple[Network | Estimator, dict[str, Any]]:
    """Load a model file; return ``(model, doc)`` with ``doc`` the file's JSON document.

    ``doc["extra"]`` is what was passed as ``extra`` when saving.
    """
    tensors, doc = _read(path)
    try:
        net = _build_network(doc, tensors)
        kind = doc["kind"]
        if kind == "network":
            _expect_names(tensors, net, [])
            return net, doc
        if kind not in _ESTIMATORS:
            raise ModelFileError(f"unknown kind {kind!r}")
        return _build_estimator(_ESTIMATORS[kind], doc, tensors, net), doc
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else _one_line(exc)
        raise ModelFileError(f"{path}: invalid jacnet model metadata ({what})") from None


def _read(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and the JSON document, after the format, version and digest checks."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a jacnet model file") from None

    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{path} is not a jacnet model file ({reason})")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes: empty or truncated")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise bad("not a safetensors file, or truncated: the header runs past the end")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("not a safetensors file: unreadable header") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"a safetensors file without {FORMAT!r} metadata")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        newer = isinstance(version, str) and version.isdigit() and int(version) > FORMAT_VERSION
        hint = "; upgrade jacnet to read it" if newer else ""
        raise ModelFileError(f"{path}: format version {version!r} is not supported (this "
                             f"jacnet reads version {FORMAT_VERSION}){hint}")
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # safetensors' own error type is not a public name
        raise ModelFileError(f"{path} is corrupted or truncated ({_one_line(exc)})") from None
    text = meta.get("jacnet")
    if not isinstance(text, str) or meta.get("sha256") != _digest(text, tensors):
        raise ModelFileError(f"{path} is corrupted: its content does not match its checksum")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path} is corrupted: unreadable metadata") from None
    if not isinstance(doc, dict):
        raise ModelFileError(f"{path} is corrupted: metadata is not a JSON object")
    return tensors, doc


def _build_network(doc: dict[str, Any], tensors: dict[str, np.ndarray]) -> Network:
    dtype = doc["dtype"]
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"dtype must be float32 or float64, got {dtype!r}")
    arch = doc["architecture"]
    if not isinstance(arch, list) or not arch:
        raise ModelFileError("the architecture must list at least one layer")
    layers, values = [], []
    for k, spec in enumerate(arch):
        n_in, n_out = _count(spec["n_in"], f"layer {k} n_in"), _count(spec["n_out"], "n_out")
        # The stored tensors are checked against the claimed widths first: a layer is
        # allocated (and drawn) only at the size of weights that really are in the file,
        # so a few bytes of metadata cannot claim gigabytes.
        values.append([_tensor(tensors, f"layers.{k}.{part}", shape, np.dtype(dtype))
                       for part, shape in (("W", (n_in, n_out)), ("b", (n_out,)))])
        layers.append(Dense(n_in, n_out, _activation(spec["activation"])))
    net = Network(layers, seed=0, dtype=dtype)  # checks that consecutive widths agree
    for layer, (W, b) in zip(net.layers, values, strict=True):
        layer.W, layer.b = W, b  # Dense checks finiteness and copies bit for bit
    return net


def _activation(spec: Any) -> Activation:
    name, config = spec["name"], spec["config"]
    if not isinstance(name, str) or not isinstance(config, dict):
        raise ModelFileError(f"bad activation entry {spec!r}")
    if name not in ACTIVATIONS:
        raise ModelFileError(f"the model uses activation {name!r}, which is not registered: "
                             "import or define its class and call "
                             "jacnet.register_activation(TheClass) before loading")
    try:
        return get_activation(name, **config)
    except TypeError as exc:
        raise ModelFileError(f"activation {name!r} rejects its stored config {config}: "
                             f"{_one_line(exc)}") from None


def _tensor(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...],
            dtype: np.dtype | None) -> np.ndarray:
    if name not in tensors:
        raise ModelFileError(f"tensor {name!r} is missing")
    t = tensors[name]
    if t.shape != tuple(shape):
        raise ModelFileError(f"tensor {name!r} has shape {t.shape}, the architecture "
                             f"needs {tuple(shape)}")
    if dtype is not None and t.dtype != dtype:
        raise ModelFileError(f"tensor {name!r} is {t.dtype}, the model is {dtype}")
    if t.dtype.kind != "f" or not np.isfinite(t).all():
        raise ModelFileError(f"tensor {name!r} must hold finite floats")
    return t


def _expect_names(tensors: dict[str, np.ndarray], net: Network, extra: list[str]) -> None:
    known = {f"layers.{k}.{p}" for k in range(len(net.layers)) for p in ("W", "b")}
    unknown = sorted(set(tensors) - known - set(extra))
    if unknown:
        raise ModelFileError(f"unexpected tensors {unknown}")


def _build_estimator(cls: type[MLPRegressor] | type[MLPClassifier], doc: dict[str, Any],
                     tensors: dict[str, np.ndarray], net: Network) -> Estimator:
    spec = doc["estimator"]
    params = {k: _decode(v) for k, v in spec["params"].items()}
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{cls.__name__} rejects the stored parameters: "
                             f"{_one_line(exc)}") from None
    est.network_ = net
    present = doc["preprocessing"]
    if not set(present) <= set(_PREPROCESSING):
        raise ModelFileError(f"unknown preprocessing entries {present}")
    _expect_names(tensors, net, [f"preprocessing.{p}" for p in present])
    for name in _PREPROCESSING:
        width = net.n_in if name.startswith("x") else net.n_out
        value = (_tensor(tensors, f"preprocessing.{name}", (width,), None).copy()
                 if name in present else None)
        if name.endswith("scale") and value is not None and not (value > 0).all():
            raise ModelFileError(f"preprocessing {name} must be positive")
        setattr(est, f"{name}_", value)
    if (est.x_mean_ is None) != (est.x_scale_ is None) or (
            (est.y_mean_ is None) != (est.y_scale_ is None)):
        raise ModelFileError("preprocessing needs both the mean and the scale")
    fitted = spec["fitted"]
    for name in _FITTED:
        if name in fitted:
            setattr(est, name, _decode(fitted[name]))
    for name in ("n_features_in_", "n_outputs_"):
        expected = net.n_in if name == "n_features_in_" else net.n_out
        if getattr(est, name, None) != expected:
            raise ModelFileError(f"{name} = {getattr(est, name, None)!r} does not match the "
                                 f"network ({expected})")
    names = spec.get("feature_names_in")
    if names is not None:
        if not (isinstance(names, list) and len(names) == net.n_in
                and all(isinstance(s, str) for s in names)):
            raise ModelFileError(f"feature_names_in must be {net.n_in} strings")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    if isinstance(est, MLPClassifier):
        est._label_binarizer = _label_binarizer(spec, net.n_out)
        est.classes_ = est._label_binarizer.classes_
        est._multiclass = est._label_binarizer.y_type_ == "multiclass"
    record = doc.get("training_record")
    if record is not None:
        est.training_record_ = TrainingRecord.from_dict(record)
    est._solver, est._stalls = None, {}
    est._file_extra = doc.get("extra")  # written again by save_estimator (until a fresh fit)
    est.coefs_, est.intercepts_ = est._folded_params()
    return est


def _label_binarizer(spec: dict[str, Any], n_out: int) -> LabelBinarizer:
    classes = _decode(spec["classes"])
    info = spec["label_binarizer"]
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 1:
        raise ModelFileError("classes must be a non-empty list")
    y_type = info["y_type"]
    expected = {"binary": 1, "multiclass": len(classes), "multilabel-indicator": len(classes)}
    if y_type not in expected or (expected[y_type] != n_out and len(classes) > 1):
        raise ModelFileError(f"{len(classes)} classes of type {y_type!r} do not match "
                             f"{n_out} network outputs")
    lb = LabelBinarizer(neg_label=int(info["neg_label"]), pos_label=int(info["pos_label"]))
    lb.classes_ = classes
    lb.y_type_ = y_type
    lb.sparse_input_ = bool(info["sparse_input"])
    return lb


# ------------------------------------------------------------------ JSON encoding
def _encode_param(name: str, value: Any) -> Any:
    if name == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
        return None  # a RandomState instance: only the seed of a future fit, not stored
    return _encode(value, name)


def _encode(v: Any, where: str) -> Any:
    """A strict-JSON value that :func:`_decode` turns back into ``v`` exactly."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else {"__float__": str(float(v))}
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, Activation):
        return {"__activation__": _activation_spec(v)}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, where) for x in v]}
    if isinstance(v, list):
        return [_encode(x, where) for x in v]
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return {"__dtype__": np.dtype(v).name}
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "biufUO":
        values = [_encode(x, where) for x in v.tolist()]
        if v.dtype.kind == "O" and not all(isinstance(x, (str, int, float, bool))
                                           for x in v.tolist()):
            raise ValueError(f"{where}: cannot store objects of types "
                             f"{sorted({type(x).__name__ for x in v.tolist()})}")
        return {"__array__": {"dtype": v.dtype.str, "values": values}}
    raise ValueError(f"{where}: cannot store a {type(v).__name__} in a model file")


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) != 1:
        raise ModelFileError(f"unexpected metadata value {v!r}")
    ((tag, body),) = v.items()
    if tag == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "__tuple__" and isinstance(body, list):
        return tuple(_decode(x) for x in body)
    if tag == "__activation__":
        return _activation(body)
    if tag == "__dtype__" and body in ("float32", "float64"):
        return np.dtype(body)
    if tag == "__array__":
        dtype = np.dtype(body["dtype"])
        values = [_decode(x) for x in body["values"]]
        if dtype.kind not in "biufUO" or not all(
                isinstance(x, (str, int, float, bool)) for x in values):
            raise ModelFileError(f"bad array entry of dtype {dtype}")
        return np.array(values, dtype=dtype)
    raise ModelFileError(f"unexpected metadata value {v!r}")


def _count(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ModelFileError(f"{what} must be a positive int, got {v!r}")
    return v


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
