"""Training data: jet images streamed from the image Parquet of ``aejets images``.

The images of a dataset live in ``IMAGES/<dataset>/part-*.parquet``, one row per jet.
Only training-pool jets (:func:`analysis.split.is_training`) are read. Their event
numbers decide, once more by a fixed hash, which jets validate instead of train, so
that every jet of an event lands on the same side and the split needs no storage.

Nothing but event numbers is held in memory while planning: the images are read one
Parquet row group at a time (a :class:`Chunk`), shuffled through a bounded buffer in
``tf.data``, so memory stays flat for any number of jets.

Contamination (the unsupervised mode) mixes signal jets into the training data so
that they make ``fraction`` of it; the signal jets are drawn with the seed among the
training-pool jets of the signal dataset that pass its truth requirement
(``truth_pass``), and their event numbers go into the model card. Being
training-pool (even) events, they can never reach the evaluation histograms, which
take odd events only.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis.errors import ConfigError, InputError
from analysis.split import is_training
from models.scorer import IMAGE_SHAPE

__all__ = [
    "Chunk",
    "TrainingData",
    "dataset_files",
    "prepare_training_data",
    "iter_images",
    "make_tf_dataset",
    "is_validation",
    "images_from_table",
]

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """Selected rows of one row group of one Parquet file."""

    path: Path
    row_group: int
    rows: np.ndarray  # (n,) int64 indices inside the row group


@dataclass
class TrainingData:
    """Where the training and validation jets are, and how they were chosen."""

    train: list[Chunk]
    validation: list[Chunk]
    datasets: list[str]
    content_hash: str
    contamination: dict | None = None
    files: list[str] = field(default_factory=list)

    @property
    def n_train(self):
        return sum(len(c.rows) for c in self.train)

    @property
    def n_validation(self):
        return sum(len(c.rows) for c in self.validation)


def is_validation(event_number, fraction):
    """True for the ``fraction`` of events (by a fixed hash) that validate."""
    events = np.asarray(event_number).astype(np.uint64)
    # Multiplicative (Fibonacci) hashing spreads consecutive numbers uniformly.
    mixed = (events * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)
    return mixed.astype(np.float64) / float(2**53) < fraction


def dataset_files(images_dir, dataset):
    """The Parquet files of ``dataset`` under ``images_dir``, sorted."""
    folder = Path(images_dir) / dataset
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        found = sorted(
            p.name
            for p in Path(images_dir).glob("*")
            if p.is_dir() and any(p.glob("part-*.parquet"))
        )
        raise InputError(
            f"no image files {folder}/part-*.parquet; datasets with images under "
            f"{images_dir}: {', '.join(found) or 'none'}; build them with "
            f"'aejets images --dataset {dataset}'"
        )
    return files


# Column -> (test of its Arrow type, what the test wants), for the columns
# training reads; checked on each file's schema before any row is read.
_COLUMN_TYPES = {
    "event": (pa.types.is_integer, "an integer (int64)"),
    "truth_pass": (pa.types.is_boolean, "a boolean"),
    "image": (
        lambda t: (
            _is_list(t)
            and _is_list(t.value_type)
            and pa.types.is_floating(t.value_type.value_type)
        ),
        "37 x 37 nested lists of floats (list<list<float>>)",
    ),
}


def _is_list(arrow_type):
    """A list type; a fixed-size one (as awkward writes images) of length 37."""
    if pa.types.is_fixed_size_list(arrow_type):
        return arrow_type.list_size == IMAGE_SHAPE[0]
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


def _check_schema(parquet, path, names):
    """InputError naming ``path`` and the column if one of ``names`` is unusable."""
    schema = parquet.schema_arrow
    for name in names:
        test, wanted = _COLUMN_TYPES[name]
        if name not in schema.names:
            raise InputError(
                f"{path} has no column {name!r} (it has {', '.join(schema.names)}); "
                "rebuild the images with 'aejets images'"
            )
        found = schema.field(name).type
        if not test(found):
            raise InputError(
                f"{path}: column {name!r} has type {found}; expected {wanted}; "
                "rebuild the images with 'aejets images'"
            )


def _read_column(parquet, path, row_group, name):
    try:
        return parquet.read_row_group(row_group, columns=[name]).column(name)
    except (KeyError, pa.ArrowException) as err:
        raise InputError(
            f"{path} row group {row_group} has no readable column {name!r}: {err}; "
            "rebuild the images with 'aejets images'"
        ) from err


def _scan(files, signal=False):
    """(path, row group, event numbers, truth_pass) of every row group."""
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"cannot read image file {path}: {err}") from err
        _check_schema(parquet, path, ["event", "image"] + ["truth_pass"] * signal)
        for row_group in range(parquet.num_row_groups):
            events = _read_column(parquet, path, row_group, "event").to_numpy()
            passing = np.ones(len(events), bool)
            if signal:
                column = _read_column(parquet, path, row_group, "truth_pass")
                passing = column.to_numpy(zero_copy_only=False).astype(bool)
            yield path, row_group, events.astype(np.int64), passing


def _split_chunks(scanned, validation_fraction, keep=None):
    train, validation = [], []
    for index, (path, row_group, events, passing) in enumerate(scanned):
        use = is_training(events) & passing
        if keep is not None:
            use &= keep[index]
        val = is_validation(events, validation_fraction)
        for target, mask in ((train, use & ~val), (validation, use & val)):
            rows = np.flatnonzero(mask)
            if len(rows):
                target.append(Chunk(path, row_group, rows))
    return train, validation


def _parse_contamination(contamination):
    signal, fraction = contamination
    fraction = float(fraction)
    if not 0 < fraction < 1:
        raise ConfigError(
            f"contamination fraction must lie in (0, 1), got {fraction} for {signal!r}"
        )
    return signal, fraction


def _choose_signal(scanned, n_wanted, seed, signal):
    """Per row group boolean masks selecting ``n_wanted`` signal jets at random."""
    pools = [is_training(ev) & ok for _, _, ev, ok in scanned]
    n_available = int(sum(p.sum() for p in pools))
    if n_available < n_wanted:
        raise ConfigError(
            f"contamination needs {n_wanted} training-pool jets of {signal!r} that "
            f"pass its truth requirement, but only {n_available} exist; generate more "
            f"{signal} events or lower the fraction"
        )
    rng = np.random.default_rng(seed)
    chosen = np.zeros(n_available, bool)
    chosen[rng.choice(n_available, size=n_wanted, replace=False)] = True
    keep, start = [], 0
    for pool in pools:
        mask = np.zeros(len(pool), bool)
        mask[np.flatnonzero(pool)] = chosen[start : start + pool.sum()]
        start += pool.sum()
        keep.append(mask)
    events = np.concatenate(
        [ev[m] for (_, _, ev, _), m in zip(scanned, keep, strict=True)]
    )
    return keep, np.sort(events)


def content_hash(files, selection):
    """sha256 of the files' names and bytes and of the row selection."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{Path(path).parent.name}/{Path(path).name}\0".encode())
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps(selection, sort_keys=True).encode())
    return digest.hexdigest()


