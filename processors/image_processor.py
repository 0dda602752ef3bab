"""Selected fat jets and their images from Delphes NanoEvents, eager or on dask.

:func:`jets_and_images` is the reusable piece (the score processor uses it too):
from NanoEvents (``DelphesSchema``, any mode) it reads only the branches it needs,
maps one function over each chunk of events (``dask_awkward.map_partitions`` in
dask mode, a direct call otherwise, so both modes run the same code) and returns

- ``jets``: (jets,) record with ``pt``, ``eta``, ``phi``, ``mass`` (float64),
  ``n_constituents`` (int32), ``event`` (int64, Event.Number), ``weight``
  (float64, Event.Weight), ``truth_matched``, ``truth_merged``, ``truth_pass``;
- ``images``: (jets, 37, 37) float32 (:mod:`processors.images`);
- ``constituents_dropped``: (events,) int64, constituents removed by cleaning.

Per chunk: constituents -> cleaning -> anti-kT -> selection -> truth -> images
(:mod:`processors.jets`, :mod:`processors.images`).

:class:`ImageProcessor` is the coffea processor of ``aejets images``: it adds the
counts of ``report.json`` and, given ``out_dir``, writes one Parquet file per chunk
(under a temporary name, then renamed) on the worker that built it, so memory is
bounded by the chunk size.
"""

import hashlib
import json
import logging
from pathlib import Path
from typing import NamedTuple

import awkward as ak
import numpy as np
from coffea import processor

from analysis.errors import InputError, OutputError
from analysis.fileset import atomic_path
from processors.images import N_PIXELS, jet_images
from processors.jets import (
    JetConfig,
    clean_flat,
    cluster_momenta,
    four_momenta_flat,
    jet_constituents_flat,
    truth_flags,
)

__all__ = [
    "JET_FIELDS",
    "ChunkWriter",
    "ImageProcessor",
    "JetImages",
    "clear_parts",
    "jets_and_images",
    "part_tag",
    "write_report",
]

log = logging.getLogger(__name__)

JET_FIELDS = {
    "pt": np.float64,
    "eta": np.float64,
    "phi": np.float64,
    "mass": np.float64,
    "n_constituents": np.int32,
    "event": np.int64,
    "weight": np.float64,
    "truth_matched": np.bool_,
    "truth_merged": np.bool_,
    "truth_pass": np.bool_,
}
PARTICLE_FIELDS = ("PID", "D1", "D2", "Eta", "Phi")
# Why a jet with pT above the window's lower edge is not selected (processors.jets).
REJECTIONS = ("rank", "pt", "eta")
# Leaves read as integers; every other leaf the jets need is floating point, as
# Delphes writes it. A file from elsewhere with other types is refused, not cast.
INTEGER_LEAVES = ("Number", "PID", "D1", "D2")


class JetImages(NamedTuple):
    """What :func:`jets_and_images` returns (awkward or dask-awkward arrays)."""

    jets: object  # (jets,) record of JET_FIELDS
    images: object  # (jets, 37, 37) float32
    constituents_dropped: object  # (events,) int64
    jets_rejected: object = None  # (events,) record: rank, pt, eta (int64 each)


def jets_and_images(events, config=None, process=None):
    """Selected jets, their images and the cleaning counts of ``events``.

    ``process`` names the signal process (a key of ``config.resonance_pid``) whose
    truth flags are computed; ``None`` (background) sets them all True and reads
    no Particle branch. Works on eager, virtual and dask NanoEvents alike.
    """
    config = config or JetConfig()
    resonance = config.resonance_for(process) if process is not None else None
    columns = input_columns(events, config, with_particles=resonance is not None)
    function = _ChunkFunction(tuple(columns), config, resonance)
    arrays = list(columns.values())

    if _is_dask(arrays[0]):
        import dask_awkward as dak

        per_event = dak.map_partitions(
            function, *arrays, label="jets-and-images", meta=_typetracer(_empty())
        )
        jets = dak.flatten(per_event["jets"], axis=1)
    else:
        per_event = function(*arrays)
        jets = ak.flatten(per_event["jets"], axis=1)
    return JetImages(
        jets=jets[list(JET_FIELDS)],
        images=jets["image"],
        constituents_dropped=per_event["constituents_dropped"],
        jets_rejected=per_event["jets_rejected"],
    )


