"""jacnet.distributed on 2-worker LocalClusters that the tests start and stop themselves.

The distributed solvers must reach the single-machine theta and record (up to summation
order), with derivative data too, keep training through a worker lost mid-evaluation, name
a partition with NaN, and leave an estimator the single-machine fit's predictive std.
Most tests run on a cluster whose workers are threads; the two that kill a worker run on
one whose workers are processes, and they also check the full run on it end to end.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("distributed")  # part of the dev extra; a guard for partial installs

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import joblib  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster, futures_of  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import jacnet as jn  # noqa: E402
from jacnet import distributed as jd  # noqa: E402
from jacnet.losses import MSE  # noqa: E402

ROWS = (70, 70, 70, 30)  # uneven partitions on purpose
N = sum(ROWS)


# One xdist worker runs this whole file, in file order (make test: --dist loadgroup): one
# pair of clusters, and the fault tests placed around the others (see below).
pytestmark = pytest.mark.xdist_group("dask")

# Worker processes import numpy and jacnet first: on a slow, shared CI machine that can take
# minutes, so the connection timeouts are generous (a hang is caught by pytest-timeout, with
# a traceback). So is the time LocalCluster gives a killed worker's restart before it closes
# that worker's nanny for good (15 s by default, which a restart on such a machine overruns,
# leaving the cluster one worker short).
_SLOW = {"distributed.comm.timeouts.connect": "600s", "distributed.comm.timeouts.tcp": "600s",
         "distributed.deploy.lost-worker-timeout": "600s"}


def _cluster(processes: bool) -> Iterator[Client]:
    # No dashboard; the scheduler's HTTP server (health, metrics) still starts, on a free
    # port: its default 8787 may be taken by another cluster on the machine (a warning).
    with dask.config.set(_SLOW), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster, Client(cluster, timeout="600s") as c:
        yield c


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """2 workers in threads of this process: the same scheduler, tasks and reductions as
    a real cluster, without a process hop per task (on a machine whose CPU is shared, each
    hop between processes can stall for seconds)."""
    yield from _cluster(processes=False)


@pytest.fixture(scope="module")
def proc_client() -> Iterator[Client]:
    """2 worker processes, each under a nanny that restarts it: for the tests that kill
    one, and that send the model and theta through serialisation."""
    yield from _cluster(processes=True)


def _data(n_out: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    T = np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * k for k in range(n_out)])
    return X, T


def _net(n_out: int = 1, out: str = "identity") -> jn.Network:
    return jn.Network([jn.Dense(3, 6, "tanh"), jn.Dense(6, n_out, out)], seed=0)


def _dask(A: np.ndarray) -> Any:
    return da.from_array(A, chunks=(ROWS, *A.shape[1:]))


def _assert_same_run(a: jn.Network, b: jn.Network, ra: jn.TrainingRecord,
                     rb: jn.TrainingRecord, rtol: float = 1e-9) -> None:
    assert (rb.n_epochs, rb.stop_reason, rb.best_epoch) == (ra.n_epochs, ra.stop_reason,
                                                            ra.best_epoch)
    assert [sorted(e) for e in rb.epochs] == [sorted(e) for e in ra.epochs]
    for key in ("loss", "grad_norm", "mu"):
        if key in ra.epochs[0]:
            assert_allclose(rb.column(key), ra.column(key), rtol=rtol)
    assert_allclose(b.theta, a.theta, rtol=rtol, atol=1e-3 * rtol)


@pytest.mark.slow  # minutes on a starved 2-core machine: make test-all
def test_losing_the_only_replica_of_theta_or_model_is_survived(proc_client: Client) -> None:
    # First in the file (the other fault test is last): see the note at its end.
    # Dask's active memory manager trims extra replicas, so a run's model may live on one
    # worker only; killing that worker must cost a recomputation, not the run (scattered
    # data would be "already forgotten" and the next evaluation cancelled).
    X, T = _data()
    obj = jd.DaskObjective(_net(), _dask(X), _dask(T), MSE(), None, 0.0, proc_client)
    expected = obj.value()[0]
    proc_client.amm.run_once()  # what the memory manager does every few seconds
    holders = proc_client.who_has([obj.model])[obj.model.key]
    assert len(holders) == 1
    pid = proc_client.run(os.getpid, workers=holders)[holders[0]]
    os.kill(pid, signal.SIGKILL)  # a LocalCluster: the worker is a process on this machine
    deadline = time.monotonic() + 600
    while holders[0] in proc_client.scheduler_info()["workers"]:
        assert time.monotonic() < deadline, "the killed worker was never removed"
        time.sleep(0.1)
    assert obj.value()[0] == pytest.approx(expected, rel=1e-12)  # on the survivor
    # No wait for the restart here: the nanny restarts the worker while the next tests run
    # on the threaded cluster, and the last test of the file waits for it.


# LM on mse also runs in the DataFrame and worker-kill tests below; L-BFGS on
# cross-entropy takes the same gradient reduction as on mse.
@pytest.mark.parametrize("case, solver", [("mse", "lbfgs"), ("sse_weighted_alpha", "lm"),
                                          ("sse_weighted_alpha", "lbfgs"),
                                          ("cross_entropy", "lm")])
def test_distributed_matches_single_machine(client: Client, solver: str, case: str) -> None:
    X, T = _data(n_out=3 if case == "cross_entropy" else 1)
    opts: dict[str, Any] = {"solver": solver, "max_epochs": 3, "loss": "mse"}
    w = None
    if case == "sse_weighted_alpha":
        w = np.random.default_rng(1).uniform(0.5, 2.0, N)
        opts.update(loss="sse", alpha=1e-3)
    if case == "cross_entropy":
        T = np.eye(3)[np.argmax(T + X[:, :1], axis=1)]
        opts["loss"] = "cross_entropy"
    out = "softmax" if case == "cross_entropy" else "identity"
    single, dist = _net(T.shape[1], out), _net(T.shape[1], out)
    r1 = jn.train(single, X, T, sample_weight=w, **opts)
    r2 = jd.train(dist, _dask(X), _dask(T), client=client,
                  sample_weight=None if w is None else _dask(w), **opts)
    assert isinstance(r2, jn.TrainingRecord) and r2.solver == solver
    # LM on cross-entropy takes near-singular Gauss-Newton steps (softmax's flat direction)
    # that amplify the summation-order rounding of the partition sums: 1e-6 there.
    rtol = 1e-6 if (solver, case) == ("lm", "cross_entropy") else 1e-9
    _assert_same_run(single, dist, r1, r2, rtol)


@pytest.mark.slow  # 50 LM epochs; the stop reasons are the single-machine loop's: make test-all
def test_distributed_lm_stop_reason_goal(client: Client) -> None:
    X, T = _data()
    single, dist = _net(), _net()
    r1 = jn.train(single, X, T, solver="lm", goal=0.2, max_epochs=50)
    r2 = jd.train(dist, _dask(X), _dask(T), client=client, solver="lm", goal=0.2,
                  max_epochs=50)
    assert r1.stop_reason == "goal"
    _assert_same_run(single, dist, r1, r2)


def test_distributed_accepts_dataframes(client: Client) -> None:
    X, T = _data()
    df = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), npartitions=3)
    ts = dd.from_pandas(pd.Series(T[:, 0]), npartitions=3)
    single, dist = _net(), _net()
    r1 = jn.train(single, X, T, solver="lm", max_epochs=3)
    r2 = jd.train(dist, df, ts, client=client, solver="lm", max_epochs=3)
    _assert_same_run(single, dist, r1, r2)


def test_distributed_nan_partition_is_named(client: Client) -> None:
    X, T = _data()
    X[150, 1] = np.nan  # rows 140:210 are partition 2
    with pytest.raises(ValueError, match=r"X partition 2 \(block 2 of 4, rows 140:210\)"):
        jd.train(_net(), _dask(X), _dask(T), client=client, solver="lm", max_epochs=2)
    X, T = _data()
    T[5, 0] = np.inf
    with pytest.raises(ValueError, match="T partition 0"):
        jd.train(_net(), _dask(X), _dask(T), client=client, solver="lbfgs", max_epochs=2)


def test_distributed_rejects_what_does_not_scale(client: Client) -> None:
    X, T = _data()
    dX, dT = _dask(X), _dask(T)
    with pytest.raises(ValueError, match=r"solver 'adam'.*\('lbfgs', 'lm', 'br'\)"):
        jd.train(_net(), dX, dT, client=client, solver="adam")
    with pytest.raises(ValueError, match="validation_fraction=0.2.*does not divide"):
        jd.train(_net(), dX, dT, client=client, validation_fraction=0.2)
    with pytest.raises(TypeError, match="X must be a dask array"):
        jd.train(_net(), X, dT, client=client)
    with pytest.raises(ValueError, match="T must have shape"):
        jd.train(_net(), dX, _dask(np.ones((N, 2))), client=client)
    # a wrong number of rows, in memory or as dask, is named (not dask's chunk error)
    for bad in (T[:-1], da.from_array(T[:-1], chunks=50)):
        with pytest.raises(ValueError, match=rf"T must have {N} rows \(one per row of X\)"):
            jd.train(_net(), dX, bad, client=client, solver="lm", max_epochs=1)
    with pytest.raises(ValueError, match=rf"sample_weight must have {N} rows"):
        jd.train(_net(), dX, dT, client=client, sample_weight=np.ones(N + 1), max_epochs=1)


_EST = {"hidden_layer_sizes": (6,), "activation": "tanh", "max_iter": 2, "random_state": 0}


# ------------------------------------------------------------------ derivative data
def _derivatives(X: np.ndarray, n_out: int) -> np.ndarray:
    """dT/dX of _data's targets, (N, n_out, 3), with about a third of them not observed."""
    g = np.column_stack([np.cos(X[:, 0]), X[:, 2], X[:, 1]])
    G = np.repeat(g[:, None, :], n_out, axis=1)
    G[np.random.default_rng(2).random(G.shape) < 0.3] = np.nan
    return G


