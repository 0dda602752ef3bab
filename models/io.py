"""Saving and loading scorers: the model folder read by scoring and serving.

A model folder ``MODELS/<name>/`` holds

- ``model.keras``: the scorer (see :mod:`models.scorer`), loadable with
  ``tf.keras.models.load_model`` without custom objects;
- ``saved_model/``: the same scorer as a TensorFlow SavedModel whose
  ``serving_default`` signature takes ``images`` (batch, 37, 37, 1) float32 and
  returns ``loss`` (batch,) and ``reconstruction`` (batch, 37, 37, 1);
- ``card.json``: the model card (architecture, latent dimension, training data and
  its content hash, contamination, losses, seed, package versions).
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from analysis.errors import InputError, OutputError
from analysis.fileset import publish, write_json_atomic
from models.scorer import IMAGE_SHAPE

__all__ = [
    "save_model",
    "load_scorer",
    "load_card",
    "score_images",
    "check_images",
    "MODEL_FILE",
    "SAVED_MODEL_DIR",
    "CARD_FILE",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
CARD_FILE = "card.json"


def save_model(scorer, model_dir, card):
    """Write ``model.keras``, ``saved_model/`` and ``card.json`` into ``model_dir``.

    The files are written into a temporary sibling folder that then replaces
    ``model_dir``, so that a reader never sees a half-written model.
    """
    model_dir = Path(model_dir)
    try:
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent)
        )
    except OSError as err:
        raise OutputError(
            f"cannot create model folder {model_dir}: {err.strerror}; "
            "choose a writable --out folder"
        ) from err
    try:
        scorer.save(staging / MODEL_FILE)
        scorer.export(
            str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False
        )
        write_json_atomic(staging / CARD_FILE, card)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        publish(staging)
        staging.rename(model_dir)
    except OSError as err:
        raise OutputError(f"cannot write model folder {model_dir}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved model %s", model_dir)
    return model_dir


def _require(model_dir, name):
    path = Path(model_dir) / name
    if not path.exists():
        raise InputError(
            f"model folder {model_dir} has no {name}; "
            "train the model first with 'aejets train --out ...'"
        )
    return path


def load_card(model_dir):
    """The model card of ``model_dir`` as a dict."""
    path = _require(model_dir, CARD_FILE)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"model card {path} is not valid JSON: {err}") from err


class SavedModelScorer:
    """The ``serving_default`` signature of an exported scorer, called on batches."""

    def __init__(self, path):
        import tensorflow as tf

        self.path = path
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures["serving_default"]

    def __call__(self, images):
        outputs = self._signature(images=self._tf.constant(images))
        return {name: value.numpy() for name, value in outputs.items()}


def load_scorer(model_dir, backend="keras"):
    """Load the scorer of ``model_dir``.

    ``backend="keras"`` returns the Keras model from ``model.keras``;
    ``backend="saved_model"`` returns a callable around the SavedModel signature.
    Both are accepted by :func:`score_images`.
    """
    if backend == "keras":
        import keras

        path = _require(model_dir, MODEL_FILE)
        try:
            return keras.models.load_model(path)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load Keras model {path}: {err}") from err
    if backend == "saved_model":
        path = _require(model_dir, SAVED_MODEL_DIR)
        try:
            return SavedModelScorer(path)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"cannot load SavedModel {path}: {err}") from err
    raise ValueError(f"backend must be 'keras' or 'saved_model', got {backend!r}")


def check_images(images):
    """``images`` as float32 (batch, 37, 37, 1); (batch, 37, 37) gains the channel."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3 and images.shape[1:] == IMAGE_SHAPE[:2]:
        images = images[..., np.newaxis]  # (batch, 37, 37) -> (batch, 37, 37, 1)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise InputError(
            f"jet images must have shape (batch, {', '.join(map(str, IMAGE_SHAPE))}), "
            f"got {images.shape}; build them with 'aejets images' (37 x 37 pixels, "
            "one channel)"
        )
    return images


def score_images(scorer, images, batch_size=1024):
    """Reconstruction loss (n,) and reconstruction (n, 37, 37, 1) as numpy arrays."""
    images = check_images(images)  # (n, 37, 37, 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    predict = getattr(scorer, "predict_on_batch", scorer)
    losses, reconstructions = [], []
    for start in range(0, len(images), batch_size):
        outputs = predict(images[start : start + batch_size])
        losses.append(np.asarray(outputs["loss"]))  # (b,)
        reconstructions.append(np.asarray(outputs["reconstruction"]))
    if not losses:
        return np.zeros(0, np.float32), np.zeros((0, *IMAGE_SHAPE), np.float32)
    return np.concatenate(losses), np.concatenate(reconstructions)