def input_columns(events, config, with_particles):
    """{"Collection.Field": array} of every branch the jets need.

    A missing collection or field raises InputError naming the file, the branch
    and the collections the file has; so does a leaf of an unexpected type (an
    integer where Delphes writes a float, or the reverse).
    """
    wanted = [("Event", "Number"), ("Event", "Weight")]
    for source in config.sources:
        wanted += [(source.name, source.pt), (source.name, "Eta"), (source.name, "Phi")]
        if source.mass is not None:
            wanted.append((source.name, source.mass))
    if with_particles:
        wanted += [(config.particle_collection, f) for f in PARTICLE_FIELDS]

    columns = {}
    for collection, field in wanted:
        if collection not in events.fields or field not in events[collection].fields:
            raise InputError(_missing_message(events, collection, field, config))
        column = events[collection][field]
        _check_leaf_type(events, collection, field, column)
        columns[f"{collection}.{field}"] = column
    return columns


def _check_leaf_type(events, collection, field, column):
    form = column.form if _is_dask(column) else column.layout.form
    while hasattr(form, "content"):  # (events, var) lists -> their leaf
        form = form.content
    primitive = getattr(form, "primitive", None) or type(form).__name__
    integer = field in INTEGER_LEAVES
    if not primitive.lstrip("u").startswith("int" if integer else "float"):
        raise InputError(
            f"{_file_of(events)}: branch {collection}/{collection}.{field} holds "
            f"{primitive}; expected {'integers' if integer else 'floating point'} "
            "as Delphes writes it; convert the file or make it with 'aejets generate'"
        )


def _file_of(events):
    metadata = getattr(events, "metadata", None) or {}
    return metadata.get("filename") or (
        f"a file of dataset {metadata['dataset']!r}"
        if metadata.get("dataset")
        else "the input"
    )


def _missing_message(events, collection, field, config):
    file = _file_of(events)
    have = sorted(f for f in events.fields if not f.endswith(".offsets"))
    hint = ""
    if collection in (s.name for s in config.sources):
        other = "towers" if config.constituents == "eflow" else "eflow"
        hint = f"; try --constituents {other}, or a card that writes {collection}"
    return (
        f"{file}: branch {collection}/{collection}.{field} is missing; the file has "
        f"the collections {', '.join(have)}{hint}"
    )


def _is_dask(array):
    return type(array).__module__.startswith("dask_awkward")


class _ChunkFunction:
    """The eager work on one chunk; picklable, so dask workers can run it."""

    def __init__(self, names, config, resonance):
        self.names, self.config, self.resonance = names, config, resonance

    def __call__(self, *arrays):
        if ak.backend(arrays[0]) == "typetracer":
            # Column optimization: every input branch is needed, nothing else.
            for array in arrays:
                ak.typetracer.touch_data(array)
            return _typetracer(_empty())
        return _chunk(dict(zip(self.names, arrays, strict=True)), self)


def _chunk(columns, spec):
    config = spec.config
    counts, flat = _constituents(columns, config)  # (events,), 4 x (constituents,)
    sizes, (pt, eta, phi, mass), dropped = clean_flat(counts, *flat)
    jets = cluster_momenta(four_momenta_flat(sizes, pt, eta, phi, mass), config)

    counts = ak.to_numpy(ak.num(jets["pt"], axis=1))  # (events,): selected jets
    c_pt, c_eta, c_phi = jet_constituents_flat(jets["index"], sizes, pt, eta, phi)
    n_constituents = ak.to_numpy(ak.num(c_pt, axis=1))  # (jets,)
    jet_eta = ak.to_numpy(ak.flatten(jets["eta"]))
    jet_phi = ak.to_numpy(ak.flatten(jets["phi"]))
    images = jet_images(jet_eta, jet_phi, c_pt, c_eta, c_phi)  # (jets, 37, 37)

    if spec.resonance is None:
        matched = merged = np.ones(len(jet_eta), dtype=bool)
    else:
        particles = ak.zip(
            {f: columns[f"{config.particle_collection}.{f}"] for f in PARTICLE_FIELDS}
        )
        n_daughters = config.n_daughters[_process_of(config, spec.resonance)]
        flags = truth_flags(
            jets["eta"],
            jets["phi"],
            particles,
            spec.resonance,
            n_daughters,
            config.truth_radius,
        )
        matched, merged = (ak.to_numpy(ak.flatten(f)) for f in flags)

    flat = {
        "pt": ak.to_numpy(ak.flatten(jets["pt"])),
        "eta": jet_eta,
        "phi": jet_phi,
        "mass": ak.to_numpy(ak.flatten(jets["mass"])),
        "n_constituents": n_constituents,
        "event": np.repeat(ak.to_numpy(columns["Event.Number"]), counts),
        "weight": np.repeat(ak.to_numpy(columns["Event.Weight"]), counts),
        "truth_matched": matched,
        "truth_merged": merged,
        "truth_pass": matched & merged,
    }
    return _assemble(flat, images, counts, dropped, jets["rejected"])


