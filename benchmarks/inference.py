"""Scores: local TensorFlow inference against Triton-served inference, per model.

For each model (PCA, dense and CNN autoencoders of the study's shapes, untrained:
the speed does not depend on the weights) and each batch size of the scan, the same
toy images are scored side by side in the same run:

``inference.<model>.local_jets_per_s.b<batch>``
    :class:`processors.inference.LocalScorer` in this process (TensorFlow on the
    CPU, or the GPU where one is visible);
``inference.<model>.served_jets_per_s.b<batch>``
    :class:`processors.inference.TritonScorer` against a local Triton server
    (:func:`models.serving.triton_server`, its own process) over gRPC, with its
    default of two requests in flight;
``inference.<model>.served_over_local.b<batch>``
    their ratio.

``inference.server_start_s`` is the time from launching the server to every model
answering (its environment already made; ``inference.server_env_s`` is the time
:func:`models.serving.ensure_server_env` took in this run: about a minute the first
time, near zero after). Each figure is the best of ``repeats`` passes after one
warm-up pass. ``python -m benchmarks.inference [--quick]``.
"""

import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("pca", "dense", "cnn")
BATCHES = (64, 256, 1024, 4096)
QUICK_BATCHES = (64, 1024)


def build_models(folder):
    """Save the study's three scorers (CNN: the ``cpu`` preset) under ``folder``."""
    from models.architectures import build_cnn, build_dense
    from models.io import save_model
    from models.pca import build_pca, fit_pca
    from models.scorer import make_scorer
    from models.toy import toy_images

    rng = np.random.default_rng(1)
    builders = {
        "pca": lambda: build_pca(fit_pca([toy_images(500, "qcd", rng)]), 6),
        "dense": lambda: build_dense(latent=6),
        "cnn": lambda: build_cnn(latent=6, filters=32),
    }
    for name in MODELS:
        save_model(make_scorer(builders[name]()), folder / name, {"name": name})
    return folder


def _best(function, repeats):
    function()  # warm-up: model loading, tracing, connection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _scan(scorers, images, batches, repeats):
    """{batch: jets/s} of ``scorers[batch](images)``."""
    return {
        batch: len(images) / _best(lambda s=scorers[batch]: s(images), repeats)
        for batch in batches
    }


def run(quick=False):
    from models.serving import ensure_server_env, triton_server
    from models.toy import toy_images
    from processors.inference import LocalScorer, TritonScorer

    n_jets = 2048 if quick else 8192
    batches = QUICK_BATCHES if quick else BATCHES
    repeats = 1 if quick else 2
    images = toy_images(n_jets, "qcd", np.random.default_rng(2))  # (jets, 37, 37)
    figures = {}

    with tempfile.TemporaryDirectory(prefix="aejets-bench-") as tmp:
        folder = build_models(Path(tmp))
        start = time.perf_counter()
        ensure_server_env()
        figures["inference.server_env_s"] = time.perf_counter() - start

        start = time.perf_counter()
        with triton_server(folder, max_batch_size=max(batches)) as url:
            figures["inference.server_start_s"] = time.perf_counter() - start
            for name in MODELS:
                local = {b: LocalScorer(folder / name, batch_size=b) for b in batches}
                served = {b: TritonScorer(url, name, batch_size=b) for b in batches}
                local_rate = _scan(local, images, batches, repeats)
                served_rate = _scan(served, images, batches, repeats)
                for batch in batches:
                    prefix = f"inference.{name}"
                    figures[f"{prefix}.local_jets_per_s.b{batch}"] = local_rate[batch]
                    figures[f"{prefix}.served_jets_per_s.b{batch}"] = served_rate[batch]
                    figures[f"{prefix}.served_over_local.b{batch}"] = (
                        served_rate[batch] / local_rate[batch]
                    )
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference")
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests")
    for figure, value in sorted(run(parser.parse_args().quick).items()):
        print(f"{figure:<48} {value:>12.6g}")
