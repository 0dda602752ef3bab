"""Run a coffea processor over a fileset on a dask.distributed cluster.

:func:`run` is shared by every processor of the project:

1. client: a ``LocalCluster`` of ``workers`` single-threaded processes by default,
   the scheduler at ``scheduler`` (an address such as ``tcp://127.0.0.1:8786``) when
   given, or a ``distributed.Client`` passed in;
2. ``coffea.dataset_tools.preprocess(..., save_form=False)`` splits each file into
   chunks of ``step_size`` events; a file that cannot be opened is recorded with
   its reason and left out;
3. ``apply_to_fileset`` builds one task graph per file, with uproot's read-error
   report on, so that a chunk that cannot be read is recorded and the rest goes on;
   a file the processor rejects (an InputError, e.g. a missing collection) is
   recorded and left out;
4. all graphs are computed together; a file whose graph fails is recorded.

Each failure is ``{dataset, file, entries, reason}``; ``entries`` ([start, stop))
is None only for a file that cannot be opened, so that events read plus entries
failed add up to the entries of every file that opens.

``fail_fast=True`` turns the first failure into an :class:`InputError` instead.
An :class:`OutputError` (an output that cannot be written) always stops the run.
The outputs of all files of all datasets are summed with
``coffea.processor.accumulate`` and passed through ``processor.postprocess``.
"""

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

from distributed.diagnostics.plugin import WorkerPlugin

from analysis.errors import InputError, OutputError

__all__ = [
    "RunResult",
    "client_for",
    "file_metadata",
    "run",
    "unreadable_datasets",
    "unreadable_message",
]

log = logging.getLogger(__name__)

# What a file that cannot be opened raises: OSError (missing, truncated, no
# permission), ValueError (not a ROOT file) and KeyError (uproot's KeyInFileError,
# no such tree).
FILE_ERRORS = (OSError, ValueError, KeyError)


@dataclass
class RunResult:
    """The accumulated output and every file or chunk that failed."""

    output: dict
    failures: list = field(default_factory=list)  # {dataset, file, entries, reason}
    chunks: int = 0
    cached: list = field(default_factory=list)  # [(dataset, file)] from the cache
    # [(dataset, file, preprocessed spec)] whose output is in ``output``
    completed: list = field(default_factory=list)


class _FileTask(NamedTuple):
    """One file of the run: its task graph, or its output from the cache."""

    dataset: str
    file: str
    spec: dict  # preprocessed: object_path, steps, uuid
    metadata: dict
    graph: tuple | None  # (output, uproot read report or None)
    cached: object  # the output from the cache, or None


class _OutputErrorFilter(logging.Filter):
    """Drops a worker's "Compute Failed" record of an OutputError."""

    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("Compute Failed") and "OutputError(" in message)


class QuietOutputErrors(WorkerPlugin):
    """Worker plugin: the worker logs no "Compute Failed" traceback for an
    :class:`OutputError`, which reaches the client and is reported there."""

    def setup(self, worker):
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _OutputErrorFilter) for f in logger.filters):
            logger.addFilter(_OutputErrorFilter())