def _process_of(config, resonance):
    return next(p for p, pid in config.resonance_pid.items() if pid == resonance)


def _constituents(columns, config):
    """Constituents of all configured collections, flat.

    Returns ``(counts (events,), (pt, eta, phi, mass))`` with each quantity a
    (constituents,) float64 numpy array grouped by event: per event the first
    collection's constituents, then the second's, and so on.
    """
    sources = []
    for source in config.sources:
        pt = columns[f"{source.name}.{source.pt}"]
        counts = ak.to_numpy(ak.num(pt, axis=1))  # (events,)
        values = [pt, columns[f"{source.name}.Eta"], columns[f"{source.name}.Phi"]]
        if source.mass:
            values.append(columns[f"{source.name}.{source.mass}"])
        flat = [ak.to_numpy(ak.flatten(v, axis=1)) for v in values]
        if not source.mass:
            flat.append(np.zeros(len(flat[0])))
        sources.append((counts, flat))

    total = sum(counts for counts, _ in sources)  # (events,)
    start = np.cumsum(total) - total  # where each event begins in the merged list
    merged = [np.empty(int(total.sum()), np.float64) for _ in range(4)]
    before = np.zeros_like(total)  # constituents of earlier collections
    for counts, flat in sources:
        own_start = np.cumsum(counts) - counts
        target = np.repeat(start + before - own_start, counts) + np.arange(
            int(counts.sum())
        )
        for out, values in zip(merged, flat, strict=True):
            out[target] = values
        before = before + counts
    return total, tuple(merged)


def _assemble(flat, images, counts, dropped, rejected):
    """The per-event record: constituents_dropped, jets_rejected, a list of jets."""
    fields = {k: np.asarray(flat[k], dtype=dtype) for k, dtype in JET_FIELDS.items()}
    fields["image"] = np.asarray(images, dtype=np.float32)  # (jets, 37, 37)
    jets = ak.zip(
        {k: ak.from_numpy(v, regulararray=True) for k, v in fields.items()},
        depth_limit=1,
    )
    return ak.zip(
        {
            "constituents_dropped": np.asarray(dropped, dtype=np.int64),
            "jets_rejected": ak.zip(
                {k: np.asarray(rejected[k], dtype=np.int64) for k in REJECTIONS}
            ),
            "jets": ak.unflatten(jets, np.asarray(counts, dtype=np.int64)),
        },
        depth_limit=1,
    )


def _empty():
    flat = {k: np.zeros(0, dtype=dtype) for k, dtype in JET_FIELDS.items()}
    images = np.zeros((0, N_PIXELS, N_PIXELS), dtype=np.float32)
    none = np.zeros(0, np.int64)
    return _assemble(flat, images, none, none, dict.fromkeys(REJECTIONS, none))


def _typetracer(array):
    return ak.Array(array.layout.to_typetracer(forget_length=True))


