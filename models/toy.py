"""Toy jet images: stand-ins for the image processor's output in tests and benchmarks.

These are NOT physics: a QCD-like jet is one Gaussian blob at the centre with a few
soft deposits, a top-like jet adds two more prongs along the vertical (major) axis.
They are written with exactly the column layout of ``aejets images`` so that the
training code reads them like real images.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["toy_images", "write_toy_parquet", "IMAGE_SCHEMA"]

SIZE = 37

IMAGE_SCHEMA = pa.schema(
    [
        ("image", pa.list_(pa.list_(pa.float32()))),
        ("pt", pa.float64()),
        ("eta", pa.float64()),
        ("phi", pa.float64()),
        ("mass", pa.float64()),
        ("n_constituents", pa.int32()),
        ("event", pa.int64()),
        ("weight", pa.float64()),
        ("dataset", pa.string()),
        ("truth_matched", pa.bool_()),
        ("truth_merged", pa.bool_()),
        ("truth_pass", pa.bool_()),
    ]
)


def _blob(centre_row, centre_col, width):
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]  # (37, 37) each
    r2 = (rows - centre_row[:, None, None]) ** 2 + (
        cols - centre_col[:, None, None]
    ) ** 2
    return np.exp(-r2 / (2 * width[:, None, None] ** 2))  # (n, 37, 37)


def toy_images(n, kind, rng):
    """``n`` unit-sum toy images (n, 37, 37) float32 of ``kind`` 'qcd' or 'top'."""
    centre = np.full(n, SIZE // 2, dtype=float)
    images = _blob(centre, centre, rng.uniform(0.8, 1.5, n))  # (n, 37, 37)
    if kind == "top":
        for low, high in ((4, 9), (-9, -4)):
            offset = rng.uniform(low, high, n)
            sideways = rng.normal(0, 2, n)
            share = rng.uniform(0.3, 0.8, n)
            images += share[:, None, None] * _blob(
                centre + offset, centre + sideways, rng.uniform(0.7, 1.2, n)
            )
    elif kind != "qcd":
        raise ValueError(f"toy image kind must be 'qcd' or 'top', got {kind!r}")
    # A few soft deposits anywhere in the window.
    for _ in range(4):
        where = rng.integers(0, SIZE, size=(n, 2))
        images[np.arange(n), where[:, 0], where[:, 1]] += rng.uniform(0, 0.3, n)
    images /= images.sum(axis=(1, 2), keepdims=True)
    return images.astype(np.float32)


def write_toy_parquet(folder, dataset, n_jets, kind, seed=0, files=1, row_group=256):
    """Write ``folder/<dataset>/part-*.parquet`` of toy jets (one jet per event)."""
    rng = np.random.default_rng(seed)
    target = folder / dataset
    target.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n_jets, files + 1).astype(int)
    for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        n = stop - start
        images = toy_images(n, kind, rng)  # (n, 37, 37)
        columns = {
            "image": [image.tolist() for image in images],
            "pt": rng.uniform(800, 900, n),
            "eta": rng.uniform(-1, 1, n),
            "phi": rng.uniform(-np.pi, np.pi, n),
            "mass": rng.uniform(20, 200, n)
            if kind == "qcd"
            else rng.normal(175, 15, n),
            "n_constituents": rng.integers(20, 120, n).astype(np.int32),
            "event": np.arange(start, stop, dtype=np.int64),
            "weight": np.ones(n),
            "dataset": [dataset] * n,
            "truth_matched": np.ones(n, bool),
            "truth_merged": np.ones(n, bool),
            "truth_pass": np.ones(n, bool),
        }
        table = pa.table(columns, schema=IMAGE_SCHEMA)
        pq.write_table(
            table, target / f"part-{index:04d}.parquet", row_group_size=row_group
        )
    return target
