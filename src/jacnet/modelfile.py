"""The model-file format: tensors and one JSON document in a safetensors file, no pickle.

A model file is a standard safetensors file. Its tensors are every layer's ``W`` and
``b`` (``layers.0.W``, ``layers.0.b``, ...) and, for an estimator, the standardisation
statistics (``preprocessing.x_mean``, ``x_scale``, ``y_mean``, ``y_scale``) and, for a
regressor, its predictive posterior (``uncertainty.covariance_factor``, optional). Its
safetensors ``metadata`` (a str -> str map) holds:

- ``format`` = ``"jacnet-model"`` and ``format_version`` = ``"1"``;
- ``jacnet``: a JSON document with the jacnet version, the ``kind`` (``"network"``,
  ``"MLPRegressor"``, ``"MLPClassifier"``), the dtype, the architecture (per layer
  ``n_in``, ``n_out`` and the activation's registered name and ``get_config()``), the
  estimator's parameters and fitted attributes (classes, feature names, loss curve,
  training record) and an optional ``extra`` dict (the command line's data encoding);
- ``sha256``: a digest of the document and every tensor, so a flipped byte anywhere is
  reported instead of silently changing the model.

An ensemble file (kind ``"Ensemble"``) holds each member's tensors prefixed ``member.{k}.``
and its document lists the members' documents (``members``) with the ensemble's own
parameters (``ensemble``); files of the other kinds are unchanged by it.

This module knows networks, tensors and plain values, never an estimator: an estimator
gives its state as ``(tensors, meta)`` (``to_state``) and is rebuilt from them
(``from_state``); :func:`state_document` and :func:`read_state` turn that ``meta`` into
the JSON document and back. :mod:`jacnet.io` puts the two together.

Loading trusts nothing in the file: shapes, dtypes and the architecture are checked
against each other before anything is allocated, values are decoded from a closed set
of JSON tags, and an activation is looked up by name in ``jacnet.ACTIVATIONS`` (a custom
one must be registered with :func:`jacnet.register_activation` first). Any problem is one
:class:`ModelFileError`. Writes go through :func:`jacnet.checkpoint.atomic_write`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import safetensors.numpy

from .activations import ACTIVATIONS, Activation, get_activation
from .checkpoint import atomic_write
from .layers import Dense
from .network import Network

__all__ = [
    "ENSEMBLE",
    "FORMAT",
    "FORMAT_VERSION",
    "PREPROCESSING",
    "UNCERTAINTY",
    "ModelFileError",
    "build_network",
    "document_network",
    "ensemble_members",
    "ensemble_state",
    "file_errors",
    "load_network",
    "network_state",
    "read",
    "read_state",
    "save_network",
    "state_document",
    "write",
]

FORMAT = "jacnet-model"
FORMAT_VERSION = 1

PathLike = str | os.PathLike[str]
Array = np.ndarray

#: The standardisation statistics an estimator file may hold, as ``preprocessing.<name>``.
PREPROCESSING = ("x_mean", "x_scale", "y_mean", "y_scale")
#: A regressor's predictive uncertainty, optional tensors: the posterior's covariance
#: factor (P, P), float64, with the document's ``uncertainty`` entry, and the validation
#: rows' absolute residuals (n, n_out) for conformal intervals. Files without them (older
#: ones among them) load and predict means.
UNCERTAINTY = ("uncertainty.covariance_factor", "uncertainty.conformal_scores")
#: The kind of an ensemble file; its members are regressors (``"MLPRegressor"``).
ENSEMBLE = "Ensemble"


class ModelFileError(ValueError):
    """A file that is not a readable jacnet model file (the message is one line)."""


# ------------------------------------------------------------------------- networks
def network_state(net: Network) -> tuple[dict[str, Array], dict[str, Any]]:
    """``net`` as tensors ``layers.{k}.W``/``layers.{k}.b`` and ``{"dtype", "architecture"}``.

    ``architecture`` lists per layer ``{"n_in", "n_out", "activation"}`` with the
    activation instance itself; :func:`build_network` is the inverse.
    """
    tensors = {}
    for k, layer in enumerate(net.layers):
        tensors[f"layers.{k}.W"] = np.ascontiguousarray(layer.W)
        tensors[f"layers.{k}.b"] = np.ascontiguousarray(layer.b)
    architecture = [{"n_in": layer.n_in, "n_out": layer.n_out, "activation": layer.activation}
                    for layer in net.layers]
    return tensors, {"dtype": net.dtype.name, "architecture": architecture}


def build_network(tensors: dict[str, Array], spec: dict[str, Any]) -> Network:
    """The :class:`Network` of ``spec`` (``{"dtype", "architecture"}``) with the weights in
    ``tensors``; every tensor is checked against the claimed widths before a layer is built."""
    dtype = spec["dtype"]
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"dtype must be float32 or float64, got {dtype!r}")
    arch = spec["architecture"]
    if not isinstance(arch, list) or not arch:
        raise ModelFileError("the architecture must list at least one layer")
    values, acts = [], []
    for k, layer in enumerate(arch):
        n_in, n_out = _count(layer["n_in"], f"layer {k} n_in"), _count(layer["n_out"], "n_out")
        # The stored tensors are checked against the claimed widths first: a layer is
        # allocated (and drawn) only at the size of weights that really are in the file,
        # so a few bytes of metadata cannot claim gigabytes.
        values.append([_tensor(tensors, f"layers.{k}.{part}", shape, np.dtype(dtype))
                       for part, shape in (("W", (n_in, n_out)), ("b", (n_out,)))])
        acts.append((n_in, n_out, layer["activation"]))
    layers = [Dense(n_in, n_out, act) for n_in, n_out, act in acts]
    net = Network(layers, seed=0, dtype=dtype)  # checks that consecutive widths agree
    for layer, (W, b) in zip(net.layers, values, strict=True):
        layer.W, layer.b = W, b  # Dense checks finiteness and copies bit for bit
    return net


def save_network(net: Network, path: PathLike, *, extra: dict[str, Any] | None = None) -> None:
    """Write ``net`` to a safetensors model file at ``path`` (atomically).

    Parameters
    ----------
    net : Network
    path : str or path
    extra : dict, optional
        JSON-serialisable data stored alongside (returned by ``jacnet.io.read_model``).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jacnet.Network, got {type(net).__name__}")
    tensors, spec = network_state(net)
    write(path, tensors, _document("network", spec, extra))


