"""Training the models of the study and describing them in a model card.

:func:`train` plans the data (:mod:`models.data`), fits PCA in closed form or trains
the dense or convolutional autoencoder (Adam defaults, pixel MSE, early stopping on
the validation loss, fixed seed), and returns the scorer with its card;
:func:`train_and_save` also writes the model folder (:mod:`models.io`).
:func:`latent_scan` measures the PCA eigenvalue spectrum and the validation loss
against the latent dimension, without any signal.
"""

import logging
import math
import shutil
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from analysis.errors import ConfigError
from models.architectures import (
    N_PIXELS,
    PRESET_FILTERS,
    build_cnn,
    build_dense,
    choose_preset,
    forward_flops,
    set_mean_image,
)
from models.data import iter_images, make_tf_dataset, prepare_training_data
from models.pca import build_pca, fit_pca
from models.scorer import make_scorer

__all__ = [
    "ARCHITECTURES",
    "BATCH_SIZE",
    "model_name",
    "train",
    "train_and_save",
    "pca_losses",
    "package_versions",
]

log = logging.getLogger(__name__)

ARCHITECTURES = ("pca", "dense", "cnn")
# Keras' default Adam epsilon (1e-7) assumes gradients of order one. Unit-sum images
# have pixels of order 1/1369 and gradients near 1e-8, which that epsilon swamps: a
# dense autoencoder barely moves in 10 epochs. Dividing epsilon by 1369^2 is exactly
# Adam with default settings on images scaled to unit mean pixel (Adam is otherwise
# invariant to the scale of the loss).
ADAM_EPSILON = 1e-7 / N_PIXELS**2
# Keras' default batch. Samples of a few thousand jets need the optimizer steps:
# at 256 jets per batch the networks are still far from PCA's loss after 20 epochs.
BATCH_SIZE = 32


def model_name(architecture, contamination=None):
    """``cnn``, or ``cnn_top0.05`` when trained with 5% top contamination."""
    if contamination is None:
        return architecture
    signal, fraction = contamination
    return f"{architecture}_{signal}{float(fraction):g}"


def package_versions():
    names = ("aejets", "tensorflow", "keras", "numpy", "pyarrow", "coffea")
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def pca_losses(fit, batches, latents):
    """Mean pixel MSE of PCA reconstructions with each of ``latents`` components."""
    latents = sorted(set(latents))
    v = fit.eigenvectors[:, : max(latents)]  # (1369, K)
    squared, projected, n = 0.0, np.zeros(v.shape[1]), 0
    for batch in batches:
        centred = batch.reshape(len(batch), -1).astype(np.float64) - fit.mean
        squared += np.sum(centred**2)  # sum over jets of |x - mean|^2
        projected += np.sum((centred @ v) ** 2, axis=0)  # (K,)
        n += len(batch)
    if n == 0:
        return {k: math.nan for k in latents}
    cumulative = np.cumsum(projected)  # (K,) captured by the first k components
    return {k: float((squared - cumulative[k - 1]) / (n * N_PIXELS)) for k in latents}


def _fit_pca(data, latent):
    fit = fit_pca(iter_images(data.train))
    losses = pca_losses(fit, iter_images(data.validation), [latent])
    # Training loss from the spectrum: the variance left in the discarded components.
    n = fit.n_images
    train_loss = float(fit.eigenvalues[latent:].sum() * (n - 1) / n / N_PIXELS)
    summary = {
        "resumed_after_epoch": None,
        "epochs_run": 0,
        "best_epoch": None,
        "final_train_loss": train_loss,
        "final_validation_loss": losses[latent],
        "history": {"loss": [], "val_loss": []},
        "eigenvalues": fit.eigenvalues[:100].tolist(),
    }
    return build_pca(fit, latent), summary


def _callbacks(epochs, steps, patience, monitor, progress):
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info(
                "epoch %d/%d: loss %.6g, val_loss %.6g",
                epoch + 1,
                epochs,
                logs.get("loss", math.nan),
                logs.get("val_loss", math.nan),
            )

    class Progress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.done = 0

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            progress(self.done, epochs * steps)

    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True
        ),
        EpochLog(),
    ]
    if progress is not None:
        callbacks.append(Progress())
    return callbacks


def _mean_image(chunks):
    total, n = np.zeros(N_PIXELS), 0
    for batch in iter_images(chunks):  # (b, 37, 37, 1)
        total += batch.reshape(len(batch), -1).sum(axis=0)
        n += len(batch)
    return total / max(n, 1)  # (1369,)