class ImageProcessor(processor.ProcessorABC):
    """Jets and images of one dataset per call; counts, and Parquet if ``out_dir``.

    The dataset's metadata decides the truth: ``signal`` true and ``process`` a
    key of ``config.resonance_pid`` -> truth flags; otherwise all True. Output of
    :meth:`process`: ``{dataset: {count name: dask scalar}}`` with the counts
    ``events``, ``constituents_dropped``, ``jets_selected``, ``jets_not_matched``,
    ``jets_not_merged``, ``jets_failing_truth``, ``jets_rejected_rank``,
    ``jets_rejected_pt``, ``jets_rejected_eta`` (selected plus rejected = every jet
    with pT above the window's lower edge) and, with ``out_dir``,
    ``jets_written``; Parquet files go to ``out_dir/<dataset>/part-*.parquet``.
    """

    def __init__(self, config=None, out_dir=None):
        self.config = config or JetConfig()
        self.out_dir = None if out_dir is None else Path(out_dir)

    def process(self, events):
        import dask_awkward as dak

        metadata = events.metadata
        dataset = metadata["dataset"]
        process = metadata.get("process") if metadata.get("signal") else None
        result = jets_and_images(events, self.config, process)
        jets = result.jets
        lib = dak if _is_dask(jets) else ak
        counts = {
            "events": lib.num(result.constituents_dropped, axis=0),
            "constituents_dropped": lib.sum(result.constituents_dropped),
            "jets_selected": lib.num(jets.pt, axis=0),
            "jets_not_matched": lib.sum(~jets.truth_matched),
            "jets_not_merged": lib.sum(~jets.truth_merged),
            "jets_failing_truth": lib.sum(~jets.truth_pass),
        }
        for reason in REJECTIONS:
            counts[f"jets_rejected_{reason}"] = lib.sum(result.jets_rejected[reason])
        if self.out_dir is not None:
            counts["jets_written"] = self._write(result, dataset, events)
        return {dataset: counts}

    def postprocess(self, accumulator):
        return accumulator

    def _write(self, result, dataset, events):
        import dask_awkward as dak

        lib = dak if _is_dask(result.jets) else ak
        table = lib.zip(
            dict(
                zip(result.jets.fields, ak.unzip(result.jets), strict=True),
                image=result.images,
            ),
            depth_limit=1,
        )
        folder = self.out_dir / dataset
        tag = part_tag(events, self.config)
        writer = ChunkWriter(folder, dataset, tag)
        if not _is_dask(table):
            return int(writer(table, 0)[0])

        from dask.blockwise import BlockIndex

        written = dak.map_partitions(
            writer,
            table,
            BlockIndex((table.npartitions,)),
            label="write-images",
            meta=_typetracer(ak.Array(np.zeros(0, np.int64))),
        )
        return dak.sum(written)


def part_tag(events, config):
    """The tag in the names of the part files of one input file.

    Same file and settings, same names, so that a rerun replaces its files. The
    file counts by its name and its place in the dataset (``fileindex``), never
    by its folder: a sample moved or regenerated elsewhere gives the same names,
    hence the same file order for training, hence the same trained models.
    """
    metadata = getattr(events, "metadata", None) or {}
    if metadata.get("filename") is not None:
        identity = [
            metadata.get("fileindex"),
            Path(str(metadata["filename"])).name,
            metadata.get("treename"),
        ]
    else:  # events not made by the runner: the collection's own name
        identity = [getattr(events, "name", "")]
    key = json.dumps([identity, config.model_dump()], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


class ChunkWriter:
    """Write one chunk's jets as ``part-<tag>-<chunk>.parquet``, atomically.

    Shared by the image and score processors: both write one Parquet file per
    chunk under a temporary name, readable as the umask allows, then renamed.
    """

    def __init__(self, folder, dataset, tag):
        self.folder, self.dataset, self.tag = Path(folder), dataset, tag

    def __call__(self, table, chunk):
        if ak.backend(table) == "typetracer":
            ak.typetracer.touch_data(table)
            return _typetracer(ak.Array(np.zeros(0, np.int64)))
        chunk = chunk[0] if isinstance(chunk, tuple) else chunk  # dask's BlockIndex
        n_jets = len(table)
        if n_jets:
            self._write(table, f"part-{self.tag}-{int(chunk):05d}.parquet")
        return ak.Array(np.array([n_jets], dtype=np.int64))

    def _write(self, table, name):
        table = ak.with_field(table, ak.Array([self.dataset] * len(table)), "dataset")
        target = self.folder / name
        with atomic_path(target, "choose a writable --out") as partial:
            ak.to_parquet(table, partial)
        log.debug("wrote %d jets to %s", len(table), target)


COUNTS = (
    "events",
    "constituents_dropped",
    "jets_selected",
    "jets_not_matched",
    "jets_not_merged",
    "jets_failing_truth",
    *(f"jets_rejected_{reason}" for reason in REJECTIONS),
    "jets_written",
)


def clear_parts(folder):
    """Remove the ``part-*.parquet`` files of an earlier run in ``folder``."""
    folder = Path(folder)
    for part in folder.glob("part-*.parquet"):
        try:
            part.unlink()
        except OSError as err:
            raise OutputError(f"cannot remove the old {part}: {err.strerror}") from err


def write_report(folder, dataset, result, config):
    """Write ``folder/report.json`` from a :class:`processors.runner.RunResult`."""
    from analysis.fileset import write_json_atomic

    counts = (result.output or {}).get(dataset, {})
    report = {
        "dataset": dataset,
        "counts": {name: int(counts.get(name, 0)) for name in COUNTS},
        "chunks": result.chunks,
        "failures": result.failures,
        "config": config.model_dump(mode="json"),
    }
    write_json_atomic(Path(folder) / "report.json", report)
    return report