@contextlib.contextmanager
def client_for(scheduler=None, workers=2, processes=True):
    """A ``distributed.Client``: given, connected to an address, or local."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        import dask

        previous = dask.config.get("scheduler", None)
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, ValueError, TypeError) as err:
            # A Client that fails to connect has already made itself dask's
            # default scheduler: undo that, or later computes look for it.
            dask.config.set(scheduler=previous)
            # OSError: nothing answers; ValueError: not an address (no port, an
            # unknown scheme); TypeError: tls:// without TLS settings.
            raise InputError(
                f"cannot connect to the dask scheduler at {scheduler!r}: "
                f"{type(err).__name__}: {err}; pass its address as tcp://HOST:PORT "
                "(or tls://HOST:PORT), start it, or leave --scheduler out for a "
                "local cluster"
            ) from err
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=":0",  # a free port: no warning when 8787 is taken
        ) as cluster,
        Client(cluster) as client,
    ):
        # The workers print to this terminal: an output that cannot be written
        # is reported once, as one line, not also as a worker's traceback.
        client.register_plugin(QuietOutputErrors(), name="aejets-quiet-output-errors")
        yield client


def run(
    fileset,
    processor,
    *,
    scheduler=None,
    workers=2,
    step_size=None,
    fail_fast=False,
    schema=None,
    processes=True,
    progress=None,
    cache=None,
):
    """Run ``processor`` over ``fileset``; returns a :class:`RunResult`.

    ``fileset`` is as from :func:`analysis.fileset.load_fileset`. ``progress``,
    if given, is called as ``progress(done, total)`` while files complete.
    ``cache`` (a :class:`processors.cache.OutputCache`) keeps the output of each
    file that completes and hands it back on a rerun instead of computing it.
    """
    from coffea.nanoevents import DelphesSchema

    schema = schema or DelphesSchema
    with client_for(scheduler, workers, processes) as client:
        available, failures = _preprocess(fileset, step_size, fail_fast)
        tasks, unusable = _graphs(available, processor, schema, fail_fast, cache)
        outputs, more, completed = _compute(client, tasks, fail_fast, progress, cache)
    failures += unusable + more
    from coffea.processor import accumulate

    chunks = sum(
        len(spec.get("steps") or [])
        for dataset in available.values()
        for spec in dataset["files"].values()
    )
    output = processor.postprocess(accumulate(outputs) if outputs else {})
    cached = [(t.dataset, t.file) for t in tasks if t.graph is None]
    return RunResult(
        output=output,
        failures=failures,
        chunks=chunks,
        cached=cached,
        completed=completed,
    )


def _preprocess(fileset, step_size, fail_fast):
    from coffea.dataset_tools import preprocess

    with warnings.catch_warnings(), _coffea_console_quiet():
        # Dict filesets are deprecated in favour of coffea's DataGroupSpec but
        # still supported; the project's fileset is a plain dict.
        warnings.simplefilter("ignore", DeprecationWarning)
        # A dataset whose files all fail: each file is logged below with its
        # reason; coffea's generic advice about xrootd endpoints would mislead.
        warnings.filterwarnings("ignore", "There was no populated list of files")
        available, _ = preprocess(
            fileset,
            step_size=step_size,
            skip_bad_files=True,
            file_exceptions=FILE_ERRORS,
            save_form=False,
            allow_empty_datasets=True,
        )
    failures = []
    for name, dataset in fileset.items():
        good = (available.get(name) or {}).get("files") or {}
        for file, tree in dataset["files"].items():
            if file in good and good[file].get("steps") is not None:
                continue
            reason = _why_unreadable(file, tree)
            if fail_fast:
                raise InputError(f"dataset {name!r}: cannot read {file}: {reason}")
            log.warning("dataset %r: skipping %s: %s", name, file, reason)
            failures.append(
                {"dataset": name, "file": file, "entries": None, "reason": reason}
            )
    for name in list(available):
        if not (available[name] or {}).get("files"):
            del available[name]
        else:
            available[name]["metadata"] = fileset[name].get("metadata") or {}
    return available, failures


@contextlib.contextmanager
def _coffea_console_quiet():
    """Silence coffea's console, where preprocess advertises DataGroupSpec."""
    from coffea.util import coffea_console

    quiet, coffea_console.quiet = coffea_console.quiet, True
    try:
        yield
    finally:
        coffea_console.quiet = quiet


def _why_unreadable(file, tree):
    import uproot

    tree = tree if isinstance(tree, str) else tree.get("object_path", "Delphes")
    try:
        with uproot.open(file) as handle:
            handle[tree].num_entries  # noqa: B018  (reads the tree header)
    except Exception as err:  # the reason is what we want, whatever its type
        return f"{type(err).__name__}: {err}"
    return "coffea's preprocess could not read it (it opens now: retry the run)"


def _graphs(available, processor, schema, fail_fast, cache=None):
    """[:class:`_FileTask`], one per file, and failures.

    A file the processor rejects while building its graph (an InputError: a
    missing collection, a wrong type) or whose branches the schema cannot build
    its collections from (a KeyError) is recorded with its entries and left out.
    """
    import zlib

    import uproot
    from coffea.dataset_tools import apply_to_fileset

    # Chunk-level errors uproot reports instead of raising: I/O and corrupt baskets.
    errors = (
        OSError,
        zlib.error,
        uproot.exceptions.KeyInFileError,
        uproot.DeserializationError,
    )
    options = {} if fail_fast else {"allow_read_errors_with_report": errors}
    tasks, failures = [], []
    for name, dataset in available.items():
        metadata = dataset["metadata"]
        for index, (file, spec) in enumerate(sorted(dataset["files"].items())):
            hit = None if cache is None else cache.load(name, file, spec, metadata)
            if hit is not None:
                log.info("dataset %r: %s from the cache", name, file)
                tasks.append(_FileTask(name, file, spec, metadata, None, hit))
                continue
            per_file = file_metadata({**metadata, "dataset": name}, file, spec, index)
            single = {name: {"files": {file: spec}, "metadata": per_file}}
            try:
                result = apply_to_fileset(
                    processor, single, schemaclass=schema, uproot_options=options
                )
            except (InputError, KeyError) as err:
                # KeyError: coffea's schema misses a branch it builds on (Eta...).
                if fail_fast:
                    raise InputError(f"dataset {name!r}: {file}: {err}") from err
                log.warning("dataset %r: skipping %s: %s", name, file, err)
                failures.append(_file_failure(name, file, spec, err))
                continue
            output, report = result if options else (result, {name: None})
            graph = (output[name], report[name])
            tasks.append(_FileTask(name, file, spec, metadata, graph, None))
    return tasks, failures


