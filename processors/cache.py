"""Per-file outputs of a run kept on disk, so that a rerun computes only what is missing.

:class:`OutputCache` stores the accumulated output of each file that completed
without a failed chunk as ``<folder>/<hash>.pkl`` (written under a temporary name,
then renamed). The hash covers the caller's ``key`` (what the processor computes:
models, settings), the dataset, its metadata (cross sections enter the weights),
and the file with its uuid and chunks; anything else is another entry. A file
whose graph failed (a server gone, a worker lost too often) has no entry, so a
rerun with the same cache computes that file only and reuses the rest, in the
same order, giving the same sums.

The entries are pickles: use a cache folder only this project writes.
"""

import hashlib
import json
import logging
import pickle
import shutil
from pathlib import Path

from analysis.fileset import atomic_path

__all__ = ["OutputCache"]

log = logging.getLogger(__name__)


class OutputCache:
    """The cached per-file outputs of one kind of run (``key``) in ``folder``."""

    def __init__(self, folder, key):
        self.folder = Path(folder)
        self.key = key

    def load(self, dataset, file, spec, metadata):
        """The stored output of this file, or None."""
        path = self._path(dataset, file, spec, metadata)
        if not path.is_file():
            return None
        try:
            with path.open("rb") as handle:
                return pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as err:
            log.warning("recomputing %s: its cached output %s: %s", file, path, err)
            return None

    def store(self, dataset, file, spec, metadata, output):
        """Keep ``output`` of this file for a later run."""
        path = self._path(dataset, file, spec, metadata)
        advice = "choose a writable --out"
        with atomic_path(path, advice) as partial, partial.open("wb") as out:
            pickle.dump(output, out)

    def clear(self):
        """Forget every stored output."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, dataset, file, spec, metadata):
        identity = {
            "key": self.key,
            "dataset": dataset,
            "metadata": metadata,
            "file": str(file),
            "object_path": spec.get("object_path"),
            "uuid": spec.get("uuid"),
            "steps": [[int(a), int(b)] for a, b in spec.get("steps") or []],
        }
        text = json.dumps(identity, sort_keys=True, default=str)
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.pkl"
