"""jacnet.modelfile: the safetensors model-file format.

Bit-exact network round trips, plain safetensors on disk, atomic writes, a checksum over
the document and every tensor, a format version, and one-line :class:`ModelFileError`
for every bad file (truncated, foreign, forged). Estimator files through ``jacnet.io``
are test_io.py's; the estimator files here are only the bad files' raw material.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors.numpy
from helpers import fit_quietly, three_class_data

import jacnet as jn
from jacnet import modelfile
from jacnet.modelfile import ModelFileError

_fit = fit_quietly


@pytest.fixture(scope="module")
def data():
    return three_class_data()


def _net(seed=0, dtype=np.float64):
    return jn.Network([jn.Dense(3, 4, "tanh"), jn.Dense(4, 2, "softmax")], seed=seed,
                      dtype=dtype)


# ------------------------------------------------------------------------ networks
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_modelfile_write_read_round_trip_of_a_bare_network(tmp_path, dtype):
    net = _net(seed=4, dtype=dtype)
    tensors, spec = modelfile.network_state(net)
    assert sorted(tensors) == ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]
    assert spec["dtype"] == np.dtype(dtype).name
    modelfile.save_network(net, tmp_path / "n.safetensors", extra={"note": "kept"})
    tensors_back, doc = modelfile.read(tmp_path / "n.safetensors")
    assert doc["format"] == modelfile.FORMAT and doc["format_version"] == modelfile.FORMAT_VERSION
    assert doc["kind"] == "network" and doc["n_params"] == net.n_params
    assert doc["extra"] == {"note": "kept"} and doc["jacnet_version"] == jn.__version__
    assert [a["activation"]["name"] for a in doc["architecture"]] == ["tanh", "softmax"]
    for name, t in tensors.items():
        assert tensors_back[name].dtype == t.dtype
        np.testing.assert_array_equal(tensors_back[name], t)
    back = modelfile.document_network(tensors_back, doc)
    assert back.dtype == net.dtype
    assert np.array_equal(back.get_flat(), net.get_flat())
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(dtype)
    assert np.array_equal(back.forward(X), net.forward(X))
    assert np.array_equal(modelfile.load_network(tmp_path / "n.safetensors").get_flat(),
                          net.get_flat())


def test_modelfile_build_network_inverts_network_state():
    net = _net(seed=2)
    back = modelfile.build_network(*modelfile.network_state(net))
    assert np.array_equal(back.get_flat(), net.get_flat())
    assert [la.activation for la in back.layers] == [la.activation for la in net.layers]


def test_modelfile_save_network_refuses_what_is_not_a_network(tmp_path):
    with pytest.raises(TypeError, match="net must be a jacnet.Network, got dict"):
        modelfile.save_network({}, tmp_path / "n.safetensors")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="extra must be a dict or None, got list"):
        modelfile.save_network(_net(), tmp_path / "n.safetensors", extra=[1])  # type: ignore
    assert not (tmp_path / "n.safetensors").exists()


def test_modelfile_a_flipped_tensor_byte_fails_the_checksum(tmp_path):
    path = tmp_path / "n.safetensors"
    modelfile.save_network(_net(), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: still a valid float
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupted: its content does not match its "
                                             "checksum") as err:
        modelfile.read(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_modelfile_a_changed_document_fails_the_checksum(tmp_path):
    """The digest covers the JSON document too: a forger editing only the header's
    metadata (a wider claim, another activation) is caught."""
    path = tmp_path / "n.safetensors"
    modelfile.save_network(_net(), path)
    data = path.read_bytes()
    forged = data.replace(b'\\"tanh\\"', b'\\"relu\\"')
    assert forged != data and len(forged) == len(data)
    path.write_bytes(forged)
    with pytest.raises(ModelFileError, match="checksum"):
        modelfile.read(path)


@pytest.mark.parametrize("version", ["0", "1.0", "one", ""])
def test_modelfile_a_wrong_format_version_is_refused_naming_it(tmp_path, version):
    path = tmp_path / "n.safetensors"
    tensors, spec = modelfile.network_state(_net())
    metadata = {"format": modelfile.FORMAT, "format_version": version, "jacnet": "{}",
                "sha256": "0"}
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    with pytest.raises(ModelFileError, match=f"format version {version!r} is not supported "
                                             r"\(this jacnet reads version 1\)$") as err:
        modelfile.read(path)
    assert "upgrade" not in str(err.value)  # an older or garbled version, not a newer one


def test_modelfile_a_file_without_a_version_is_refused(tmp_path):
    path = tmp_path / "n.safetensors"
    tensors, _ = modelfile.network_state(_net())
    path.write_bytes(safetensors.numpy.save(tensors, metadata={"format": modelfile.FORMAT}))
    with pytest.raises(ModelFileError, match="format version None is not supported"):
        modelfile.read(path)


def test_modelfile_a_directory_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory, not a jacnet model file"):
        modelfile.read(tmp_path)


def test_modelfile_file_errors_turn_a_bad_document_into_one_line(tmp_path):
    path = tmp_path / "n.safetensors"
    modelfile.save_network(_net(), path)
    tensors, doc = modelfile.read(path)
    del doc["architecture"]
    with pytest.raises(ModelFileError, match="invalid jacnet model metadata .missing entry "
                                             "'architecture'.") as err:
        with modelfile.file_errors(path):
            modelfile.document_network(tensors, doc)
    assert str(err.value).startswith(str(path))


# -------------------------------------- moved from test_io.py (their test_io_ names kept)
def test_io_network_round_trip(tmp_path):
    net = jn.Network([jn.Dense(3, 5, "softmax"), jn.Dense(5, 4, "layer_norm"),
                      jn.Dense(4, 2, jn.get_activation("elu", alpha=0.5))], seed=3)
    jn.save_network(net, tmp_path / "n.safetensors")
    loaded = jn.load_network(tmp_path / "n.safetensors")
    X = np.random.default_rng(1).normal(size=(7, 3))
    assert np.array_equal(loaded.get_flat(), net.get_flat())
    assert np.array_equal(loaded.forward(X), net.forward(X))
    assert [la.activation for la in loaded.layers] == [la.activation for la in net.layers]
    assert isinstance(jn.load(tmp_path / "n.safetensors"), jn.Network)


def test_io_file_is_plain_safetensors(tmp_path):
    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    jn.save_network(net, tmp_path / "n.safetensors")
    tensors = safetensors.numpy.load_file(str(tmp_path / "n.safetensors"))
    assert sorted(tensors) == ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]
    assert np.array_equal(tensors["layers.0.W"], net.layers[0].W)


# ------------------------------------------------------------------ custom activations
class Cube(jn.Activation):
    name = "test_io_cube"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def forward(self, T):
        return self.scale * T**3

    def jacobian(self, T, Y):
        return np.einsum("ij,jk->ijk", 3 * self.scale * T**2, np.eye(T.shape[1]))

    def get_config(self):
        return {"scale": self.scale}


def test_io_custom_activation_round_trip_when_registered(tmp_path, monkeypatch):
    monkeypatch.setitem(jn.ACTIVATIONS, Cube.name, Cube)
    net = jn.Network([jn.Dense(2, 3, Cube(0.5)), jn.Dense(3, 1)], seed=0)
    jn.save_network(net, tmp_path / "c.safetensors")
    loaded = jn.load_network(tmp_path / "c.safetensors")
    assert loaded.layers[0].activation == Cube(0.5)
    monkeypatch.delitem(jn.ACTIVATIONS, Cube.name)
    with pytest.raises(ModelFileError, match="register_activation") as err:
        jn.load(tmp_path / "c.safetensors")
    assert "\n" not in str(err.value) and "test_io_cube" in str(err.value)


def test_io_unregistered_or_impostor_activation_is_refused_on_save(tmp_path):
    net = jn.Network([jn.Dense(2, 3, Cube()), jn.Dense(3, 1)], seed=0)
    with pytest.raises(ValueError, match="not registered"):
        jn.save_network(net, tmp_path / "c.safetensors")

    class FakeTanh(Cube):
        name = "tanh"

    net = jn.Network([jn.Dense(2, 3, FakeTanh()), jn.Dense(3, 1)], seed=0)
    with pytest.raises(ValueError, match="uses the name 'tanh'"):
        jn.save_network(net, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()


# ------------------------------------------------------------------------ atomic writes
def test_io_save_leaves_no_temporary_file(tmp_path):
    net = jn.Network([jn.Dense(2, 2)], seed=0)
    jn.save_network(net, tmp_path / "n.safetensors")
    jn.save_network(net, tmp_path / "n.safetensors")  # overwrite
    assert os.listdir(tmp_path) == ["n.safetensors"]


def test_io_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "n.safetensors"
    jn.save_network(jn.Network([jn.Dense(2, 2)], seed=0), path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("jacnet.checkpoint.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        jn.save_network(jn.Network([jn.Dense(2, 2)], seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["n.safetensors"]


def test_io_unserialisable_extra_fails_before_writing(tmp_path):
    path = tmp_path / "n.safetensors"
    with pytest.raises(ValueError, match="JSON"):
        jn.save_network(jn.Network([jn.Dense(2, 2)], seed=0), path, extra={"x": object()})
    assert not path.exists()


# --------------------------------------------------------------------------- bad files
@pytest.fixture
def model_file(tmp_path, data):
    X, y = data
    est = _fit(jn.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y)
    est.save(tmp_path / "m.safetensors")
    return tmp_path / "m.safetensors"


def _one_line_error(path, match=None):
    with pytest.raises(ModelFileError, match=match) as err:
        jn.load(path)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_io_truncated_file(model_file, keep):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: keep if keep >= 0 else len(data) - 1])
    _one_line_error(model_file)


def test_io_every_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "n.safetensors"
    jn.save_network(jn.Network([jn.Dense(2, 2, "tanh"), jn.Dense(2, 1)], seed=0), path)
    data = path.read_bytes()
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x04
        path.write_bytes(bytes(corrupt))
        with pytest.raises(ModelFileError):
            jn.load(path)


def test_io_flipped_weight_fails_the_checksum(model_file):
    data = bytearray(model_file.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's bytes
    model_file.write_bytes(bytes(data))
    _one_line_error(model_file, "checksum")


@pytest.mark.parametrize("content", [b"a,b,y\n1,2,3\n", b"\x00" * 64, b"{}"])
def test_io_foreign_bytes(tmp_path, content):
    (tmp_path / "x.safetensors").write_bytes(content)
    _one_line_error(tmp_path / "x.safetensors", "not a jacnet model file")


def test_io_foreign_safetensors_file(tmp_path):
    raw = safetensors.numpy.save({"weight": np.ones((2, 2))}, metadata={"author": "someone"})
    (tmp_path / "f.safetensors").write_bytes(raw)
    _one_line_error(tmp_path / "f.safetensors", "without 'jacnet-model' metadata")


def test_io_newer_format_version(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 2)
    jn.save_network(jn.Network([jn.Dense(2, 2)], seed=0), tmp_path / "n.safetensors")
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 1)
    msg = _one_line_error(tmp_path / "n.safetensors", "format version '2'")
    assert "upgrade jacnet" in msg


def test_io_missing_file():
    with pytest.raises(FileNotFoundError, match="model file not found"):
        jn.load("no/such/model.safetensors")


def _rewrite(path, edit_doc=None, edit_tensors=None):
    """Re-save with a consistent checksum, as a deliberate forger would."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    doc = json.loads(meta["jacnet"])
    tensors = safetensors.numpy.load(data)
    if edit_doc:
        edit_doc(doc)
    if edit_tensors:
        edit_tensors(tensors)
    modelfile.write(path, tensors, doc)


