"""Hardware references measured in the same run as the stages.

``hardware.matmul_gflops``: float32 matrix-multiply rate (the FLOP bound of the
models); ``hardware.memory_bandwidth_gbs``: large-array copy bandwidth (the bound of
image building, which streams constituents once).
"""

import time

import numpy as np


def _best_of(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(size=1024, repeats=5):
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    seconds = _best_of(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def memory_bandwidth_gbs(megabytes=256, repeats=5):
    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    seconds = _best_of(lambda: np.copyto(target, source), repeats)
    # A copy reads and writes every byte once.
    return 2 * source.nbytes / seconds / 1e9


def run(quick=False):
    return {
        "hardware.matmul_gflops": matmul_gflops(512 if quick else 2048),
        "hardware.memory_bandwidth_gbs": memory_bandwidth_gbs(64 if quick else 512),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.3g}")