def file_metadata(metadata, file, spec, index=None):
    """The metadata a processor gets for the events of one file: the dataset's,
    plus coffea's names for the file (``filename``, ``treename``, ``fileuuid``, as
    its executors set them), for messages and the names of files it writes, and
    ``fileindex``, the file's place among the dataset's files sorted by path (the
    same wherever the files are moved together)."""
    return {
        **metadata,
        "filename": file,
        "treename": spec.get("object_path"),
        "fileuuid": spec.get("uuid"),
        "fileindex": index,
    }


def unreadable_datasets(fileset, result):
    """{dataset: its failures} for each dataset of ``fileset`` of which no event
    could be read because every file failed (unreadable, rejected, its graph
    failed, or every chunk failed). A dataset with some readable events is not
    listed, nor one whose files are simply empty."""
    readable = set()
    for dataset, file, spec in result.completed:
        start, stop = _entries_of(spec)
        lost = sum(
            failure["entries"][1] - failure["entries"][0]
            for failure in result.failures
            if failure["dataset"] == dataset
            and failure["file"] == file
            and failure["entries"]
        )
        if stop == start or lost < stop - start:
            readable.add(dataset)
    unreadable = {}
    for dataset in fileset:
        failures = [f for f in result.failures if f["dataset"] == dataset]
        if failures and dataset not in readable:
            unreadable[dataset] = failures
    return unreadable


def unreadable_message(dataset, failures):
    """The error of a dataset whose every file failed, naming each file's reason."""
    reasons = "; ".join(f"{f['file']}: {f['reason']}" for f in failures)
    return (
        f"dataset {dataset!r}: no event could be read, every file failed: "
        f"{reasons}; fix or replace these files in the fileset"
    )


def _entries_of(spec):
    """[first, stop) entries of a preprocessed file spec."""
    steps = spec.get("steps") or [[0, 0]]
    return [int(steps[0][0]), int(steps[-1][1])]


def _file_failure(name, file, spec, err):
    """A failure record for a whole readable file, with the entries it holds."""
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, KeyError):
        reason = f"the Delphes schema needs a field the file lacks ({reason})"
    return {
        "dataset": name,
        "file": file,
        "entries": _entries_of(spec),
        "reason": reason,
    }


def _compute(client, tasks, fail_fast, progress, cache=None):
    """Outputs in the order of ``tasks`` (so sums do not depend on the cache),
    failures, and the [(dataset, file, spec)] whose output is among the outputs."""
    # Submit every file at once (the workers stay busy), then collect in order.
    import dask

    # Optimized together, so that the output and uproot's read report share one
    # read of each chunk; then submitted as they are.
    pending = [
        (
            task,
            None
            if task.graph is None
            else client.compute(
                list(dask.optimize(*[o for o in task.graph if o is not None])),
                optimize_graph=False,
            ),
        )
        for task in tasks
    ]
    everything = [f for _, group in pending for f in group or []]
    outputs, failures, completed = [], [], []
    for done, (task, futures) in enumerate(pending, start=1):
        name, file = task.dataset, task.file
        try:
            if futures is None:
                output, report = task.cached, []
            else:
                output, *report = client.gather(futures)
        except OutputError:
            # Not the file's fault: a full disk or a lost folder fails every file.
            client.cancel(everything)
            raise
        except Exception as err:  # any failure of one file must not stop the others
            reason = f"{type(err).__name__}: {err}"
            if fail_fast:
                client.cancel(everything)
                raise InputError(
                    f"dataset {name!r}: processing {file} failed: {reason}"
                ) from err
            log.warning("dataset %r: %s failed: %s", name, file, reason)
            entries = _entries_of(task.spec)
            failures.append(
                {"dataset": name, "file": file, "entries": entries, "reason": reason}
            )
        else:
            outputs.append(output)
            completed.append((name, file, task.spec))
            bad = _chunk_failures(name, file, report[0] if report else None)
            failures += bad
            if cache is not None and futures is not None and not bad:
                cache.store(name, file, task.spec, task.metadata, output)
        for future in futures or []:
            # Forget the results, errors too: a rerun on this cluster recomputes
            # a failed file instead of getting the remembered error back.
            future.release()
        if progress is not None:
            progress(done, len(pending))
    return outputs, failures, completed


def _chunk_failures(name, file, report):
    """Chunks uproot could not read, from its read-error report."""
    if report is None:
        return []
    failures = []
    for row in report.to_list():
        if not row.get("exception"):
            continue
        args = row.get("args") or []
        failures.append(
            {
                "dataset": name,
                "file": file,
                "entries": _entries(args),
                "reason": f"{row['exception']}: {row.get('message', '')}",
            }
        )
    return failures


def _entries(args):
    numbers = [a for a in args if isinstance(a, int | str) and str(a).isdigit()]
    return [int(n) for n in numbers[-2:]] if len(numbers) >= 2 else None
