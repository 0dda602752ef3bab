"""Choosing the latent dimension without signal (the study's item on k).

Two views, both on background only: the PCA eigenvalue spectrum ("scree": where do
the eigenvalues stop falling) and the validation loss against k for each model (where
does it stop improving). :func:`latent_scan` computes both on one training plan and
can write them as ``latent_scan_<name>.json`` and ``.png``.
"""

import logging
from pathlib import Path

import numpy as np

from analysis.fileset import write_json_atomic
from models.data import iter_images, prepare_training_data
from models.pca import fit_pca
from models.training import ARCHITECTURES, BATCH_SIZE, _json_safe, pca_losses, train

__all__ = ["latent_scan", "plot_latent_scan"]

log = logging.getLogger(__name__)

N_EIGENVALUES = 100  # the spectrum is flat noise long before 1369


def _pca_scan(data, latents):
    fit = fit_pca(iter_images(data.train))
    losses = pca_losses(fit, iter_images(data.validation), latents)
    eigenvalues = fit.eigenvalues[:N_EIGENVALUES]
    explained = np.cumsum(fit.eigenvalues) / max(fit.eigenvalues.sum(), 1e-300)
    return {
        "eigenvalues": eigenvalues.tolist(),
        "explained_fraction": explained[:N_EIGENVALUES].tolist(),
        "validation_loss": [losses[k] for k in latents],
        "train_loss": [
            float(fit.eigenvalues[k:].sum() * (fit.n_images - 1) / fit.n_images / 1369)
            for k in latents
        ],
    }


def latent_scan(
    images_dir,
    dataset,
    latents,
    architectures=ARCHITECTURES,
    *,
    epochs=10,
    preset="auto",
    seed=1,
    batch_size=BATCH_SIZE,
    patience=3,
    validation_fraction=0.1,
    out_dir=None,
    name=None,
    progress=None,
):
    """Validation loss against latent dimension for each architecture.

    Returns ``{"latents": [...], "pca": {"eigenvalues", "explained_fraction",
    "validation_loss", "train_loss"}, "dense"|"cnn": {"validation_loss",
    "train_loss", "epochs_run"}, ...}`` with one loss per latent dimension.
    ``progress(done, total)`` counts trained models. With ``out_dir``, writes
    ``latent_scan_<name>.json`` and ``.png`` there (name: the architectures joined).
    """
    latents = sorted({int(k) for k in latents})
    data = prepare_training_data(
        images_dir, dataset, validation_fraction=validation_fraction, seed=seed
    )
    result = {
        "dataset": dataset,
        "content_hash": data.content_hash,
        "n_train_jets": data.n_train,
        "n_validation_jets": data.n_validation,
        "latents": latents,
        "epochs": epochs,
        "seed": seed,
        "pca": _pca_scan(data, latents),
    }
    networks = [a for a in architectures if a != "pca"]
    total, done = len(networks) * len(latents), 0
    for architecture in networks:
        rows = {"validation_loss": [], "train_loss": [], "epochs_run": []}
        for k in latents:
            _, card = train(
                architecture, images_dir, dataset, latent=k, epochs=epochs,
                preset=preset, seed=seed, batch_size=batch_size, patience=patience,
                data=data,
            )  # fmt: skip
            rows["validation_loss"].append(card["final_validation_loss"])
            rows["train_loss"].append(card["final_train_loss"])
            rows["epochs_run"].append(card["epochs_run"])
            rows["preset"] = card["preset"]
            log.info(
                "latent scan %s k=%d: validation loss %.6g",
                architecture,
                k,
                card["final_validation_loss"],
            )
            done += 1
            if progress is not None:
                progress(done, total)
        result[architecture] = rows
    result = _json_safe(result)
    if out_dir is not None:
        stem = f"latent_scan_{name or '_'.join(architectures)}"
        out_dir = Path(out_dir)
        write_json_atomic(out_dir / f"{stem}.json", result)
        plot_latent_scan(result, out_dir / f"{stem}.png")
    return result


def plot_latent_scan(result, path):
    """Scree plot and validation loss against k, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (scree, losses) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    eigenvalues = np.asarray(result["pca"]["eigenvalues"])
    scree.semilogy(np.arange(1, len(eigenvalues) + 1), eigenvalues, ".-")
    scree.set(
        xlabel="component", ylabel="PCA eigenvalue", title="scree (training jets)"
    )
    for architecture in ARCHITECTURES:
        if architecture in result:
            values = np.array(result[architecture]["validation_loss"], dtype=float)
            losses.semilogy(result["latents"], values, "o-", label=architecture)
    losses.set(
        xlabel="latent dimension k",
        ylabel="validation loss (pixel MSE)",
        title=f"{result['dataset']}: loss against k",
    )
    losses.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
