"""Suite "distributed": Levenberg-Marquardt on Dask against one process, and what travels.

One LM iteration (loss, Gauss-Newton system, trial steps) of a 4-16-1 tanh network on
10^7 rows, on a 2-worker ``LocalCluster`` (one thread and one BLAS thread per worker
process) against the same iteration of ``jacnet.train``'s LM in one process (the runner's
BLAS threads). Both start from the same theta and mu and must take the same step. The
bytes that cross between workers per iteration are read from Dask's own counter
(``Worker.transfer_outgoing_bytes_total``) and compared with the P x P system (P^2 x 8
bytes) and with the data (N x (n_in + n_out) x 8 bytes), which never moves.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

import jacnet as jn

from ._harness import Case, Context, Row, check_close, measure, measure_mode

TITLE = "Distributed Levenberg-Marquardt (Dask LocalCluster, float64)"
DESCRIPTION = """\
One Levenberg-Marquardt iteration (the loss, the Gauss-Newton system `JᵀJ, Jᵀe` and the
trial steps until the loss falls) of a 4-16-1 tanh network (P = 97) on N rows of a smooth
regression target, with `jacnet.distributed` on a 2-worker `LocalCluster` (2 processes, 1
thread each) against `jacnet.train`'s LM in this one process (the runner's BLAS threads);
the ratio is the distributed speedup. Both start from the same θ and μ and must take the
same step (checked to 1e-9). The data are generated on the workers and persisted there;
the note gives the bytes sent between workers per iteration, read from Dask's
`Worker.transfer_outgoing_bytes_total`, against P² × 8 bytes (one P×P system) and against
the size of the data: only partial sums travel, never rows."""

WIDTHS = (4, 16, 1)
# (rows, partitions, worker processes?): full, smoke.
SIZES = ((10_000_000, 8, True), (2_000, 3, False))
MAX_REPEATS = 3  # each full-size call takes seconds: the runner's default 5 would be long


def MODE(ctx: Context) -> str:  # noqa: N802  (the suite attribute the runner reads)
    """The run's "mode" line: :func:`measure`'s protocol at this suite's repeats."""
    return measure_mode(min(ctx.repeats, MAX_REPEATS), ctx.warmup)


def _target(X: np.ndarray) -> np.ndarray:
    """A smooth function of the 4 inputs, one column."""
    return (np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2)[:, None]


def _net() -> jn.Network:
    layers = [jn.Dense(WIDTHS[0], WIDTHS[1], "tanh"), jn.Dense(WIDTHS[1], WIDTHS[2], "identity")]
    return jn.Network(layers, seed=0)


def _sent_bytes(client: Any) -> int:
    """Bytes all workers have sent to other workers since they started (Dask's counter)."""

    def sent(dask_worker: Any) -> int:
        return int(dask_worker.transfer_outgoing_bytes_total)

    return sum(client.run(sent).values())


def lm_case(ctx: Context, n: int, parts: int, processes: bool) -> list[Row]:
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from jacnet.distributed import DaskObjective
    from jacnet.objective import Objective
    from jacnet.solvers import LevenbergMarquardt

    case = f"distributed.lm.{'-'.join(map(str, WIDTHS))}"
    name = f"LM iteration, 4-16-1 tanh (N={n:.0e}, {parts} partitions)"
    peer = "one process (`jacnet.train`'s LM)"
    data_bytes = n * (WIDTHS[0] + WIDTHS[-1]) * 8
    skip = ctx.skip_for_memory(3 * data_bytes)
    if skip:
        return [ctx.row(case, name, peer, status="skip", note=skip)]
    loss = jn.get_loss("mse")
    # The scheduler's HTTP server on a free port, not 8787 (another cluster may hold it).
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"}
                      ) as cluster, Client(cluster) as client:
        rows = -(-n // parts)
        X = da.random.default_rng(0).uniform(-1, 1, (n, WIDTHS[0]), chunks=(rows, WIDTHS[0]))
        T = X.map_blocks(_target, chunks=(X.chunks[0], (1,)), dtype=X.dtype)
        X, T = client.persist([X, T])
        Xn, Tn = dask.compute(X, T)  # the one-process peer needs the rows in memory
        net_d, net_s = _net(), _net()
        theta0 = net_s.get_flat()
        lm_d = LevenbergMarquardt().bind(DaskObjective(net_d, X, T, loss, None, 0.0, client))
        lm_s = LevenbergMarquardt().bind(Objective(net_s, Xn, Tn, loss, None))

        def iteration(lm: LevenbergMarquardt, net: jn.Network) -> Any:
            net.set_flat(theta0)
            lm.mu = 1e-3
            lm.reset()
            return lm.step()

        step_d, step_s = iteration(lm_d, net_d), iteration(lm_s, net_s)
        err = check_close(f"{case}: theta after one step", net_d.theta, net_s.theta, 1e-9)
        k = 1 if ctx.smoke else 2
        sent0 = _sent_bytes(client)
        for _ in range(k):
            iteration(lm_d, net_d)
        per_iter = (_sent_bytes(client) - sent0) / k
        t = measure({"jacnet": partial(iteration, lm_d, net_d),
                     "peer": partial(iteration, lm_s, net_s)},
                    repeats=min(ctx.repeats, MAX_REPEATS), warmup=ctx.warmup,
                    pause=0.0 if ctx.smoke else 0.2)
    P = net_s.n_params
    system = P * P * 8
    note = (
        f"{step_s.trials} trial(s) per iteration; worker-to-worker bytes per iteration "
        f"{per_iter / 1e3:.0f} kB = {per_iter / system:.2f} x P²·8 (P={P}, {system / 1e3:.0f} "
        f"kB) = {per_iter / data_bytes:.1e} x the data ({data_bytes / 1e6:.0f} MB); client to "
        f"workers: θ ({P * 8} B) per evaluation and worker; theta agrees to {err:.1e}; "
        f"distributed and one-process loss {step_d.loss:.6g} / {step_s.loss:.6g}"
    )
    return [ctx.row(case, name, peer, jacnet=t["jacnet"], peer_time=t["peer"], note=note)]


def cases(smoke: bool) -> list[Case]:
    """The suite's one case; ``smoke`` picks tiny sizes and an in-process cluster."""
    n, parts, processes = SIZES[1 if smoke else 0]
    return [Case(f"distributed.lm.{'-'.join(map(str, WIDTHS))}",
                 partial(lm_case, n=n, parts=parts, processes=processes))]
