"""Scores as columns of the selected jets, and the histograms every result is made from.

:class:`ScoreProcessor` runs, for each dataset of a fileset (``process``):

1. jets and images: :func:`processors.image_processor.jets_and_images`;
2. scores: one column per model, ``scorer(images) -> loss`` with the scorers of
   :mod:`processors.inference` (local TensorFlow or a Triton server);
3. weights: ``Event.Weight * xsec_pb / sum_weights`` from the fileset metadata (pb
   per jet), or 1 with ``unit_weight``;
4. evaluation jets: those of odd event numbers (:func:`analysis.split.is_training`
   false), the only ones that fill histograms;
5. histograms (:func:`processors.histograms.book`): ``loss`` and ``mass_loss`` per
   model, ``mass`` once;
6. with ``out_dir``: every selected jet as Parquet,
   ``OUT/<dataset>/part-<tag>-<chunk>.parquet``, with the jet fields of the image
   output, ``score_<model>`` and ``training``; the tag (:func:`part_tag`) names the
   file and the run's settings, so that a rerun replaces the files it writes again.

:func:`score_fileset` runs it over a fileset and returns computed histograms.
"""

import hashlib
import json
import logging
import re
from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor

from analysis.errors import ConfigError, OutputError, ServingError
from analysis.split import is_training
from processors.histograms import FAILING_TRUTH, book
from processors.image_processor import ChunkWriter, jets_and_images
from processors.jets import JetConfig

__all__ = [
    "ScoreProcessor",
    "check_weights",
    "dataset_weight",
    "limit_events",
    "part_tag",
    "score_fileset",
]

log = logging.getLogger(__name__)


def dataset_weight(metadata, unit_weight=False):
    """Cross section over sum of weights (pb per unit Event.Weight) of a dataset."""
    if unit_weight:
        return 1.0
    dataset = metadata.get("dataset", "?")
    missing = [k for k in ("xsec_pb", "sum_weights") if metadata.get(k) is None]
    if missing:
        raise ConfigError(
            f"dataset {dataset!r} has no {' or '.join(missing)} in its fileset "
            "metadata; generate it with 'aejets generate', add the keys, or score "
            "with --unit-weight"
        )
    values = {}
    for key in ("xsec_pb", "sum_weights"):
        try:
            values[key] = float(metadata[key])
        except (TypeError, ValueError):
            raise ConfigError(
                f"dataset {dataset!r}: {key} is {metadata[key]!r}, not a number; "
                "fix the fileset metadata or score with --unit-weight"
            ) from None
    if not values["sum_weights"] > 0:
        raise ConfigError(
            f"dataset {dataset!r}: sum_weights is {metadata['sum_weights']}, it must "
            "be positive; fix the fileset metadata or score with --unit-weight"
        )
    return values["xsec_pb"] / values["sum_weights"]


def check_weights(fileset, unit_weight=False):
    """:func:`dataset_weight` of every dataset of ``fileset``: a ConfigError naming
    the first whose metadata cannot weight its jets."""
    for name, dataset in fileset.items():
        dataset_weight(
            {**(dataset.get("metadata") or {}), "dataset": name}, unit_weight
        )


