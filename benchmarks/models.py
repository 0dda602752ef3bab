"""Training and inference speed of the models, against the machine's matmul rate.

For each model (PCA, dense, the CNN at the CPU preset's width and at the study's
width) on toy 37 x 37 images (models/toy.py; speed does not depend on content):

- ``models.<model>.train_jets_per_s``: jets per second through one training epoch
  (Adam, batch 256, after a warm-up epoch); for PCA the closed-form fit, i.e. the
  covariance accumulation plus one fixed-cost eigendecomposition (1369 x 1369), so
  its rate grows with the number of jets;
- ``models.<model>.infer_jets_per_s``: jets per second through the scorer
  (``score_images``, batch 1024);
- ``models.<model>.flops_per_jet``: forward-pass floating-point operations per jet,
  counted from the layer shapes (:func:`models.architectures.forward_flops`);
- ``models.<model>.infer_fraction_of_matmul`` and ``train_fraction_of_matmul``: the
  achieved FLOP rate (forward = 1x, training step = 3x the forward FLOPs) over
  ``models.matmul_gflops``, the float32 matrix-multiply rate measured in this run;
- ``models.read_jets_per_s``: jets per second streamed from Parquet by the training
  input pipeline (tf.data), the bound for models faster than that.
"""

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.hardware import matmul_gflops  # noqa: E402


def _images(n, seed=0):
    from models.toy import toy_images

    rng = np.random.default_rng(seed)
    return toy_images(n, "qcd", rng)[..., None]  # (n, 37, 37, 1)


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _network(name, latent=6):
    from models.architectures import PRESET_FILTERS, build_cnn, build_dense

    if name == "dense":
        return build_dense(latent)
    return build_cnn(latent, PRESET_FILTERS[name.removeprefix("cnn_")])


def _train_rate(autoencoder, images, batch_size=256):
    import keras

    from models.training import ADAM_EPSILON

    autoencoder.compile(keras.optimizers.Adam(epsilon=ADAM_EPSILON), loss="mse")
    warm = images[: 2 * batch_size]
    autoencoder.fit(warm, warm, batch_size=batch_size, epochs=1, verbose=0)
    seconds = _timed(
        lambda: autoencoder.fit(
            images, images, batch_size=batch_size, epochs=1, verbose=0
        )
    )
    return len(images) / seconds


def _infer_rate(scorer, images, batch_size=1024):
    from models.io import score_images

    score_images(scorer, images[:batch_size], batch_size)  # trace once
    seconds = _timed(lambda: score_images(scorer, images, batch_size))
    return len(images) / seconds


def _pca(images):
    from models.pca import build_pca, fit_pca

    batches = np.array_split(images, max(1, len(images) // 1024))
    seconds = _timed(lambda: fit_pca(batches))
    return build_pca(fit_pca(batches), 6), len(images) / seconds


def _read_rate(n_jets):
    from models.data import make_tf_dataset, prepare_training_data
    from models.toy import write_toy_parquet

    with tempfile.TemporaryDirectory() as tmp:
        write_toy_parquet(Path(tmp), "qcd", n_jets, "qcd", row_group=1000)
        data = prepare_training_data(tmp, "qcd")
        dataset = make_tf_dataset(data.train, 256, shuffle=True)
        sum(1 for _ in dataset)  # the first pass starts the generator machinery
        seconds = _timed(lambda: sum(1 for _ in dataset))
        return data.n_train / seconds


def run(quick=False):
    import keras

    from models.architectures import forward_flops
    from models.scorer import make_scorer

    keras.utils.set_random_seed(0)
    sizes = {"pca": 2000, "dense": 4000, "cnn_cpu": 1024, "cnn_paper": 256}
    if quick:
        sizes = {"pca": 500, "dense": 512, "cnn_cpu": 256, "cnn_paper": 64}
    gflops = matmul_gflops(512 if quick else 2048)
    figures = {"models.matmul_gflops": gflops}
    images = _images(max(sizes.values()) + 1024)
    for name, n in sizes.items():
        if name == "pca":
            autoencoder, train_rate = _pca(images[:n])
            train_flops = 2 * 1369**2  # covariance update per jet
        else:
            autoencoder = _network(name)
            train_rate = _train_rate(autoencoder, images[:n])
            train_flops = 3 * forward_flops(autoencoder)
        flops = forward_flops(autoencoder)
        infer_rate = _infer_rate(make_scorer(autoencoder), images[: max(n, 1024)])
        figures |= {
            f"models.{name}.train_jets_per_s": train_rate,
            f"models.{name}.infer_jets_per_s": infer_rate,
            f"models.{name}.flops_per_jet": flops,
            f"models.{name}.train_fraction_of_matmul": train_rate
            * train_flops
            / (gflops * 1e9),
            f"models.{name}.infer_fraction_of_matmul": infer_rate
            * flops
            / (gflops * 1e9),
        }
    figures["models.read_jets_per_s"] = _read_rate(1000 if quick else 5000)
    return figures


if __name__ == "__main__":
    for figure, value in run().items():
        print(f"{figure}: {value:.4g}")