def _fit_network(
    autoencoder, data, epochs, batch_size, patience, seed, progress, checkpoint=None
):
    """Train; returns ``(autoencoder, summary)``, resumed from ``checkpoint``."""
    import keras

    resume = checkpoint.load() if checkpoint is not None else None
    if resume is None:
        set_mean_image(autoencoder, _mean_image(data.train))
        autoencoder.compile(
            optimizer=keras.optimizers.Adam(epsilon=ADAM_EPSILON), loss="mse"
        )
    else:
        autoencoder = resume.model  # compiled, with its optimizer state
    train_ds = make_tf_dataset(data.train, batch_size, shuffle=True, seed=seed)
    val_ds = None
    if data.n_validation:
        val_ds = make_tf_dataset(data.validation, batch_size)
    monitor = "val_loss" if val_ds is not None else "loss"
    steps = math.ceil(data.n_train / batch_size)
    callbacks = _callbacks(epochs, steps, patience, monitor, progress)
    if checkpoint is not None:  # after EarlyStopping (callbacks[0]): saves its state
        callbacks.append(checkpoint.callback(callbacks[0], resume))
    history = autoencoder.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=0 if resume is None else resume.epochs_done,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=0,
    ).history
    if checkpoint is not None:  # the epochs before a resume too
        history = callbacks[-1].history
    losses = [float(x) for x in history["loss"]]
    val_losses = [float(x) for x in history.get("val_loss", [math.nan] * len(losses))]
    best = int(np.nanargmin(val_losses if val_ds is not None else losses))
    return autoencoder, {
        # A resumed training continues with another shuffle order than an
        # uninterrupted one would have: the card says so.
        "resumed_after_epoch": None if resume is None else resume.epochs_done,
        "epochs_run": len(losses),
        "best_epoch": best + 1,
        "final_train_loss": losses[best],
        "final_validation_loss": val_losses[best],
        "history": {"loss": losses, "val_loss": val_losses},
    }


def train(
    architecture,
    images_dir,
    dataset,
    *,
    latent=6,
    epochs=20,
    preset="auto",
    seed=1,
    contamination=None,
    batch_size=BATCH_SIZE,
    patience=5,
    validation_fraction=0.1,
    progress=None,
    data=None,
    checkpoint_dir=None,
):
    """Train one model; returns ``(scorer, card)``.

    ``contamination`` is ``(signal_dataset, fraction)`` or None; ``progress`` is
    called as ``progress(done_steps, total_steps)``; ``data`` reuses a plan from
    :func:`models.data.prepare_training_data`. With ``checkpoint_dir`` a network
    is saved there after every epoch and a rerun resumes from it
    (:mod:`models.checkpoint`).
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"unknown model {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if latent < 1 or latent > N_PIXELS:
        raise ConfigError(f"latent dimension must lie in [1, {N_PIXELS}], got {latent}")
    if data is None:
        data = prepare_training_data(
            images_dir, dataset, contamination, validation_fraction, seed
        )
    import keras

    keras.utils.set_random_seed(seed)
    preset = choose_preset(preset) if architecture == "cnn" else None
    if architecture == "pca":
        autoencoder, summary = _fit_pca(data, latent)
    else:
        if architecture == "dense":
            autoencoder = build_dense(latent)
        else:
            autoencoder = build_cnn(latent, PRESET_FILTERS[preset])
        checkpoint = None
        if checkpoint_dir is not None:
            from models.checkpoint import Checkpoint

            key = {
                "content_hash": data.content_hash,
                "architecture": architecture,
                "latent": latent,
                "preset": preset,
                "batch_size": batch_size,
                "seed": seed,
            }
            checkpoint = Checkpoint(checkpoint_dir, key)
        autoencoder, summary = _fit_network(
            autoencoder, data, epochs, batch_size, patience, seed, progress, checkpoint
        )
    card = _card(architecture, latent, preset, autoencoder, data, images_dir, summary)
    card.update(
        epochs_requested=0 if architecture == "pca" else epochs,
        seed=seed,
        batch_size=batch_size,
        validation_fraction=validation_fraction,
        patience=patience,
    )
    return make_scorer(autoencoder), _json_safe(card)


def _json_safe(value):
    """NaN (no validation jets) as None, so that the card is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _relative(path, folder):
    try:
        return str(Path(path).relative_to(folder))
    except (TypeError, ValueError):
        return str(path)


def _card(architecture, latent, preset, autoencoder, data, images_dir, summary):
    contamination = data.contamination
    return {
        "name": model_name(
            architecture,
            None
            if contamination is None
            else (contamination["signal"], contamination["fraction"]),
        ),
        "architecture": architecture,
        "latent": latent,
        "preset": preset,
        "filters": PRESET_FILTERS[preset] if preset else None,
        "n_parameters": int(autoencoder.count_params()),
        "flops_per_jet": int(forward_flops(autoencoder)),
        "loss": "mean over 37 x 37 pixels of (image - reconstruction)^2",
        "optimizer": None
        if architecture == "pca"
        else f"Adam (Keras defaults but epsilon {ADAM_EPSILON:.3g}, see training.py)",
        "training": {
            "images_dir": str(images_dir),
            "datasets": data.datasets,
            "files": [_relative(f, images_dir) for f in data.files],
            "content_hash": data.content_hash,
            "n_train_jets": data.n_train,
            "n_validation_jets": data.n_validation,
            "split": "training pool = even Event.Number (analysis.split.is_training)",
        },
        "contamination": contamination,
        **summary,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "scorer": {
            "input": {"images": [None, 37, 37, 1]},
            "outputs": {"loss": [None], "reconstruction": [None, 37, 37, 1]},
        },
    }


def train_and_save(out_dir, architecture, images_dir, dataset, name=None, **options):
    """Train with :func:`train` and write ``out_dir/<name>/``; returns its path.

    A network is checkpointed to ``out_dir/<name>.partial/`` after every epoch; a
    rerun after a kill resumes there, and the folder goes once the model is saved.
    """
    from models.io import save_model

    name = name or model_name(architecture, options.get("contamination"))
    partial = Path(out_dir) / f"{name}.partial"
    scorer, card = train(
        architecture, images_dir, dataset, checkpoint_dir=partial, **options
    )
    card["name"] = name
    folder = save_model(scorer, Path(out_dir) / name, card)
    shutil.rmtree(partial, ignore_errors=True)
    return folder, card