def prepare_training_data(
    images_dir, dataset, contamination=None, validation_fraction=0.1, seed=1
):
    """Plan the training and validation jets of ``dataset`` (plus contamination)."""
    if not 0 < validation_fraction < 1:
        raise ConfigError(
            f"validation fraction must lie in (0, 1), got {validation_fraction}"
        )
    files = dataset_files(images_dir, dataset)
    train, validation = _split_chunks(list(_scan(files)), validation_fraction)
    datasets = [dataset]
    selection = {"split": "even events", "validation_fraction": validation_fraction}
    record = None
    if contamination is not None:
        signal, fraction = _parse_contamination(contamination)
        signal_files = dataset_files(images_dir, signal)
        scanned = list(_scan(signal_files, signal=True))
        n_background = sum(len(c.rows) for c in train + validation)
        # n_signal / (n_background + n_signal) = fraction
        n_signal = int(round(fraction / (1 - fraction) * n_background))
        keep, events = _choose_signal(scanned, n_signal, seed, signal)
        signal_train, signal_val = _split_chunks(scanned, validation_fraction, keep)
        train += signal_train
        validation += signal_val
        files = files + signal_files
        datasets.append(signal)
        record = {
            "signal": signal,
            "fraction": fraction,
            "n_signal_jets": n_signal,
            "signal_events": events.tolist(),
        }
        selection["contamination"] = record
    if not train:
        raise InputError(
            f"dataset {dataset!r} under {images_dir} has no training-pool jets (even "
            "event numbers) outside the validation split; generate more events"
        )
    data = TrainingData(
        train=train,
        validation=validation,
        datasets=datasets,
        content_hash=content_hash(files, selection),
        contamination=record,
        files=[str(p) for p in files],
    )
    log.info(
        "training data %s: %d training and %d validation jets (hash %s)",
        "+".join(datasets),
        data.n_train,
        data.n_validation,
        data.content_hash[:12],
    )
    return data


def images_from_table(column, where="images"):
    """The ``image`` column (nested 37 x 37 lists) as float32 (n, 37, 37, 1)."""
    n = len(column)
    flat = pc.list_flatten(pc.list_flatten(column))  # (n * 37 * 37,)
    values = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != n * np.prod(IMAGE_SHAPE):
        raise InputError(
            f"{where}: image column holds {values.size} values for {n} jets; expected "
            f"{n} x 37 x 37; rebuild the images with 'aejets images'"
        )
    return values.reshape(n, *IMAGE_SHAPE)  # (n, 37, 37, 1)


def iter_images(chunks, rng=None):
    """Yield the images (n, 37, 37, 1) of each chunk; chunk order shuffled by ``rng``."""
    order = np.arange(len(chunks)) if rng is None else rng.permutation(len(chunks))
    handles = {}
    for index in order:
        chunk = chunks[index]
        if chunk.path not in handles:
            handles[chunk.path] = pq.ParquetFile(chunk.path)
        column = _read_column(handles[chunk.path], chunk.path, chunk.row_group, "image")
        column = column.take(chunk.rows)
        yield images_from_table(column, f"{chunk.path} row group {chunk.row_group}")


def make_tf_dataset(chunks, batch_size, shuffle=False, seed=1, buffer=10_000):
    """A ``tf.data.Dataset`` of (images, images) batches streamed from ``chunks``."""
    import tensorflow as tf

    rng = np.random.default_rng(seed) if shuffle else None
    n_jets = sum(len(c.rows) for c in chunks)

    def generate():  # called anew each epoch; rng advances, so orders differ
        yield from iter_images(chunks, rng)

    spec = tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
    dataset = dataset.unbatch()
    if shuffle:
        size = max(1, min(buffer, n_jets))
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda x: (x, x))
    # from_generator hides the length; stating it keeps Keras from warning that the
    # data "ran out" at the end of the first epoch.
    n_batches = -(-n_jets // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)
