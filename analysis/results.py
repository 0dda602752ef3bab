"""The results folder: inputs saved once, every output rebuilt from them.

Inputs (written by ``aejets run`` through :func:`write_results`):

``histograms.pkl``  {"loss", "mass_loss", "mass"}: ``hist.Hist`` from
                    ``processors.histograms.book(lazy=False)``, weights in pb per jet
``run.json``        {"datasets": {...}, "models": {name: card}, "settings": {...},
                    "training": {name: {"history": ..., "latent_scan": ...}}}

Outputs (rebuilt by ``aejets report`` through :func:`write_outputs`):

``results.json``    every number; ``null`` where it cannot be computed, never NaN
``REPORT.md``       each number beside the study's claim, with a verdict
``histograms.root`` one TH1D/TH2D per dataset and model, written with uproot
``plots/*.png|pdf`` mplhep figures in a CMS-like style
"""

import logging
import math
import pickle
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from analysis import measures
from analysis.errors import InputError, OutputError
from analysis.fileset import atomic_path, write_json_atomic
from analysis.study import HISTOGRAMS, Study

__all__ = [
    "compute_results",
    "load_results_inputs",
    "to_json",
    "write_outputs",
    "write_results",
    "write_root",
]

log = logging.getLogger(__name__)

HISTOGRAMS_FILE = "histograms.pkl"
RUN_FILE = "run.json"


def compute_results(study):
    """Every number of the study as a JSON-ready dictionary (NaN -> None)."""
    models = measures.model_metrics(study)
    results = {
        "models": models,
        "bump_hunt": measures.bump_hunt(study),
        "contamination": measures.contamination(study, models),
        "robustness": measures.robustness(study),
        "mass_correlation": measures.mass_correlation(study),
        "latent_scan": measures.latent_scans(study.run_info),
        "inputs": {
            "datasets": sorted(study.datasets),
            "model_groups": {
                g.name: {
                    "members": g.members,
                    "architecture": g.architecture,
                    "latent": g.latent,
                    "contamination": g.contamination,
                }
                for g in study.groups.values()
            },
            "settings": asdict(study.settings),
        },
    }
    results["missing"] = missing_inputs(study, results)
    return to_json(results)


def missing_inputs(study, results):
    """Plain sentences naming what the inputs lack, for results.json and REPORT.md."""
    s = study.settings
    missing = []
    if s.background not in study.datasets:
        missing.append(f"background dataset {s.background!r} (no efficiency at all)")
    for signal in s.signals:
        if signal not in study.datasets:
            missing.append(f"signal dataset {signal!r}")
    architectures = {g.architecture for g in study.nominal_groups()}
    for arch in ("pca", "dense", "cnn"):
        if arch not in architectures:
            missing.append(f"a {arch!r} model trained on pure background")
    if not results["contamination"]:
        missing.append("models trained with signal contamination")
    for key in ("bump_hunt", "robustness"):
        if "missing" in results[key]:
            missing.append(f"{key.replace('_', ' ')}: {results[key]['missing']}")
    if not results["latent_scan"]:
        missing.append("latent-dimension scans in run.json 'training'")
    return missing


