"""Time the same jacnet workloads on two source trees side by side (old commit vs new).

    python -m benchmarks.compare --old REV [--new REV] [--rounds 3] [--repeats 3]
                                 [--only NAME] [--smoke] [--out FILE]

Each tree is an export of ``src/`` at a git revision (``--new`` defaults to the working
tree). Every workload runs in a fresh interpreter per tree, with ``PYTHONPATH`` pointing at
that tree's ``src``: an untimed warm-up, then ``--repeats`` timed runs, the median kept.
The two trees alternate within each round and the order flips from round to round, so that
drift of the machine's speed falls on both alike; the table gives the median over rounds
and the ratio new/old (below 1: the new tree is faster).

The workloads are those of the ``perf`` and ``training`` suites (jacnet's side only, through
the public API both trees share), and each also reports a checksum of the trained weights:
the same seed must give the same weights in both trees, bit for bit, and a differing
checksum is printed in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: name -> Python source run in the tree's interpreter; it defines ``setup()`` returning a
#: zero-argument function that runs the workload once and returns the trained network.
WORKLOADS: dict[str, str] = {
    "perf.mlp.b128.f32": "mlp(128, 'float32')",
    "perf.mlp.b32.f32": "mlp(32, 'float32')",
    "perf.mlp.b512.f32": "mlp(512, 'float32')",
    "perf.mlp.b128.f64": "mlp(128, 'float64')",
    "perf.small.b32.f32": "small()",
    "training.lm.sinc": "fixed('lm', (1, 20, 1), sinc, 1000, max_epochs=50, min_grad=0.0)",
    "training.lm.surface": "fixed('lm', (2, 30, 2), surface, 400, max_epochs=30, min_grad=0.0)",
    "training.lbfgs.sinc": "fixed('lbfgs', (1, 20, 1), sinc, 1000, max_epochs=300, "
                           "min_grad=0.0, tol=1e-15)",
    "training.adam.sinc": "fixed('adam', (1, 20, 1), sinc, 1000, max_epochs=300, lr=0.01, "
                          "batch_size=None, shuffle=False)",
    "estimator.lm.sinc": "estimator()",
}

_PRELUDE = """
import hashlib, time, warnings
import numpy as np
import jacnet as jn

def network(widths, hidden, out, dtype, seed=0):
    pairs = list(zip(widths[:-1], widths[1:]))
    layers = [jn.Dense(a, b, hidden) for a, b in pairs[:-1]] + [jn.Dense(*pairs[-1], out)]
    return jn.Network(layers, seed=seed, dtype=dtype)

def mlp(bs, dtype, n=N_MLP):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 784)).astype(dtype)
    T = np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]
    def run():
        net = network((784, 256, 256, 10), "relu", "softmax", dtype)
        jn.train(net, X, T, solver="adam", loss="cross_entropy", lr=1e-3, batch_size=bs,
                 max_epochs=1, seed=0)
        return net
    return run

def small(n=N_SMALL):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 10)).astype(np.float32)
    T = np.tanh(X[:, :1] * X[:, 1:2]).astype(np.float32)
    def run():
        net = network((10, 32, 32, 1), "tanh", "identity", np.float32)
        jn.train(net, X, T, solver="adam", loss="mse", lr=1e-3, batch_size=32, max_epochs=1,
                 seed=0)
        return net
    return run

def sinc(n):
    x = np.linspace(-1.0, 1.0, n)[:, None]
    return x, np.sinc(10.0 * x / np.pi)

def surface(n):
    side = max(2, round(n ** 0.5))
    g = np.linspace(-1.0, 1.0, side)
    x1, x2 = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    T = np.stack([np.sin(np.pi * x1) * np.cos(np.pi * x2), x1 * x2 + 0.5 * np.tanh(2 * x2)], 1)
    return np.stack([x1, x2], axis=1), T

def fixed(solver, widths, data, n, **options):
    X, T = data(n)
    def run():
        net = network(widths, "tanh", "identity", np.float64)
        jn.train(net, X, T, solver=solver, loss="mse", seed=0, **options)
        return net
    return run

