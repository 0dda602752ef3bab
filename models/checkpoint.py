"""Checkpoints of a network in training, so that a killed training resumes.

After every epoch :class:`Checkpoint` writes into its folder (``OUT/<name>.partial/``
for ``aejets train``), each file under a temporary name and then renamed:

- ``model.keras``: the autoencoder with its optimizer state;
- ``best.npz``: the weights of the best epoch so far (early stopping restores them);
- ``state.json``, last: the epochs done, the loss history, the early-stopping
  counters and the key of the training (data content hash and settings).

A rerun with the same key loads them and continues with the next epoch; a folder
with another key (other images or settings), or an incomplete one, is ignored and
training starts afresh. A resumed training continues from the same weights and
optimizer state, but its later batches are shuffled in another order than an
uninterrupted run's: the result is equivalent, not bit-identical.
"""

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from analysis.errors import OutputError
from analysis.fileset import atomic_path

__all__ = ["Checkpoint", "Resume"]

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
BEST_FILE = "best.npz"


@dataclass
class Resume:
    """What a checkpoint restores: the model and where training stood."""

    model: object  # compiled keras.Model with its optimizer state
    epochs_done: int
    history: dict  # {"loss": [...], "val_loss": [...]}
    early_stopping: dict  # {"wait", "best", "best_epoch"}
    best_weights: list | None


class Checkpoint:
    """The checkpoint folder of one training, identified by ``key`` (a dict)."""

    def __init__(self, folder, key):
        self.folder = Path(folder)
        self.key = json.loads(json.dumps(key))  # as it reads back from JSON

    def load(self):
        """A :class:`Resume` if the folder holds a checkpoint of this key, else None."""
        state_path = self.folder / STATE_FILE
        if not state_path.is_file():
            return None
        try:
            state = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring the checkpoint %s: %s", state_path, err)
            return None
        if state.get("key") != self.key:
            log.warning(
                "ignoring the checkpoint in %s: it is of other images or settings",
                self.folder,
            )
            return None
        model = keras.models.load_model(self.folder / MODEL_FILE)
        best = None
        if (self.folder / BEST_FILE).is_file():
            with np.load(self.folder / BEST_FILE) as arrays:
                best = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        log.info("resuming from %s after epoch %d", self.folder, state["epochs_done"])
        return Resume(
            model=model,
            epochs_done=int(state["epochs_done"]),
            history=state["history"],
            early_stopping=state["early_stopping"],
            best_weights=best,
        )

    def callback(self, early_stopping, resume=None):
        """A Keras callback that saves each epoch and restores early stopping."""
        return _SaveEachEpoch(self, early_stopping, resume)

    def remove(self):
        """Delete the folder once the model is saved under its final name."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def save(self, model, epochs_done, history, early_stopping, best_changed):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic(self.folder / MODEL_FILE, model.save)
            if best_changed and early_stopping.best_weights is not None:
                _atomic(
                    self.folder / BEST_FILE,
                    lambda p: _save_npz(p, early_stopping.best_weights),
                )
            state = {
                "key": self.key,
                "epochs_done": epochs_done,
                "history": history,
                "early_stopping": {
                    "wait": int(early_stopping.wait),
                    "best": _float_or_none(early_stopping.best),
                    "best_epoch": int(early_stopping.best_epoch),
                },
            }
            _atomic(self.folder / STATE_FILE, lambda p: _write_json(p, state))
        except OSError as err:
            raise OutputError(
                f"cannot write the training checkpoint in {self.folder}: "
                f"{err.strerror or err}; choose a writable --out"
            ) from err


def _save_npz(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, *arrays)


def _write_json(path, payload):
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def _float_or_none(value):
    return None if value is None else float(value)


def _atomic(path, write):
    """``write(temporary path)`` beside ``path``, then rename it to ``path``."""
    # The temporary keeps the final suffix: Keras picks the format by it.
    with atomic_path(path, "choose a writable --out", suffix=path.suffix) as partial:
        write(str(partial))


class _SaveEachEpoch(keras.callbacks.Callback):
    """Saves after each epoch; on a resume, restores the early-stopping state.

    It must come after the ``EarlyStopping`` callback in the list, so that the
    early-stopping state it saves includes the epoch just finished.
    """

    def __init__(self, checkpoint, early_stopping, resume):
        super().__init__()
        self.checkpoint, self.early_stopping, self.resume = (
            checkpoint,
            early_stopping,
            resume,
        )
        self.history = {"loss": [], "val_loss": []}
        if resume is not None:
            self.history = {k: list(v) for k, v in resume.history.items()}

    def on_train_begin(self, logs=None):
        if self.resume is None:
            return
        stopping, saved = self.early_stopping, self.resume.early_stopping
        stopping.wait = saved["wait"]
        stopping.best = saved["best"]
        stopping.best_epoch = saved["best_epoch"]
        stopping.best_weights = self.resume.best_weights

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for name in self.history:
            self.history[name].append(float(logs.get(name, float("nan"))))
        self.checkpoint.save(
            self.model,
            epoch + 1,
            self.history,
            self.early_stopping,
            best_changed=self.early_stopping.best_epoch == epoch,
        )
