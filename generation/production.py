"""Production of a sample: Pythia -> detector simulation -> Delphes files, in jobs.

A sample of N events is split into files (at least one per job, at most 20k
events each); each file is one job with its own Pythia and detector seeds derived
from the sample seed and the file index, so the same (process, events, seed, jobs,
shower) always gives the same events. The split depends on ``jobs``: a rerun with
another number of jobs makes other files. Files are
written under a temporary name and renamed when complete; a rerun keeps complete
files (checked by their event count) and redoes the rest.
"""

import logging
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from analysis.errors import AejetsError, ConfigError, OutputError
from analysis.fileset import publish
from generation.processes import (
    DEFAULT_GLUINO_MASS,
    check_gluino_mass,
    check_shower,
    get_process,
)
from generation.record import check_record

__all__ = ["SampleResult", "check_request", "file_name", "generate_sample", "job_seeds"]

log = logging.getLogger(__name__)

DEFAULT_SHOWER = "pythia"
MAX_EVENTS_PER_FILE = 20_000
BATCH_SIZE = 200
# Pythia accepts seeds 1 ... 900 000 000.
_PYTHIA_SEED_MAX = 900_000_000


@dataclass
class SampleResult:
    files: list[Path]
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Job:
    process: str
    shower: str
    seed: int
    index: int
    n_events: int
    first_number: int
    path: Path
    mass: float
    batch_size: int
    particles: str = "all"