def load_network(path: PathLike) -> Network:
    """Load the :class:`Network` of a model file (an estimator's ``network_`` too)."""
    tensors, doc = read(path)
    with file_errors(path):
        net = document_network(tensors, doc)
    return net


def document_network(tensors: dict[str, Array], doc: dict[str, Any]) -> Network:
    """The network of a read file's ``(tensors, doc)``; no tensor may be left unexplained."""
    net = build_network(tensors, {"dtype": doc["dtype"],
                                  "architecture": _architecture(doc["architecture"])})
    extra = [] if doc["kind"] == "network" else [
        f"preprocessing.{p}" for p in doc["preprocessing"] if p in PREPROCESSING]
    _expect_names(tensors, net, extra)
    return net


def _document(kind: str, spec: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    from . import __version__

    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    arch = spec["architecture"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jacnet_version": __version__,
        "kind": kind,
        "dtype": spec["dtype"],
        "n_params": sum(a["n_in"] * a["n_out"] + a["n_out"] for a in arch),
        "architecture": [
            {"n_in": a["n_in"], "n_out": a["n_out"],
             "activation": _activation_spec(a["activation"])}
            for a in arch
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


def _architecture(arch: Any) -> list[dict[str, Any]]:
    """The document's architecture with each activation spec made an instance."""
    if not isinstance(arch, list) or not arch:
        raise ModelFileError("the architecture must list at least one layer")
    return [{"n_in": a["n_in"], "n_out": a["n_out"], "activation": _activation(a["activation"])}
            for a in arch]


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


# ----------------------------------------------------------------- estimator states
def state_document(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of an estimator's ``meta`` (from its ``to_state``).

    ``meta`` holds ``kind``, ``dtype``, ``architecture`` (as :func:`network_state`),
    ``extra``, ``preprocessing`` (the statistics present), ``params``, ``fitted`` (name ->
    value), ``feature_names_in`` (strings or None), ``training_record`` (a dict or None)
    and, for a classifier, ``classes`` and ``label_binarizer``.
    """
    doc = _document(meta["kind"], meta, meta["extra"])
    doc["preprocessing"] = list(meta["preprocessing"])
    estimator: dict[str, Any] = {
        "params": {k: _encode(v, k) for k, v in meta["params"].items()},
        "fitted": {k: _encode(v, k) for k, v in meta["fitted"].items()},
        "feature_names_in": meta["feature_names_in"],
    }
    if "classes" in meta:
        estimator["classes"] = _encode(np.asarray(meta["classes"]), "classes_")
        estimator["label_binarizer"] = meta["label_binarizer"]
    doc["estimator"] = estimator
    doc["training_record"] = meta["training_record"]
    if meta.get("uncertainty") is not None:  # a regressor's posterior (see UNCERTAINTY)
        doc["uncertainty"] = meta["uncertainty"]
    return doc


def read_state(tensors: dict[str, Array], doc: dict[str, Any]
               ) -> tuple[dict[str, Array], dict[str, Any]]:
    """An estimator file's ``(tensors, meta)`` for ``from_state``, after the format checks:
    known tensors only, positive scales in pairs, the fitted widths, feature names and
    classes consistent with the architecture. The inverse of :func:`state_document`."""
    spec = doc["estimator"]
    arch = _architecture(doc["architecture"])
    n_in, n_out = _count(arch[0]["n_in"], "n_in"), _count(arch[-1]["n_out"], "n_out")
    present = doc["preprocessing"]
    if not isinstance(present, list) or not set(present) <= set(PREPROCESSING):
        raise ModelFileError(f"unknown preprocessing entries {present}")
    known = {f"layers.{k}.{p}" for k in range(len(arch)) for p in ("W", "b")}
    _expect(tensors, known | {f"preprocessing.{p}" for p in present} | set(UNCERTAINTY))
    uncertainty = _uncertainty(tensors, doc.get("uncertainty"), arch, n_out)
    for name in present:
        value = _tensor(tensors, f"preprocessing.{name}",
                        (n_in if name.startswith("x") else n_out,), None)
        if name.endswith("scale") and not (value > 0).all():
            raise ModelFileError(f"preprocessing {name} must be positive")
    for mean, scale in (("x_mean", "x_scale"), ("y_mean", "y_scale")):
        if (mean in present) != (scale in present):
            raise ModelFileError("preprocessing needs both the mean and the scale")
    fitted = {k: _decode(v) for k, v in spec["fitted"].items()}
    for name, expected in (("n_features_in_", n_in), ("n_outputs_", n_out)):
        if fitted.get(name) != expected:
            raise ModelFileError(f"{name} = {fitted.get(name)!r} does not match the "
                                 f"network ({expected})")
    names = spec.get("feature_names_in")
    if names is not None and not (isinstance(names, list) and len(names) == n_in
                                  and all(isinstance(s, str) for s in names)):
        raise ModelFileError(f"feature_names_in must be {n_in} strings")
    meta = {"kind": doc["kind"], "dtype": doc["dtype"], "architecture": arch,
            "extra": doc.get("extra"), "preprocessing": present,
            "params": {k: _decode(v) for k, v in spec["params"].items()},
            "fitted": fitted, "feature_names_in": names,
            "training_record": doc.get("training_record"), "uncertainty": uncertainty}
    if "classes" in spec or "label_binarizer" in spec:
        meta["classes"], meta["label_binarizer"] = _classes(spec, n_out)
    return tensors, meta


def _uncertainty(tensors: dict[str, Array], info: Any, arch: list[dict[str, Any]],
                 n_out: int) -> dict[str, Any] | None:
    """A regressor's stored posterior, checked: the covariance factor (P, P) with its
    document entry (both or neither), and conformal scores of ``n_out`` columns."""
    n_params = sum((layer["n_in"] + 1) * layer["n_out"] for layer in arch)
    factor = "uncertainty.covariance_factor"
    if (info is None) != (factor not in tensors):
        raise ModelFileError("the posterior needs both its covariance factor and its entry")
    scores = tensors.get("uncertainty.conformal_scores")
    if scores is not None and (scores.ndim != 2 or scores.shape[1] != n_out
                               or scores.dtype.kind != "f" or not np.isfinite(scores).all()):
        raise ModelFileError(f"uncertainty.conformal_scores must be finite floats of "
                             f"{n_out} columns")
    if info is None:
        return None
    _tensor(tensors, factor, (n_params, n_params), np.dtype(np.float64))
    noise = np.asarray(info["noise_variance"], dtype=float)
    dof, gamma = float(info["dof"]), float(info["effective_n_params"])
    if noise.shape != (n_out,) or not (np.isfinite(noise).all() and (noise > 0).all()) \
            or not (math.isfinite(dof) and dof > 0 and math.isfinite(gamma)) \
            or info["source"] not in ("br", "penalty"):
        raise ModelFileError(f"invalid posterior entry {info!r}")
    return {"noise_variance": noise.tolist(), "dof": dof, "effective_n_params": gamma,
            "source": str(info["source"])}


# -------------------------------------------------------------------- ensembles
def ensemble_state(members: list[tuple[dict[str, Array], dict[str, Any]]],
                   params: dict[str, Any], extra: dict[str, Any] | None
                   ) -> tuple[dict[str, Array], dict[str, Any]]:
    """One file's ``(tensors, doc)`` for an ensemble of ``members``, each the ``(tensors,
    doc)`` of one estimator (its :func:`state_document`): the tensors prefixed
    ``member.{k}.``, the documents listed under ``members``, ``params`` (the ensemble's
    own) under ``ensemble``. The inverse is :func:`ensemble_members`."""
    if not members:
        raise ValueError("an ensemble file needs at least one member")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    tensors = {f"member.{k}.{name}": t for k, (ts, _) in enumerate(members)
               for name, t in ts.items()}
    first = members[0][1]
    doc = {key: first[key] for key in ("format", "format_version", "jacnet_version", "dtype",
                                       "architecture")}
    doc.update(kind=ENSEMBLE, n_params=sum(d["n_params"] for _, d in members), extra=extra,
               ensemble=params, members=[d for _, d in members])
    return tensors, doc


def ensemble_members(tensors: dict[str, Array], doc: dict[str, Any]
                     ) -> tuple[list[tuple[dict[str, Array], dict[str, Any]]], dict[str, Any]]:
    """An ensemble file's members, each ``(tensors, doc)`` with the prefix taken off, and
    the ensemble's parameters; every tensor must belong to a listed member and every member
    must be a regressor."""
    docs, params = doc["members"], doc["ensemble"]
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise ModelFileError("an ensemble must list at least one member document")
    if not isinstance(params, dict) or params.get("n_members") != len(docs):
        raise ModelFileError(f"the ensemble's n_members does not match its {len(docs)} members")
    kinds = sorted({str(d.get("kind")) for d in docs} - {"MLPRegressor"})
    if kinds:
        raise ModelFileError(f"ensemble members must be MLPRegressor, got {kinds}")
    parts: list[dict[str, Array]] = [{} for _ in docs]
    for name, t in tensors.items():
        head, k, rest = (name.split(".", 2) + ["", ""])[:3]
        if head != "member" or not k.isdigit() or int(k) >= len(docs) or not rest:
            raise ModelFileError(f"unexpected tensor {name!r} in an ensemble file")
        parts[int(k)][rest] = t
    return list(zip(parts, docs, strict=True)), params


def _classes(spec: dict[str, Any], n_out: int) -> tuple[Array, dict[str, Any]]:
    classes = _decode(spec["classes"])
    info = spec["label_binarizer"]
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 1:
        raise ModelFileError("classes must be a non-empty list")
    y_type = info["y_type"]
    expected = {"binary": 1, "multiclass": len(classes), "multilabel-indicator": len(classes)}
    if y_type not in expected or (expected[y_type] != n_out and len(classes) > 1):
        raise ModelFileError(f"{len(classes)} classes of type {y_type!r} do not match "
                             f"{n_out} network outputs")
    return classes, {"y_type": y_type, "neg_label": int(info["neg_label"]),
                     "pos_label": int(info["pos_label"]),
                     "sparse_input": bool(info["sparse_input"])}


# ------------------------------------------------------------------- bytes on disk
def write(path: PathLike, tensors: dict[str, Array], doc: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON document ``doc`` (with its digest) to ``path``."""
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot store the model's metadata as JSON: {exc}") from None
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "jacnet": text,
                "sha256": _digest(text, tensors)}
    atomic_write(path, safetensors.numpy.save(tensors, metadata=metadata))


def _digest(text: str, tensors: dict[str, Array]) -> str:
    h = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype.str}|{t.shape}".encode())
        h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


def read(path: PathLike) -> tuple[dict[str, Array], dict[str, Any]]:
    """The tensors and the JSON document, after the format, version and digest checks."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a jacnet model file") from None
    meta = _header_metadata(path, data)
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


def _header_metadata(path: PathLike, data: bytes) -> dict[str, Any]:
    """The safetensors header's ``__metadata__``, once it names this format and version."""

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
    return meta


@contextmanager
def file_errors(path: PathLike) -> Iterator[None]:
    """Turn any error raised while reading the document of ``path`` into one
    :class:`ModelFileError` line that names the file."""
    try:
        yield
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else _one_line(exc)
        raise ModelFileError(f"{path}: invalid jacnet model metadata ({what})") from None


def _tensor(tensors: dict[str, Array], name: str, shape: tuple[int, ...],
            dtype: np.dtype | None) -> Array:
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


def _expect_names(tensors: dict[str, Array], net: Network, extra: list[str]) -> None:
    known = {f"layers.{k}.{p}" for k in range(len(net.layers)) for p in ("W", "b")}
    _expect(tensors, known | set(extra))


def _expect(tensors: dict[str, Array], known: set[str]) -> None:
    unknown = sorted(set(tensors) - known)
    if unknown:
        raise ModelFileError(f"unexpected tensors {unknown}")


# ------------------------------------------------------------------ JSON encoding
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