def estimator():
    X, T = sinc(1000)
    def run():
        est = jn.MLPRegressor(hidden_layer_sizes=(20,), activation="tanh", solver="lm",
                              max_iter=50, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, T.ravel())
        return est.network_
    return run
"""

_MAIN = """
run = {call}
run()  # warm-up
times = []
for _ in range({repeats}):
    t0 = time.perf_counter()
    net = run()
    times.append(time.perf_counter() - t0)
digest = hashlib.sha256(net.get_flat().tobytes()).hexdigest()[:12]
print(json.dumps({{"times": times, "digest": digest}}))
"""


def export_tree(rev: str, dest: Path) -> Path:
    """``src/`` of ``rev`` unpacked under ``dest``; returns the path to put on PYTHONPATH."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "src.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_workload(src: Path, call: str, repeats: int, smoke: bool) -> dict[str, object]:
    sizes = "N_MLP, N_SMALL = " + ("(2000, 500)" if smoke else "(60000, 20000)")
    code = "import json\n" + sizes + _PRELUDE + _MAIN.format(call=call, repeats=repeats)
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"workload {call} failed on {src}:\n{out.stderr[-2000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare(trees: dict[str, Path], names: list[str], rounds: int, repeats: int,
            smoke: bool) -> list[str]:
    """Markdown rows: workload, old and new medians (s), ratio new/old, weights equal."""
    rows = ["| workload | old (s) | new (s) | new/old | same weights |", "|---|---|---|---|---|"]
    for name in names:
        medians: dict[str, list[float]] = {"old": [], "new": []}
        digests: dict[str, str] = {}
        for r in range(rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for which in order:
                res = run_workload(trees[which], WORKLOADS[name], repeats, smoke)
                medians[which].append(statistics.median(res["times"]))  # type: ignore[arg-type]
                digests[which] = str(res["digest"])
        old, new = statistics.median(medians["old"]), statistics.median(medians["new"])
        same = "yes" if digests["old"] == digests["new"] else (
            f"**no** ({digests['old']} vs {digests['new']})")
        rows.append(f"| {name} | {old:.4g} | {new:.4g} | {new / old:.3f} | {same} |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="git revision of the old tree")
    p.add_argument("--new", default=None, help="git revision of the new tree (default: "
                   "the working tree's src/)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", action="append", default=[], metavar="NAME")
    p.add_argument("--smoke", action="store_true", help="small sizes, for a quick check")
    p.add_argument("--out", type=Path, default=None,
                   help="write the table into this Markdown file, between the markers "
                   f"{START} and {END} (appended with them when absent)")
    args = p.parse_args(argv)
    names = [n for n in WORKLOADS if not args.only or any(o in n for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"old": export_tree(args.old, Path(tmp, "old").resolve())}
        if args.new is None:
            trees["new"] = REPO / "src"
        else:
            trees["new"] = export_tree(args.new, Path(tmp, "new").resolve())
        rows = compare(trees, names, args.rounds, args.repeats, args.smoke)
    if args.out is not None:
        write_section(args.out, section(args, rows))
    return 0


START, END = "<!-- compare:start -->", "<!-- compare:end -->"


def section(args: argparse.Namespace, rows: list[str]) -> str:
    """The Markdown section of one comparison: what was compared, how, and the table."""
    new = args.new or f"working tree at {_rev('HEAD')}"
    load = os.getloadavg()
    return "\n".join([
        START,
        "## Old commit against new (`python -m benchmarks.compare`)",
        "",
        f"Old: `{args.old}` ({_rev(args.old)}); new: {new}. {args.rounds} rounds of "
        f"{args.repeats} timed runs after a warm-up, each workload in a fresh interpreter "
        f"per tree, trees alternating; medians in seconds. Written {time.strftime('%Y-%m-%d')}"
        f"; load average at the end {load[0]:.2f} on {os.cpu_count()} cores. \"same weights\""
        " compares a checksum of the trained weights of both trees. The workloads are "
        "listed in `benchmarks/compare.py` (`WORKLOADS`).",
        "",
        *rows,
        END,
    ]) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace the comparison section of ``path`` (or append it)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    path.write_text(new, encoding="utf-8")


def _rev(rev: str) -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or rev


if __name__ == "__main__":
    sys.exit(main())
