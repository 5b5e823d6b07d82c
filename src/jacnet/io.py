"""Model files of estimators and networks: save, load, and load as a ``Pipeline``.

The file format (tensors and one JSON document in a safetensors file, checked on load)
is :mod:`jacnet.modelfile`; an estimator gives its state as ``(tensors, meta)`` with
``to_state()`` and is rebuilt by ``from_state(tensors, meta)``. This module joins the
two: it picks the estimator class by the file's ``kind`` and never touches an
estimator's internals. Any problem with a file is one :class:`ModelFileError`.
"""

from __future__ import annotations

import os
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from .data import FeatureEncoder
from .ensemble import Ensemble
from .estimators import MLPClassifier, MLPRegressor
from .modelfile import (
    ENSEMBLE,
    FORMAT,
    FORMAT_VERSION,
    ModelFileError,
    document_network,
    ensemble_members,
    ensemble_state,
    file_errors,
    load_network,
    read,
    read_state,
    save_network,
    state_document,
    write,
)
from .network import Network

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

PathLike = str | os.PathLike[str]
Estimator = MLPRegressor | MLPClassifier | Ensemble

ESTIMATORS: dict[str, type[MLPRegressor] | type[MLPClassifier]] = {
    "MLPRegressor": MLPRegressor,
    "MLPClassifier": MLPClassifier,
}


def save_estimator(est: Estimator, path: PathLike, *,
                   extra: dict[str, Any] | None = None) -> None:
    """Write a fitted ``MLPRegressor``/``MLPClassifier``, or a :class:`jacnet.Ensemble` of
    ``MLPRegressor`` members (one file, kind "Ensemble": each member's tensors prefixed
    ``member.{k}.``, its posterior included), to ``path`` (atomically).

    The optimizer state kept for ``warm_start``/``partial_fit`` is not stored: a loaded
    estimator predicts exactly as the saved one, and further training restarts the
    optimizer's moments (and LM's mu) from their defaults. Without ``extra``, an estimator
    loaded from a file keeps that file's ``extra`` (the command line's data encoding) until
    a fresh fit, so saving it again writes the same model file.
    """
    kind = type(est).__name__
    if isinstance(est, Ensemble):
        states, params = est.to_state()
        members = [(tensors, state_document({**meta, "extra": None})) for tensors, meta in states]
        write(path, *ensemble_state(members, params, extra))
        return
    if kind not in ESTIMATORS or not isinstance(est, ESTIMATORS[kind]):
        raise TypeError(f"est must be a jacnet MLPRegressor, MLPClassifier or Ensemble, got "
                        f"{kind}")
    tensors, meta = est.to_state()
    if extra is not None:
        meta["extra"] = extra
    write(path, tensors, state_document(meta))


def load(path: PathLike) -> Network | Estimator:
    """Load a model file: the estimator (or :class:`jacnet.Ensemble`) it holds, or a
    :class:`Network` (kind "network").

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is not a valid jacnet model file (truncated, corrupted, foreign, of a
        newer format version, or using an activation that is not registered).
    """
    return read_model(path)[0]


def read_model(path: PathLike) -> tuple[Network | Estimator, dict[str, Any]]:
    """Load a model file; return ``(model, doc)`` with ``doc`` the file's JSON document.

    ``doc["extra"]`` is what was passed as ``extra`` when saving.
    """
    tensors, doc = read(path)
    with file_errors(path):
        model = _model(tensors, doc)
    return model, doc


def _model(tensors: dict[str, Any], doc: dict[str, Any]) -> Network | Estimator:
    kind = doc["kind"]
    if kind == "network":
        return document_network(tensors, doc)
    if kind == ENSEMBLE:
        members, params = ensemble_members(tensors, doc)
        return Ensemble.from_state([_state(*member) for member in members], params)
    return ESTIMATORS[kind].from_state(*_state(tensors, doc))


def _state(tensors: dict[str, Any], doc: dict[str, Any]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """An estimator document's checked ``(tensors, meta)`` for ``from_state``."""
    kind = doc["kind"]
    if kind not in ESTIMATORS:
        raise ModelFileError(f"unknown kind {kind!r}")
    cls = ESTIMATORS[kind]
    tensors, meta = read_state(tensors, doc)
    unknown = sorted(set(meta["params"]) - set(cls().get_params(deep=False)))
    if unknown:
        raise ModelFileError(f"{cls.__name__} rejects the stored parameters {unknown}")
    return tensors, meta


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