@pytest.mark.parametrize("case", [
    "wider_layer", "missing_tensor", "extra_tensor", "wrong_dtype", "nan_weight",
    "bad_kind", "unknown_param", "n_features", "classes", "bad_activation_config",
    "negative_scale", "bad_value_tag",
])
def test_io_inconsistent_metadata_is_rejected(model_file, case):
    def doc_edit(doc):
        est = doc["estimator"]
        if case == "wider_layer":
            doc["architecture"][0]["n_out"] += 1
            doc["architecture"][1]["n_in"] += 1
        elif case == "bad_kind":
            doc["kind"] = "Pipeline"
        elif case == "unknown_param":
            est["params"]["evil"] = 1
        elif case == "n_features":
            est["fitted"]["n_features_in_"] = 99
        elif case == "classes":
            est["classes"]["__array__"]["values"] = [0, 1]
        elif case == "bad_activation_config":
            doc["architecture"][0]["activation"]["config"] = {"bogus": 1}
        elif case == "bad_value_tag":
            est["fitted"]["loss_"] = {"__import__": "os"}

    def tensor_edit(t):
        if case == "missing_tensor":
            del t["layers.1.b"]
        elif case == "extra_tensor":
            t["payload"] = np.zeros(3)
        elif case == "wrong_dtype":
            t["layers.0.W"] = t["layers.0.W"].astype(np.float32)
        elif case == "nan_weight":
            t["layers.0.b"] = np.full_like(t["layers.0.b"], np.nan)
        elif case == "negative_scale":
            t["preprocessing.x_scale"] = -np.ones(4)

    if case == "negative_scale":
        def doc_edit(doc):  # noqa: F811 - this case also declares the tensors
            doc["preprocessing"] = ["x_mean", "x_scale"]

        def tensor_edit(t):  # noqa: F811
            t["preprocessing.x_mean"] = np.zeros(4)
            t["preprocessing.x_scale"] = -np.ones(4)

    _rewrite(model_file, doc_edit, tensor_edit)
    _one_line_error(model_file)


def test_io_claimed_huge_layer_is_refused_before_any_allocation(model_file, monkeypatch):
    """A few bytes of metadata claiming a 10^6-wide layer: the stored tensors are checked
    against the claim before a layer is built at that size."""
    def claim(doc):
        doc["architecture"][0]["n_out"] = 10**6
        doc["architecture"][1]["n_in"] = 10**6

    _rewrite(model_file, claim)
    built = []
    monkeypatch.setattr(modelfile, "Dense", lambda *a, **k: built.append(a) or jn.Dense(*a, **k))
    _one_line_error(model_file, r"tensor 'layers.0.W' has shape \(4, 3\), the architecture "
                                r"needs \(4, 1000000\)")
    assert built == []