def part_tag(metadata, run_key=None):
    """The tag of the part files of one input file: a hash of the dataset, the file
    (path, tree, uuid, as the runner sets them in the metadata) and ``run_key``."""
    identity = {
        "run": run_key,
        **{k: metadata.get(k) for k in ("dataset", "filename", "treename", "fileuuid")},
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _is_dask(array):
    return type(array).__module__.startswith("dask_awkward")


def _training(event):
    """Boolean column: the jet's event is in the training pool."""
    if ak.backend(event) == "typetracer":
        ak.typetracer.touch_data(event)
        return ak.Array(ak.Array(np.zeros(0, bool)).layout.to_typetracer(True))
    return ak.Array(is_training(ak.to_numpy(event)))


class ScoreProcessor(processor.ProcessorABC):
    """Score columns and histograms of one dataset per ``process`` call.

    ``scorers``: {model name: scorer} (:func:`processors.inference.make_scorers`).
    Output of :meth:`process`: ``{"histograms": {name: hist.dask.Hist}, "jets":
    {dataset: {"selected": n, "evaluation": n}}}`` plus ``"written"`` with
    ``out_dir``. ``run_key`` (JSON-able: models, settings) enters the names of
    the part files (:func:`part_tag`).
    """

    def __init__(
        self, scorers, jet_config=None, unit_weight=False, out_dir=None, run_key=None
    ):
        if not scorers:
            raise ConfigError("no model to score with; pass at least one model")
        self.scorers = dict(scorers)
        self.jet_config = jet_config or JetConfig()
        self.unit_weight = unit_weight
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.run_key = run_key

    def process(self, events):
        import dask_awkward as dak

        metadata = events.metadata
        dataset = metadata["dataset"]
        process = metadata.get("process") if metadata.get("signal") else None
        scale = dataset_weight(metadata, self.unit_weight)

        result = jets_and_images(events, self.jet_config, process)
        jets, images = result.jets, result.images  # (jets,), (jets, 37, 37)
        lib = dak if _is_dask(jets) else ak
        scores = {name: scorer(images) for name, scorer in self.scorers.items()}
        if lib is dak:
            training = dak.map_partitions(_training, jets.event, label="is-training")
        else:
            training = _training(jets.event)

        evaluation = ~training
        histograms = book(lazy=lib is dak)
        if process is None:
            _fill(histograms, dataset, evaluation, jets, scores, scale)
        else:
            # Signal jets failing the truth requirements are kept apart, never mixed
            # into the signal: ROC curves use the signal category, the bump hunt
            # (which data would see) both.
            passing = evaluation & jets.truth_pass
            failing = evaluation & ~jets.truth_pass
            _fill(histograms, dataset, passing, jets, scores, scale)
            _fill(histograms, dataset + FAILING_TRUTH, failing, jets, scores, scale)

        counts = {
            "selected": lib.num(jets.pt, axis=0),
            "evaluation": lib.sum(evaluation),
        }
        if self.out_dir is not None:
            counts["written"] = self._write(jets, scores, training, metadata)
        return {"histograms": histograms, "jets": {dataset: counts}}

    def postprocess(self, accumulator):
        return accumulator

    def _write(self, jets, scores, training, metadata):
        import dask_awkward as dak

        columns = dict(zip(jets.fields, ak.unzip(jets), strict=True))
        columns.update({f"score_{name}": loss for name, loss in scores.items()})
        columns["training"] = training
        # One graph per input file, each numbering its chunks from 0: the tag keeps
        # the names of different files apart, and is the same in every run of the
        # same file and settings (a resumed run overwrites, never duplicates).
        dataset = metadata["dataset"]
        tag = part_tag(metadata, self.run_key)
        writer = ChunkWriter(self.out_dir / dataset, dataset, tag)
        if not _is_dask(jets):
            table = ak.zip(columns, depth_limit=1)
            return int(writer(table, 0)[0])

        from dask.blockwise import BlockIndex

        table = dak.zip(columns, depth_limit=1)
        written = dak.map_partitions(
            writer,
            table,
            BlockIndex((table.npartitions,)),
            label="write-scores",
            meta=ak.Array(ak.Array(np.zeros(0, np.int64)).layout.to_typetracer(True)),
        )
        return dak.sum(written)


def _fill(histograms, category, mask, jets, scores, scale):
    """Fill every histogram with the jets of ``mask`` under dataset ``category``."""
    weight = jets.weight[mask] * scale  # (jets in mask,)
    mass = jets.mass[mask]
    histograms["mass"].fill(dataset=category, mass=mass, weight=weight)
    for name, loss in scores.items():
        loss = loss[mask]
        histograms["loss"].fill(dataset=category, model=name, loss=loss, weight=weight)
        histograms["mass_loss"].fill(
            dataset=category, model=name, mass=mass, loss=loss, weight=weight
        )


def limit_events(fileset, max_events, step_size=None):
    """The fileset restricted to its first ``max_events`` events per dataset.

    Each file gets explicit ``steps`` (with its ``uuid``, so that coffea's
    preprocess keeps them) of at most ``step_size`` events.
    """
    import uproot

    limited = {}
    for name, dataset in fileset.items():
        remaining = max_events
        files = {}
        for path, tree in dataset["files"].items():
            if remaining <= 0:
                break
            tree_name = tree if isinstance(tree, str) else tree["object_path"]
            with uproot.open(path) as handle:
                uuid = str(handle.file.uuid)
                entries = min(handle[tree_name].num_entries, remaining)
            size = step_size or entries or 1
            steps = [[s, min(s + size, entries)] for s in range(0, entries, size)]
            files[path] = {
                "object_path": tree_name,
                "steps": steps or [[0, 0]],
                "uuid": uuid,
            }
            remaining -= entries
        limited[name] = {**dataset, "files": files}
    return limited


def score_fileset(
    fileset,
    models_dir,
    *,
    triton_url=None,
    names=None,
    jet_config=None,
    unit_weight=False,
    out_dir=None,
    batch_size=1024,
    max_events=None,
    step_size=None,
    scheduler=None,
    workers=2,
    processes=True,
    progress=None,
    cache_dir=None,
):
    """Score every selected jet of ``fileset`` with the models under ``models_dir``.

    ``triton_url`` (``triton+grpc://HOST:PORT``) sends the images to that server,
    else the models run in the dask workers. Returns ``(histograms, report)``:
    ``{name: hist.Hist}`` as :func:`processors.histograms.book` defines them, and
    ``{"jets": {dataset: counts}, "failures": [...], "chunks": n}``. A Triton server
    that fails is an error (:class:`ServingError`), never a partial result.

    With ``cache_dir`` the output of every file that completes is kept there
    (:mod:`processors.cache`, keyed by the models and settings): after a failure
    (a Triton server gone), the same call computes only the files still missing
    and gives the histograms of an undisturbed run; ``report["cached"]`` lists
    the files taken from the cache. ``report["unreadable"]`` lists the datasets
    of which no event could be read, every file having failed.
    """
    from processors import runner
    from processors.inference import check_served_models, make_scorers

    check_weights(fileset, unit_weight)  # refuse bad metadata before any work
    scorers = make_scorers(models_dir, names, triton_url, batch_size)
    if triton_url is not None:  # the server must serve these very models
        check_served_models(models_dir, scorers)
    jet_config = jet_config or JetConfig()
    key = _cache_key(
        models_dir, scorers, jet_config, unit_weight, out_dir, max_events, step_size
    )
    score = ScoreProcessor(scorers, jet_config, unit_weight, out_dir, run_key=key)
    if max_events is not None:
        fileset = limit_events(fileset, max_events, step_size)
    cache = None
    if cache_dir is not None:
        from processors.cache import OutputCache

        cache = OutputCache(cache_dir, key)
    result = runner.run(
        fileset,
        score,
        scheduler=scheduler,
        workers=workers,
        step_size=step_size,
        processes=processes,
        progress=progress,
        cache=cache,
    )
    if out_dir is not None:  # first: a failed run leaves only completed files' parts
        _remove_stale_parts(Path(out_dir), fileset, result, key)
    for failure in result.failures:
        if "ServingError" in failure["reason"]:
            message = failure["reason"].removeprefix("ServingError: ")
            raise ServingError(f"dataset {failure['dataset']!r}: {message}")
    output = result.output or {}
    histograms = output.get("histograms") or book(lazy=False)
    report = {
        "jets": {
            dataset: {name: int(n) for name, n in counts.items()}
            for dataset, counts in output.get("jets", {}).items()
        },
        "failures": result.failures,
        "chunks": result.chunks,
        "cached": [file for _, file in result.cached],
        "unreadable": sorted(runner.unreadable_datasets(fileset, result)),
    }
    return histograms, report


_PART = re.compile(r"part-([0-9a-f]{10})-\d+\.parquet")


def _remove_stale_parts(out_dir, fileset, result, key):
    """Remove the part files in ``out_dir/<dataset>`` that no completed file of
    ``result`` wrote (a file that failed in this run, an earlier run with other
    settings), so that the Parquet holds the jets the histograms hold."""
    from processors.runner import file_metadata

    expected = {
        part_tag(file_metadata({"dataset": dataset}, file, spec), key)
        for dataset, file, spec in result.completed
    }
    for dataset in fileset:
        for part in sorted((out_dir / dataset).glob("part-*.parquet")):
            match = _PART.fullmatch(part.name)
            if match is None or match.group(1) in expected:
                continue
            log.info("removing %s: no file of this run wrote it", part)
            try:
                part.unlink()
            except OSError as err:
                raise OutputError(
                    f"cannot remove the stale {part}: {err.strerror or err}"
                ) from err


def _cache_key(
    models_dir, scorers, jet_config, unit_weight, out_dir, max_events, step_size
):
    """What the per-file outputs depend on: model contents and settings."""
    models = {}
    for name in sorted(scorers):
        folder = Path(models_dir) / name
        digest = hashlib.sha256()
        for part in ("model.keras", "card.json"):
            if (folder / part).is_file():
                digest.update((folder / part).read_bytes())
        models[name] = digest.hexdigest()
    return {
        "models": models,
        "jet_config": jet_config.model_dump(mode="json"),
        "unit_weight": unit_weight,
        "out_dir": None if out_dir is None else str(out_dir),
        "max_events": max_events,
        "step_size": step_size,
    }