class _NoSecondOrder(jn.Activation):  # a user activation without hvp
    def forward(self, T: np.ndarray) -> np.ndarray:
        return T**3

    def jacobian(self, T: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return np.einsum("ij,jk->ijk", 3 * T**2, np.eye(T.shape[1]))


def _assert_same_derivative_run(a: jn.Network, b: jn.Network, ra: jn.TrainingRecord,
                                rb: jn.TrainingRecord) -> None:
    """The same run to 1e-10: theta, every recorded number (br's gamma, alpha, beta,
    evidence too)."""
    _assert_same_run(a, b, ra, rb, rtol=1e-10)
    for key in ("gamma", "alpha", "beta", "E_D", "log_evidence"):
        if key in ra.epochs[0]:
            assert_allclose(rb.column(key), ra.column(key), rtol=1e-10)


# LM without weights (each partition with fewer residuals than parameters: the dual form
# per partition), br with weights on sse, L-BFGS with a penalty on two outputs.
@pytest.mark.parametrize("solver, n_out, case", [("lm", 1, "small_partitions"),
                                                 ("br", 1, "weighted_sse"),
                                                 ("lbfgs", 2, "alpha")])
def test_distributed_derivatives_match_single_machine(client: Client, solver: str, n_out: int,
                                                      case: str) -> None:
    X, T = _data(n_out)
    G = _derivatives(X, n_out)
    opts: dict[str, Any] = {"max_epochs": 3, "loss": "mse", "derivative_weight": 0.7}
    w = None
    dX, dT, dG = _dask(X), _dask(T), _dask(G)
    if case == "small_partitions":  # 5 rows: 5 (1 + 3) residuals < 31 parameters
        dX, dT, dG = da.from_array(X, chunks=(5, 3)), T, G  # T, G in memory: sent once
    if case == "weighted_sse":
        w = np.random.default_rng(1).uniform(0.5, 2.0, N)
        opts["loss"] = "sse"
    if case == "alpha":
        opts["alpha"] = 1e-3
    single, dist = _net(n_out), _net(n_out)
    r1 = jn.train(single, X, T, solver, sample_weight=w, dTdX=G, **opts)
    r2 = jd.train(dist, dX, dT, solver, client=client, dTdX=dG,
                  sample_weight=None if w is None else _dask(w), **opts)
    assert r2.n_epochs == 3
    _assert_same_derivative_run(single, dist, r1, r2)


def test_distributed_derivatives_follow_the_rows_of_x(client: Client) -> None:
    """dTdX chunked otherwise, or in memory, is rechunked to X's rows, as T is: each
    partition then holds the same derivatives and the runs agree up to the rounding of the
    reduction (which partitions one worker adds up first follows their placement, which
    the scheduler may vary from run to run)."""
    X, T = _data()
    G = _derivatives(X, 1)[:, 0]  # (N, n_in) for one output
    thetas = []
    for dG in (_dask(G), da.from_array(G, chunks=(50, 2)), G):
        net = _net()
        jd.train(net, _dask(X), _dask(T), "lm", client=client, dTdX=dG, max_epochs=2)
        thetas.append(net.theta.copy())
    np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(thetas[2], thetas[0], rtol=1e-11, atol=1e-13)


def test_distributed_bad_derivatives_are_named(client: Client) -> None:
    X, T = _data()
    G = _derivatives(X, 1)
    dX, dT = _dask(X), _dask(T)

    def fit(dG: Any, net: jn.Network | None = None, **options: Any) -> None:
        jd.train(net or _net(), dX, dT, "lm", client=client, dTdX=dG, max_epochs=1, **options)

    with pytest.raises(ValueError, match=r"dTdX must have shape \(N, n_out, n_in\) = "
                       r"\(240, 1, 3\) or \(N, n_in\) = \(240, 3\), got \(240, 2, 3\)"):
        fit(_dask(np.concatenate([G, G], axis=1)))
    with pytest.raises(ValueError, match=rf"dTdX must have {N} rows \(one per row of X\)"):
        fit(G[:-1])
    bad = G.copy()
    bad[100, 0, 2] = -np.inf  # rows 70:140 are partition 1
    with pytest.raises(ValueError, match=r"dTdX partition 1 \(block 1 of 4, rows 70:140\) "
                       r"holds 1 infinite value\(s\) \(NaN, not inf, marks"):
        fit(_dask(bad))
    with pytest.raises(ValueError, match="dTdX needs a sum-of-squares loss"):
        fit(_dask(G), loss="huber")
    cube = jn.Network([jn.Dense(3, 4, _NoSecondOrder()), jn.Dense(4, 1)], seed=0)
    with pytest.raises(ValueError, match=r"dTdX .*layers\[0\]"):
        fit(_dask(G), net=cube)


def test_regressor_fits_derivatives_on_dask_arrays(client: Client) -> None:
    X, T = _data()
    y, G = T[:, 0], _derivatives(X, 1)[:, 0]
    kw = {**_EST, "solver": "lm", "derivative_weight": 0.5}
    with warnings.catch_warnings(), client.as_current():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = jn.MLPRegressor(**kw).fit(X, y, dydx=G)
        est = jn.MLPRegressor(**kw).fit(_dask(X), _dask(y), dydx=_dask(G))
        for bad, message in ((G[:, :2], r"dydx must have shape \(N, n_outputs, n_features\)"),
                             (np.where(np.isnan(G), np.inf, G), "dydx partition 0")):
            with pytest.raises(ValueError, match=message):
                jn.MLPRegressor(**kw).fit(_dask(X), _dask(y), dydx=_dask(bad))
        with pytest.raises(ValueError, match="dydx .* needs loss='squared_error'"):
            jn.MLPRegressor(**{**kw, "loss": "huber"}).fit(_dask(X), _dask(y), dydx=_dask(G))
        with pytest.raises(ValueError, match="dydx .* is for regression"):
            jn.MLPClassifier(**_EST).fit(_dask(X), _dask(y > 0), dydx=_dask(G))
    assert_allclose(est.network_.theta, ref.network_.theta, rtol=1e-10, atol=1e-13)
    assert_allclose(est.input_jacobian(X), ref.input_jacobian(X), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- predictive std
# lm with derivative data (their rows stay out of the posterior, as in memory), br, and
# lbfgs on two outputs with sample weights.
@pytest.mark.parametrize("solver, n_out, derivatives, weighted", [
    ("lm", 1, True, False), ("br", 1, False, True), ("lbfgs", 2, False, True)])
def test_regressor_dask_fit_predicts_the_single_machine_std(
        client: Client, solver: str, n_out: int, derivatives: bool, weighted: bool) -> None:
    X, T = _data(n_out)
    y = T[:, 0] if n_out == 1 else T
    G = _derivatives(X, n_out) if derivatives else None
    w = np.random.default_rng(3).uniform(0.5, 2.0, N) if weighted else None
    kw = {**_EST, "solver": solver, "max_iter": 3}
    with warnings.catch_warnings(), client.as_current():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = jn.MLPRegressor(**kw).fit(X, y, sample_weight=w, dydx=G)
        est = jn.MLPRegressor(**kw).fit(_dask(X), _dask(y),
                                        sample_weight=None if w is None else _dask(w),
                                        dydx=None if G is None else _dask(G))
    assert_allclose(est.network_.theta, ref.network_.theta, rtol=1e-10, atol=1e-13)
    (m1, s1), (m2, s2) = ref.predict(X, return_std=True), est.predict(X, return_std=True)
    assert_allclose(m2, m1, rtol=1e-10, atol=1e-12)
    assert_allclose(s2, s1, rtol=1e-10)
    for a, b in zip(ref.predict_interval(X, 0.9), est.predict_interval(X, 0.9), strict=True):
        assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    p1, p2 = ref.posterior_, est.posterior_
    assert (p2.source, p2.dof) == (p1.source, pytest.approx(p1.dof, rel=1e-10))
    assert_allclose(p2.noise_variance, p1.noise_variance, rtol=1e-10)
    # the posterior is computed at the fit's end: it goes into the model file as in memory
    loaded = type(est).from_state(*est.to_state())
    assert_allclose(loaded.predict(X, return_std=True)[1], s1, rtol=1e-10)


def test_dask_lbfgs_fit_of_a_large_network_skips_the_posterior(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """L-BFGS never holds a P x P sum: over POSTERIOR_MAX_PARAMS the fit does not add one
    up at its end, and return_std says why; LM (whose every epoch holds one) still does."""
    monkeypatch.setattr(jd, "POSTERIOR_MAX_PARAMS", 10)
    X, T = _data()
    with warnings.catch_warnings(), client.as_current():
        warnings.simplefilter("ignore", ConvergenceWarning)
        big = jn.MLPRegressor(**{**_EST, "solver": "lbfgs"}).fit(_dask(X), _dask(T[:, 0]))
        lm = jn.MLPRegressor(**{**_EST, "solver": "lm"}).fit(_dask(X), _dask(T[:, 0]))
    with pytest.raises(ValueError, match="POSTERIOR_MAX_PARAMS"):
        big.predict(X, return_std=True)
    assert np.isfinite(lm.predict(X, return_std=True)[1]).all()
    lm.set_model(coefs=lm.coefs_)  # new weights: the sums of the old ones are dropped
    with pytest.raises(ValueError, match="holds no posterior"):
        lm.predict(X, return_std=True)




# L-BFGS through the estimator: the same reductions as jd.train's L-BFGS above.
@pytest.mark.parametrize("solver", ["lm", pytest.param("lbfgs", marks=pytest.mark.slow)])
def test_regressor_fits_dask_arrays(client: Client, solver: str) -> None:
    X, T = _data()
    y = T[:, 0]
    with warnings.catch_warnings(), client.as_current():  # fit finds the client by itself
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = jn.MLPRegressor(solver=solver, **_EST).fit(X, y)
        est = jn.MLPRegressor(solver=solver, **_EST).fit(_dask(X), _dask(y))
        with pytest.raises(ValueError, match=r"solver='adam'.*\('lbfgs', 'lm', 'br'\)"):
            jn.MLPRegressor(solver="adam").fit(_dask(X), _dask(y))
    if solver == "lm":  # standardised, the statistics reduced by dask
        assert isinstance(est.x_mean_, np.ndarray)
        assert_allclose(est.x_mean_, ref.x_mean_, rtol=1e-12)
        assert_allclose(est.y_scale_, ref.y_scale_, rtol=1e-12)
    assert est.n_iter_ == ref.n_iter_ and est.n_features_in_ == 3
    assert_allclose(est.predict(X), ref.predict(X), rtol=1e-8, atol=1e-10)


def test_classifier_fits_dask_arrays(client: Client) -> None:
    X, T = _data()
    labels = np.array(["a", "b", "c"])[np.argmax(T + X, axis=1)]
    with warnings.catch_warnings(), client.as_current():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = jn.MLPClassifier(solver="lm", **_EST).fit(X, labels)
        est = jn.MLPClassifier(solver="lm", **_EST).fit(_dask(X), _dask(labels))
    assert list(est.classes_) == ["a", "b", "c"]
    assert_allclose(est.predict_proba(X), ref.predict_proba(X), rtol=1e-8, atol=1e-10)


def test_grid_search_with_joblib_dask_backend(client: Client) -> None:
    X, T = _data()
    y = T[:, 0]
    est = jn.MLPRegressor(solver="lm", activation="tanh", max_iter=3, random_state=0)
    grid = {"hidden_layer_sizes": [(2,), (6,)], "alpha": [1e-4, 1e-1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial = GridSearchCV(est, grid, cv=2).fit(X, y)
        with joblib.parallel_backend("dask", client=client):
            search = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(X, y)
    assert search.best_params_ == serial.best_params_
    assert_allclose(search.cv_results_["mean_test_score"],
                    serial.cv_results_["mean_test_score"], rtol=1e-10)


def test_only_partial_sums_travel_between_workers(proc_client: Client) -> None:
    """Every partition is evaluated where it lives. All of them are put on one worker, the
    other left idle: Dask's scheduler would move half of them there (its cost model
    prefers a transfer to a wait); jacnet's tasks stay with the data, and the bytes the
    workers send each other (Dask's own counter) stay far below one partition's."""
    proc_client.wait_for_workers(2, timeout=600)  # the first fault test's restart
    rows, parts = 20_000, 4
    rng = np.random.default_rng(5)
    X = rng.standard_normal((rows * parts, 3))
    T = np.sin(X[:, :1]) + X[:, 1:2] * X[:, 2:3]
    first = sorted(proc_client.scheduler_info()["workers"])[0]
    Xd, Td = proc_client.persist([da.from_array(X, chunks=(rows, 3)),
                                  da.from_array(T, chunks=(rows, 1))], workers=[first])
    obj = jd.DaskObjective(_net(), Xd, Td, MSE(), None, 0.0, proc_client)
    # One worker holds every partition, the other none (the objective's own pass over the
    # data copied none over).
    holders = {w for ws in proc_client.who_has([Xd, Td]).values() for w in ws}
    assert holders == {first} and len(proc_client.scheduler_info()["workers"]) == 2, holders

    def sent(dask_worker: Any) -> int:
        return int(dask_worker.transfer_outgoing_bytes_total)

    before = sum(proc_client.run(sent).values())
    for _ in range(3):
        obj.system(None, None)
        obj.value()
        obj.value_and_grad()
    moved = sum(proc_client.run(sent).values()) - before
    P = obj.net.n_params
    assert moved < 9 * (8 * P * P + 4096), moved  # a few P x P systems at most
    assert moved < X.nbytes / parts / 10, moved  # and nothing near one partition (480 kB)
    # Partitions held by both workers (replicas, as a gather leaves them) are shared out
    # evenly, not all given to one worker.
    proc_client.replicate(futures_of(Xd), n=2)
    groups = obj.parts.groups()
    assert sorted(len(idx) for _, idx in groups) == [2, 2]
    assert len({worker for worker, _ in groups}) == 2


def test_worker_killed_mid_evaluation_is_survived(proc_client: Client, tmp_path: Path) -> None:
    # Last in the file, so the restart after the first fault test has had the other tests'
    # time; the restart this one causes is left to the cluster's teardown. A worker process exits
    # inside a task, mid-evaluation, at the first evaluation after the marker appears
    # (the first worker to remove the marker exits; the file makes that happen once).
    marker = str(tmp_path / "kill-a-worker")

    class KillOnce(MSE):
        def value(self, Y: np.ndarray, T: np.ndarray, w: np.ndarray | None = None) -> float:
            try:
                os.remove(marker)
            except FileNotFoundError:
                return super().value(Y, T, w)
            os._exit(1)

    def arm(entry: dict[str, Any], net: jn.Network) -> None:
        if entry["epoch"] == 2:
            Path(marker).touch()

    X, T = _data()
    single, dist = _net(), _net()
    r1 = jn.train(single, X, T, solver="lm", max_epochs=5)
    proc_client.wait_for_workers(2, timeout=600)  # a survivor must be there to retry on
    before = set(proc_client.scheduler_info()["workers"])
    r2 = jd.train(dist, _dask(X), _dask(T), client=proc_client, solver="lm", max_epochs=5,
                  loss=KillOnce(), callbacks=[arm])
    assert not os.path.exists(marker)  # a worker did die ...
    assert not before <= set(proc_client.scheduler_info()["workers"])  # ... and was removed
    _assert_same_run(single, dist, r1, r2)


def test_regressor_warm_start_on_dask_arrays_continues_the_record(client: Client) -> None:
    X, T = _data()
    y = T[:, 0]
    kw = {**_EST, "solver": "lm", "warm_start": True}
    with warnings.catch_warnings(), client.as_current():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = jn.MLPRegressor(**kw).fit(X, y).fit(X, y)
        est = jn.MLPRegressor(**kw).fit(_dask(X), _dask(y)).fit(_dask(X), _dask(y))
    for e in (ref, est):  # n_iter_ counts the last fit's epochs; the record holds both fits
        assert e.n_iter_ == 2 and e.training_record_.n_epochs == 4
        assert [d["epoch"] for d in e.training_record_.epochs] == [1, 2, 3, 4]
    assert_allclose(est.predict(X), ref.predict(X), rtol=1e-8, atol=1e-10)
