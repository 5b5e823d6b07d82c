"""How the OpenBLAS overrides change numpy/scipy's speed on this machine.

    python -m benchmarks.blas_env

Runs a float64 GEMM (numpy) and SYRK (scipy) probe in a fresh interpreter for each
setting of ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (they are read when OpenBLAS
loads, so each needs its own process) and prints the kernel OpenBLAS chose and the rates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, time
import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_info
rng = np.random.default_rng(0)
B = rng.standard_normal((1500, 1500))
A = rng.standard_normal((2000, 2000))
def best(f, k=3):
    f()
    ts = []
    for _ in range(k):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)
gemm = 2 * 1500**3 / best(lambda: B @ B) / 1e9
syrk = 2000 * 2000**2 / best(lambda: blas.dsyrk(1.0, A.T, trans=0, lower=0)) / 1e9
kernels = sorted({d.get("architecture") or "?" for d in threadpool_info()
                  if d.get("internal_api") == "openblas"})
print(json.dumps({"kernel": "/".join(kernels), "gemm": gemm, "syrk": syrk}))
"""

SETTINGS: list[dict[str, str]] = [
    {},
    {"OPENBLAS_L2_SIZE": "262144"},
    {"OPENBLAS_CORETYPE": "Haswell"},
    {"OPENBLAS_CORETYPE": "Prescott"},
]


def main() -> int:
    print("| setting | OpenBLAS kernel | numpy dgemm GFLOP/s | scipy dsyrk GFLOP/s |")
    print("|---|---|---|---|")
    for extra in SETTINGS:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        }
        env.update(extra)
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
        )
        res = json.loads(proc.stdout)
        label = ", ".join(f"{k}={v}" for k, v in extra.items()) or "both unset"
        print(f"| {label} | {res['kernel']} | {res['gemm']:.0f} | {res['syrk']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