def job_seeds(seed, index):
    """(Pythia seed, detector seed) of file ``index`` of a sample with ``seed``."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2)
    return int(state[0] % _PYTHIA_SEED_MAX) + 1, int(state[1])


def file_name(process, shower, seed, index, mass=DEFAULT_GLUINO_MASS, particles="all"):
    """The file's name holds every setting that changes its events, except the
    number of events, so that a rerun with other settings never keeps it."""
    parts = [process]
    if shower != DEFAULT_SHOWER:
        parts.append(shower)
    if process == "gluino" and float(mass) != DEFAULT_GLUINO_MASS:
        parts.append(f"m{float(mass):g}")
    if particles != "all":
        parts.append(f"{particles}record")
    return f"{'_'.join(parts)}_s{seed}_{index:03d}.root"


def check_request(process, events, jobs, shower, seed, mass):
    get_process(process)
    check_shower(shower)
    if isinstance(events, bool) or not isinstance(events, int) or events <= 0:
        raise ConfigError(
            f"number of events must be a positive integer, got {events!r}"
        )
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"number of jobs must be a positive integer, got {jobs!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if process == "gluino":
        check_gluino_mass(mass)


def _check_output(out_dir):
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".aejets-probe-"):
            pass
    except OSError as err:
        raise OutputError(
            f"cannot write to output folder {out_dir}: "
            f"{err.strerror or err}; choose a writable folder with --out"
        ) from err
    return out_dir


def plan_jobs(
    process, events, out_dir, seed, jobs, shower, mass, batch_size, particles="all"
):
    """The files of a sample: at least one per job, at most 20k events each."""
    n_files = max(jobs, math.ceil(events / MAX_EVENTS_PER_FILE))
    n_files = min(n_files, events)
    sizes = [events // n_files + (i < events % n_files) for i in range(n_files)]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [
        _Job(
            process=process,
            shower=shower,
            seed=seed,
            index=i,
            n_events=int(size),
            first_number=int(start),
            path=Path(out_dir) / file_name(process, shower, seed, i, mass, particles),
            mass=mass,
            batch_size=batch_size,
            particles=particles,
        )
        for i, (size, start) in enumerate(zip(sizes, starts, strict=True))
    ]


def generate_sample(
    process,
    events,
    out_dir,
    seed=1,
    jobs=1,
    shower=DEFAULT_SHOWER,
    progress=None,
    mass=DEFAULT_GLUINO_MASS,
    batch_size=BATCH_SIZE,
    particles="all",
):
    """Generate ``events`` events of ``process`` into Delphes files in ``out_dir``.

    ``progress(n)`` is called with the number of events finished since the last
    call (complete files found on disk count at once). ``particles`` is the
    generator record written as ``Particle``: "all" or "hard" (see
    :mod:`generation.record`). Returns a
    :class:`SampleResult` with the file paths and the fileset metadata.
    """
    check_request(process, events, jobs, shower, seed, mass)
    check_record(particles)
    out_dir = _check_output(out_dir)
    plan = plan_jobs(
        process, events, out_dir, seed, jobs, shower, mass, batch_size, particles
    )

    summaries = {}
    todo = []
    for job in plan:
        summary = _summary_if_complete(job)
        if summary is None:
            todo.append(job)
        else:
            log.info("keeping complete file %s", job.path)
            summaries[job.index] = summary
            if progress:
                progress(job.n_events)

    if jobs == 1 or len(todo) <= 1:
        for job in todo:
            summaries[job.index] = run_job(job, progress)
    else:
        summaries.update(_run_parallel(todo, jobs, progress))

    files = [job.path for job in plan]
    metadata = _metadata(process, events, seed, jobs, shower, mass, plan, summaries)
    metadata["particles"] = particles
    metadata["generate"]["particles"] = particles
    return SampleResult(files, metadata)


def _run_parallel(todo, jobs, progress):
    context = get_context("spawn")
    manager = context.Manager()
    queue = manager.Queue()
    results = {}
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(run_job, job, queue): job for job in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5)
                _drain(queue, progress)
                for future in done:
                    results[futures[future].index] = future.result()
            _drain(queue, progress)
    finally:
        manager.shutdown()
    return results


def _drain(queue, progress):
    while not queue.empty():
        n = queue.get()
        if progress:
            progress(n)


def run_job(job, progress=None):
    """Generate one file; returns its summary (events, weights, cross section)."""
    from generation.delphes_format import DelphesWriter, event_record
    from generation.detector.simulation import Detector, simulate
    from generation.pythia import Generator

    report = progress.put if hasattr(progress, "put") else progress
    pythia_seed, detector_seed = job_seeds(job.seed, job.index)
    partial = job.path.with_name(f".{job.path.name}.part")
    started = time.perf_counter()
    try:
        generator = Generator(
            job.process, pythia_seed, job.shower, workdir=job.path.parent, mass=job.mass
        )
        rng = np.random.default_rng(detector_seed)
        detector = Detector.cms()
        with DelphesWriter(partial) as writer:
            done = 0
            while done < job.n_events:
                n = min(job.batch_size, job.n_events - done)
                batch = generator.next_batch(n)
                if batch.n_events == 0:
                    raise AejetsError(
                        f"Pythia produced no events for {job.path.name} "
                        f"(process {job.process!r}, seed {pythia_seed}); "
                        "run with -v to see its messages"
                    )
                collections = simulate(batch, rng, detector, job.particles)
                collections["Event"] = event_record(
                    batch.event_info,
                    job.first_number + done,
                    generator.cross_section_pb,
                )
                writer.write(collections)
                done += batch.n_events
                if report:
                    report(batch.n_events)
        publish(partial)
        os.replace(partial, job.path)
    except OSError as err:  # a full disk, a folder gone: no partial file is left
        partial.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write {job.path}: {err.strerror or err}; free some space or "
            "choose another folder with --out, then rerun to complete the sample"
        ) from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    xsec, xsec_err = generator.cross_section_pb
    log.info(
        "wrote %s: %d events in %.0f s", job.path, done, time.perf_counter() - started
    )
    return {
        "n_events": done,
        "sum_weights": generator.sum_weights,
        "xsec_pb": xsec,
        "xsec_err_pb": xsec_err,
        "generator": generator.version,
    }


def _summary_if_complete(job):
    """The summary of a complete file from its Event branch, else None."""
    if not job.path.exists():
        return None
    import uproot

    try:
        with uproot.open(job.path) as handle:
            tree = handle["Delphes"]
            if tree.num_entries != job.n_events:
                return None
            event = tree.arrays(
                [
                    "Event/Event.Weight",
                    "Event/Event.CrossSection",
                    "Event/Event.CrossSectionError",
                ],
                library="np",
            )
    except Exception as err:  # noqa: BLE001 - any unreadable file is redone
        log.warning("redoing %s: cannot read it (%s)", job.path, err)
        return None
    last = {k: float(v[-1][0]) for k, v in event.items()}
    return {
        "n_events": job.n_events,
        "sum_weights": float(sum(w[0] for w in event["Event/Event.Weight"])),
        "xsec_pb": last["Event/Event.CrossSection"],
        "xsec_err_pb": last["Event/Event.CrossSectionError"],
        "generator": None,
    }


def combine_cross_sections(values, errors):
    """Inverse-variance mean of independent estimates, and its error."""
    values, errors = np.asarray(values, float), np.asarray(errors, float)
    if len(values) == 0:
        return 0.0, 0.0
    if np.any(errors <= 0):
        return float(values.mean()), float(np.sqrt(np.sum(errors**2)) / len(values))
    weights = 1.0 / errors**2
    return float(np.sum(weights * values) / weights.sum()), float(
        1.0 / np.sqrt(weights.sum())
    )


def _metadata(process, events, seed, jobs, shower, mass, plan, summaries):
    ordered = [summaries[job.index] for job in plan]
    xsec, xsec_err = combine_cross_sections(
        [s["xsec_pb"] for s in ordered], [s["xsec_err_pb"] for s in ordered]
    )
    version = next((s["generator"] for s in ordered if s["generator"]), None)
    metadata = {
        "process": process,
        "signal": get_process(process).signal,
        "xsec_pb": xsec,
        "xsec_err_pb": xsec_err,
        "n_events": int(sum(s["n_events"] for s in ordered)),
        "sum_weights": float(sum(s["sum_weights"] for s in ordered)),
        "shower": shower,
        "seed": seed,
        "generator": f"{version or 'Pythia 8'} + aejets CMS-like detector simulation",
        "generate": {
            "process": process,
            "events": events,
            "seed": seed,
            "shower": shower,
            "jobs": jobs,
        },
    }
    if process == "gluino":
        metadata["gluino_mass"] = mass
        metadata["generate"]["mass"] = mass
    return metadata
