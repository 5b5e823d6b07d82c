"""ONNX export against jacnet itself, run in ONNX Runtime.

Over 70 random models (networks, regressors and every kind of classifier; depth 1-4;
every built-in activation in hidden and output positions; with and without
standardisation) the graph's outputs equal ``predict`` / ``predict_proba`` / the labels /
``input_jacobian``. An error is measured against the scale of the array it belongs to,
``max |onnx - jacnet| / max |jacnet|``, so that an output near zero (a sum that cancels) is
held to the same absolute accuracy as its neighbours. A command-line model on a table with
text columns gives in ONNX Runtime what ``jacnet predict`` writes; bad inputs end with a
clear error, exit code 2 at the command line, and no file.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_cli import run  # noqa: E402  (the jacnet.cli.main runner of the CLI tests)

import jacnet as jn  # noqa: E402
from jacnet.activations import BUILTINS, Activation, Elementwise  # noqa: E402
from jacnet.export import ExportError, describe_onnx, onnx_model  # noqa: E402
from jacnet.onnxforms import OPSET  # noqa: E402

pytestmark = pytest.mark.xdist_group("cli")  # beside the CLI tests, whose runner it uses

NAMES = [cls.name for cls in BUILTINS]
CONFIGS = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7},
           "l2_normalize": {"eps": 1e-3}, "layer_norm": {"eps": 1e-4}}
KINDS = ("network", "regressor", "binary", "multiclass", "multilabel")
N_MODELS = 75  # 15 activations in each of the 5 kinds
#: the largest errors seen, by (what, dtype): printed with -s, for docs and reports
WORST: dict[tuple[str, str], float] = {}


def act(name: str) -> Activation:
    return jn.get_activation(name, **CONFIGS.get(name, {}))


def session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def rel_err(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max() if want.size else 1.0
    return float(np.abs(got - want).max() / (scale if scale > 0 else 1.0))


def note(what: str, dtype: str, err: float) -> float:
    WORST[(what, dtype)] = max(WORST.get((what, dtype), 0.0), err)
    return err


def random_model(i: int):
    """Model ``i``: kind ``i % 5``, the activation ``i // 5`` in hidden and output places."""
    rng = np.random.default_rng(1000 + i)
    kind = KINDS[i % len(KINDS)]
    name = NAMES[(i // len(KINDS)) % len(NAMES)]
    depth = 1 + i % 4
    widths = [int(w) for w in rng.integers(2, 6, depth - 1)]
    hidden = [act(name if k == 0 else NAMES[rng.integers(len(NAMES))]) for k in range(depth - 1)]
    d = int(rng.integers(1, 5))
    X = rng.normal(size=(24, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    if kind == "network":
        sizes = [d, *widths, int(rng.integers(1, 4))]
        acts = [*hidden, act(name)]
        layers = [jn.Dense(a, b, f) for a, b, f in zip(sizes, sizes[1:], acts, strict=False)]
        net = jn.Network(layers, seed=i)
        net.set_flat(rng.normal(scale=0.7, size=net.n_params))
        return net, X
    out = {"regressor": name, "binary": "sigmoid", "multilabel": "sigmoid",
           "multiclass": "sparsemax" if i % 2 else "softmax"}[kind]
    params = dict(hidden_layer_sizes=widths, activation=hidden or "relu",
                  output_activation=act(out), solver="lbfgs", max_iter=1,
                  standardize=bool(i % 3), random_state=i)
    if kind == "regressor":
        est = jn.MLPRegressor(**params)
        y = rng.normal(size=(24, 1 + i % 2)) * 5 + 3
    else:
        est = jn.MLPClassifier(**params)
        y = {"binary": rng.choice(["no", "yes"], 24),
             "multiclass": rng.choice([3, 5, 7, 11], 24),
             "multilabel": rng.integers(0, 2, (24, 3))}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    net = est.network_
    net.set_flat(rng.normal(scale=0.7, size=net.n_params))  # away from the initial weights
    return est, X


def reference(model, X):
    """jacnet's own outputs, in the graph's order, and its input Jacobian."""
    if isinstance(model, jn.Network):
        return [model.forward(X)], model.input_jacobian(X)
    if isinstance(model, jn.MLPRegressor):
        return [model.predict(X)], model.input_jacobian(X)
    return [model.predict(X), model.predict_proba(X)], model.input_jacobian(X)


def compare(model, X, dtype: str, tol: float) -> None:
    proto = onnx_model(model, dtype=dtype, with_input_jacobian=dtype == "float64")
    onnx.checker.check_model(proto, full_check=True)
    got = session(proto).run(None, {"X": X.astype(dtype)})
    want, J = reference(model, X)
    classifier = isinstance(model, jn.MLPClassifier)
    for k, (g, w) in enumerate(zip(got[:len(want)], want, strict=True)):
        if classifier and k == 0:  # labels: exact (float32: away from a tie)
            if dtype == "float64":
                assert np.array_equal(g, w.astype(g.dtype)), (g, w)
            else:
                P = want[1]
                margin = np.abs(P - 0.5).min(axis=1) if P.shape[1] == 2 or w.ndim == 2 else (
                    np.diff(np.sort(P, axis=1)[:, -2:], axis=1)[:, 0])
                far = margin > 1e-4
                assert np.array_equal(g[far], w[far].astype(g.dtype))
            continue
        assert note("outputs", dtype, rel_err(g, w)) <= tol, (k, rel_err(g, w))
    if dtype == "float64":
        assert note("input_jacobian", dtype, rel_err(got[-1], J)) <= 1e-10


@pytest.mark.parametrize("i", range(N_MODELS))
def test_export_random_models_equal_jacnet_in_onnx_runtime(i):
    model, X = random_model(i)
    compare(model, X, "float64", 1e-12)
    compare(model, X[:1], "float64", 1e-12)  # the batch size is dynamic
    compare(model, X, "float32", 1e-5)


def test_export_covers_every_activation_and_kind():
    """The random models hold every built-in in a hidden and an output place, each kind,
    standardised and not (a change to random_model must not lose a case)."""
    hidden, output, kinds, std = set(), set(), set(), set()
    for i in range(N_MODELS):
        model, _ = random_model(i)
        net = model if isinstance(model, jn.Network) else model.network_
        hidden |= {la.activation.name for la in net.layers[:-1]}
        output.add(net.layers[-1].activation.name)
        kinds.add(KINDS[i % 5])
        std.add(getattr(model, "x_mean_", None) is not None)
    assert hidden >= set(NAMES) and output >= set(NAMES)
    assert kinds == set(KINDS) and std == {True, False}


def test_export_worst_errors_are_reported(capsys):
    """Runs after the random models (file order): prints the largest errors seen."""
    if not WORST:
        pytest.skip("the random models did not run in this worker")
    with capsys.disabled():
        print("\nONNX export, largest errors:", {f"{a} {b}": f"{e:.1e}" for (a, b), e in
                                                sorted(WORST.items())})


# ------------------------------------------------------------------ user activations
class Softsign(Elementwise):
    """``t / (1 + |t|)``; ``f' = 1 / (1 + |t|)^2``."""

    name = "test_softsign"

    def forward(self, T):
        return T / (1 + np.abs(T))

    def derivative(self, T, Y):
        return 1 / (1 + np.abs(T)) ** 2


class OnnxSoftsign(Softsign):
    name = "test_onnx_softsign"

    def onnx(self, g, t):
        return g.op("Div", t, g.op("Add", g.const(1.0), g.op("Abs", t)))


class OnnxSoftsignJvp(OnnxSoftsign):
    name = "test_onnx_softsign_jvp"

    def onnx_jvp(self, g, t, y, tdot):
        d = g.op("Add", g.const(1.0), g.op("Abs", t))
        return g.op("Div", tdot, g.op("Mul", d, d))


def _net(activation, seed=0):
    net = jn.Network([jn.Dense(3, 4, activation), jn.Dense(4, 2)], seed=seed)
    return net, np.random.default_rng(seed).normal(size=(5, 3))


def test_export_user_activation_without_form_is_named(tmp_path):
    net, _ = _net(Softsign())
    with pytest.raises(ExportError, match="'test_softsign' \\(Softsign\\) has no ONNX form"):
        jn.export_onnx(net, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_user_activation_with_its_hooks():
    net, X = _net(OnnxSoftsign())
    out = session(onnx_model(net)).run(None, {"X": X})[0]
    assert rel_err(out, net.forward(X)) < 1e-14
    with pytest.raises(ExportError, match="test_onnx_softsign.*onnx_jvp"):
        onnx_model(net, with_input_jacobian=True)
    net, X = _net(OnnxSoftsignJvp())
    out, J = session(onnx_model(net, with_input_jacobian=True)).run(None, {"X": X})
    assert rel_err(J, net.input_jacobian(X)) < 1e-14


# ------------------------------------------------------------------ bad input
def test_export_bad_input_names_the_problem(tmp_path, unprivileged):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="unfitted MLPRegressor"):
        jn.MLPRegressor().to_onnx(path)
    net, _ = _net("tanh")
    with pytest.raises(ExportError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        jn.export_onnx(net, path, dtype="float16")
    with pytest.raises(TypeError, match="got str"):
        jn.export_onnx("model.safetensors", path)
    assert list(tmp_path.iterdir()) == []
    target = unprivileged.folder / "locked" / "m.onnx"
    target.parent.mkdir()
    target.parent.chmod(0o555)

    def write() -> int:
        try:
            jn.export_onnx(net, target)
        except PermissionError as e:
            return 13 if "locked" in str(e) else 1
        return 0

    assert unprivileged.run(write) == 13
    assert list(target.parent.iterdir()) == []


def test_package_import_does_not_load_onnx():
    code = ("import sys, jacnet\nprint('onnx' in sys.modules)\njacnet.export_onnx\n"
            "print('onnx' in sys.modules)\n")
    src = str(Path(jn.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    assert out == ["False", "False"], out


# ------------------------------------------------------------------ the command line
def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n) * 3 + 1, "zone": rng.choice(["010", "7", "b"], n),
                       "x2": rng.normal(size=n),
                       "color": rng.choice(["red", "green", "blue"], n)})
    df["label"] = np.where(df.x1 + 2 * (df.color == "red") - (df.zone == "7") > 1, "yes", "no")
    df["size"] = df.x1 - df.x2 + (df.color == "blue") + 0.1 * rng.normal(size=n)
    return df


def _onnx_feed(frame: pd.DataFrame, proto) -> dict[str, np.ndarray]:
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.input}
    return {name: frame[name].astype(str).to_numpy(dtype=object)
            if t == onnx.TensorProto.STRING else frame[name].to_numpy(dtype=np.float64)
            for name, t in types.items()}


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    _table(150, 0).to_csv(work / "train.csv", index=False)
    _table(40, 1).drop(columns=["label", "size"]).to_csv(work / "new.csv", index=False)
    for target, drop in (("label", "size"), ("size", "label")):
        run("train", work / "train.csv", "-t", target, "--drop", drop, "--hidden", "6",
            "--activation", "tanh", "--solver", "lm", "--epochs", "15", "-q", "--no-plots",
            "-o", work / target)
    return work


@pytest.mark.parametrize("target", ["label", "size"])
def test_cli_export_predicts_as_jacnet_predict(cli_models, target):
    work = cli_models
    model = work / target / "model.safetensors"
    path = work / f"{target}.onnx"
    proc = run("export", model, "-o", path, "--with-input-jacobian", script=target == "label")
    assert f"wrote {path}" in " ".join(proc.stdout.split())
    pred = pd.read_csv(io.StringIO(run("predict", model, work / "new.csv").stdout))
    proto = onnx.load(path)
    frame = pd.read_csv(work / "new.csv", dtype={"zone": str, "color": str})
    assert [v.name for v in proto.graph.input] == ["x1", "zone", "x2", "color"]
    got = session(proto).run(None, _onnx_feed(frame, proto))
    if target == "label":
        assert got[0].tolist() == pred["label"].tolist()
        assert rel_err(got[1], pred[["proba_no", "proba_yes"]].to_numpy()) < 1e-12
    else:
        assert rel_err(got[0], pred["size"].to_numpy()) < 1e-12
    assert got[-1].shape == (40, 1, 8)  # x1, zone (3), x2, color (3)


def test_cli_export_unseen_category_fails_as_predict_does(cli_models):
    work = cli_models
    model = work / "label" / "model.safetensors"
    est, encoder = _cli_estimator(model)
    proto = onnx_model(est, encoder=encoder)
    frame = pd.read_csv(work / "new.csv", dtype={"zone": str, "color": str}).head(3)
    frame.loc[1, "color"] = "purple"
    with pytest.raises(Exception, match="Unknown Category"):
        session(proto).run(None, _onnx_feed(frame, proto))
    bad = work / "bad.csv"
    frame.to_csv(bad, index=False)
    assert "purple" in run("predict", model, bad, code=2).stderr


def _cli_estimator(path):
    from jacnet.data import FeatureEncoder
    from jacnet.io import read_model

    est, doc = read_model(path)
    return est, FeatureEncoder.from_dict(doc["extra"]["data"]["features"])


def test_cli_export_float32_and_default_path(cli_models):
    work = cli_models
    model = work / "size" / "model.safetensors"
    run("export", model, "--dtype", "float32")
    proto = onnx.load(model.with_suffix(".onnx"))
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cli_info_on_an_onnx_file(cli_models):
    work = cli_models
    path = work / "info.onnx"
    run("export", work / "label" / "model.safetensors", "-o", path)
    text = " ".join(run("info", path).stdout.split())
    for part in ("ONNX, MLPClassifier, float64, written by jacnet", f"ai.onnx {OPSET}",
                 "ai.onnx.ml 3", "label", "probabilities", "zone", "string", "classes no, yes",
                 "one-hot color blue, green, red", "8 inputs -> 6 Tanh() -> 1 Sigmoid()"):
        assert part in text, (part, text)
    info = describe_onnx(path)
    assert info["jacnet"]["kind"] == "MLPClassifier" and info["opsets"]["ai.onnx"] == OPSET


def test_cli_info_on_a_foreign_onnx_file(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, producer_name="elsewhere"), tmp_path / "f.onnx")
    text = " ".join(run("info", tmp_path / "f.onnx").stdout.split())
    assert "not made by jacnet (producer: elsewhere" in text
    (tmp_path / "g.onnx").write_bytes(b"not a model")
    assert "not a readable ONNX file" in run("info", tmp_path / "g.onnx", code=2).stderr


class CliSoftsign(Softsign):
    name = "test_cli_softsign"


@pytest.mark.parametrize("case", ["dtype", "activation", "unwritable", "not a model"])
def test_cli_export_errors_exit_2_and_leave_no_file(tmp_path, cli_models, case, monkeypatch):
    model = cli_models / "label" / "model.safetensors"
    out = tmp_path / "out" / "m.onnx"
    args = ["-o", out]
    if case == "dtype":
        args += ["--dtype", "float16"]
        want = "dtype must be 'float32' or 'float64', got 'float16'"
    elif case == "activation":
        model = tmp_path / "user.safetensors"
        monkeypatch.setitem(jn.ACTIVATIONS, CliSoftsign.name, CliSoftsign)  # this test only
        jn.save_network(_net(CliSoftsign())[0], model)
        want = "activation 'test_cli_softsign' (CliSoftsign) has no ONNX form"
    elif case == "unwritable":
        out = tmp_path / "a_file" / "m.onnx"
        (tmp_path / "a_file").write_text("x")
        args = ["-o", out]
        want = "a_file"
    else:
        model = tmp_path / "x.safetensors"
        model.write_text("not a model")
        want = "not a jacnet model file"
    err = run("export", model, *args, code=2).stderr
    assert err.count("\n") == 1 and err.startswith("jacnet: error: ") and want in err, err
    assert not out.exists() and not list(tmp_path.rglob("*.onnx"))


def test_export_refuses_an_ensemble_naming_what_it_takes(tmp_path):
    """An Ensemble is several models: the export says so and leaves no file."""
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] - X[:, 1]
    ens = jn.Ensemble(jn.MLPRegressor(hidden_layer_sizes=(3,), solver="lm", max_iter=3),
                      n_members=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        ens.fit(X, y)
    path = tmp_path / "ens.onnx"
    with pytest.raises(Exception, match="export takes one model"):
        jn.export_onnx(ens, path)
    assert not path.exists()