def to_json(value):
    """Plain Python types; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# -- writing ---------------------------------------------------------------------


def write_results(results_dir, histograms, run_info, progress=None):
    """Save the inputs (``histograms.pkl``, ``run.json``), then every output."""
    results_dir = Path(results_dir)
    _mkdir(results_dir)
    _atomic(results_dir / HISTOGRAMS_FILE, lambda f: pickle.dump(histograms, f), "wb")
    write_json_atomic(results_dir / RUN_FILE, to_json(run_info))
    return write_outputs(results_dir, histograms, run_info, progress=progress)


def write_outputs(results_dir, histograms, run_info, progress=None):
    """Write results.json, REPORT.md, histograms.root and the plots; return results.

    ``progress``, if given, is called with a short description of each step.
    """
    from analysis import plots, report  # matplotlib only when writing

    results_dir = Path(results_dir)
    _mkdir(results_dir)
    step = progress or (lambda _text: None)
    study = Study(histograms, run_info)

    step("computing efficiencies and uncertainties")
    results = compute_results(study)

    step("writing histograms.root")
    write_root(results_dir / "histograms.root", histograms)

    step("drawing plots")
    results["plots"] = plots.write_all(study, results, results_dir / "plots")

    write_json_atomic(results_dir / "results.json", results)
    step("writing REPORT.md")
    text = report.render(results)
    _atomic(results_dir / "REPORT.md", lambda f: f.write(text), "w")
    return results


def write_root(path, histograms):
    """One TH1D/TH2D per category: ``loss/<dataset>/<model>``, ``mass/<dataset>``..."""
    import uproot

    with atomic_path(path) as partial, uproot.recreate(partial) as out:
        for key, h in _root_objects(histograms):
            out[key] = h


def _root_objects(histograms):
    for name in HISTOGRAMS:
        h = histograms[name]
        datasets = list(h.axes["dataset"])
        models = list(h.axes["model"]) if "model" in h.axes.name else [None]
        for dataset in datasets:
            for model in models:
                where = {"dataset": dataset}
                if model is not None:
                    where["model"] = model
                parts = [name, dataset] + ([model] if model else [])
                one = h[where]
                one.name = _root_title(name, dataset, model)  # uproot's title
                yield "/".join(_root_name(part) for part in parts), one


def _root_title(name, dataset, model):
    """What a histogram holds and in which units: a user reading the ROOT file
    alone sees the normalization that the report applies."""
    what = f"{name} of {dataset}" + (f", model {model}" if model else "")
    return (
        f"{what}: evaluation jets only (odd Event.Number, half the sample), each "
        "weighted xsec_pb / sum_weights (pb per jet; 1 with --unit-weight); "
        "events at a luminosity L [pb^-1]: 2 x L x content"
    )


def _root_name(part):
    # ROOT paths use '/' between directories and ';' or ':' for cycles.
    return re.sub(r"[/:;]", "_", part)


def load_results_inputs(results_dir):
    """(histograms, run_info) saved in a results folder by :func:`write_results`.

    ``histograms.pkl`` is a pickle: open only results folders you trust.
    """
    import json

    results_dir = Path(results_dir)
    pkl, run = results_dir / HISTOGRAMS_FILE, results_dir / RUN_FILE
    for path in (pkl, run):
        if not path.is_file():
            inner = results_dir / "results"
            hint = (
                f"did you mean {inner} (the results folder inside the run's output)?"
                if (inner / HISTOGRAMS_FILE).is_file()
                else "a results folder is OUT/results of 'aejets run --out OUT'"
            )
            raise InputError(f"{path} does not exist; {hint}")
    try:
        with pkl.open("rb") as handle:
            histograms = pickle.load(handle)
    except (
        # A damaged pickle fails in any of these ways, depending on where.
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
    ) as err:
        raise InputError(
            f"{pkl} is not a readable pickle of hist objects ({err}); "
            "rerun 'aejets run' to rebuild it"
        ) from err
    if not isinstance(histograms, dict) or any(k not in histograms for k in HISTOGRAMS):
        found = sorted(histograms) if isinstance(histograms, dict) else type(histograms)
        raise InputError(
            f"{pkl} must hold a dict with keys {', '.join(HISTOGRAMS)}; found {found}"
        )
    try:
        run_info = json.loads(run.read_text())
    except json.JSONDecodeError as err:
        raise InputError(
            f"{run} is not valid JSON (line {err.lineno}: {err.msg})"
        ) from err
    return histograms, run_info


def _mkdir(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create the results folder {path}: {err.strerror}"
        ) from err


def _atomic(path, write, mode):
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename."""
    with atomic_path(path) as partial, partial.open(mode) as handle:
        write(handle)
