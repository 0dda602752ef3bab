"""The whole chain of ``aejets run``, one function a step.

samples (generate what is missing) -> images (training datasets) -> models (train
what is not cached) -> scores and histograms (every dataset) -> results folder.

Every step writes under ``out`` and is skipped when its outputs are complete, so a
rerun after an interruption computes only what is missing. Progress goes through
``progress(stage, total)`` factories given by the command line; nothing here prints.
"""

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import ConfigError
from analysis.fileset import load_fileset, write_json_atomic

__all__ = [
    "RunPaths",
    "build_images",
    "jet_config",
    "prepare_fileset",
    "run_info",
    "score",
    "train_models",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    out: Path

    @property
    def samples(self):
        return self.out / "samples"

    @property
    def fileset(self):
        return self.out / "fileset.json"

    @property
    def images(self):
        return self.out / "images"

    @property
    def models(self):
        return self.out / "models"

    @property
    def scores(self):
        return self.out / "scores"

    @property
    def results(self):
        return self.out / "results"


def _no_progress(stage, total):
    return lambda n: None


def prepare_fileset(config, paths, progress=_no_progress):
    """The fileset of this run: the user's files, plus generated ones where missing.

    Datasets with files are used as they are. Datasets with no files and a
    ``generate`` recipe are generated into ``OUT/samples/<dataset>/`` with the
    profile's event count (0 drops the dataset). The result is written to
    ``OUT/fileset.json`` and returned with absolute paths.
    """
    from generation import generate_sample

    source = load_fileset(config.fileset)
    fileset = {}
    for name, entry in source.items():
        if entry["files"]:
            fileset[name] = entry
            continue
        recipe = entry["metadata"].get("generate")
        if recipe is None:
            raise ConfigError(
                f"{config.fileset}: dataset {name!r} has no files and no 'generate' "
                "recipe; list its Delphes files or add a recipe"
            )
        events = config.events.get(name, recipe.get("events", 0))
        if events <= 0:
            log.info(
                "dataset %s: 0 events in profile %r, skipped", name, config.profile
            )
            continue
        result = generate_sample(
            recipe["process"],
            events,
            paths.samples / name,
            seed=recipe.get("seed", 1),
            jobs=config.jobs,
            shower=recipe.get("shower", "pythia"),
            progress=progress(f"generate {name}", events),
            particles=recipe.get("particles", config.particles),
            **({"mass": recipe["mass"]} if "mass" in recipe else {}),
        )
        metadata = dict(entry["metadata"], **result.metadata)
        fileset[name] = {
            "files": {str(f): "Delphes" for f in result.files},
            "metadata": metadata,
        }
    write_json_atomic(paths.fileset, fileset)
    return fileset


def content_hash(*parts):
    """A short hash of JSON-serializable parts: the cache key of trained models."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def jet_config(config):
    """The image processor's jet settings from the run configuration."""
    from processors.jets import JetConfig

    images = config.images
    return JetConfig(
        constituents=images.constituents,
        radius=images.radius,
        pt_range=tuple(images.pt_range),
        eta_max=images.eta_max,
    )


def training_datasets(config):
    """The datasets whose images train the models: background plus contaminations."""
    names = [config.train_dataset]
    if config.contamination is not None:
        names.append(config.contamination.signal)
    return names


def _inputs_identity(files):
    """Input files as (name, size): unchanged when the run folder is moved or
    copied, so that its images and models are reused there. Generated file names
    carry every setting; a file that cannot be stat'ed (remote) counts by path."""
    identity = []
    for file in sorted(files):
        try:
            identity.append([Path(file).name, Path(file).stat().st_size])
        except OSError:
            identity.append([str(file), None])
    return identity


def build_images(config, fileset, paths, client, progress=_no_progress):
    """Jet images of the training datasets as Parquet, skipped when up to date.

    A dataset's images are up to date when ``images/<dataset>/inputs.json`` records
    the same input files and jet settings as now.
    """
    from processors.image_processor import ImageProcessor, clear_parts, write_report
    from processors.runner import run as run_processor

    jets = jet_config(config)
    reports = {}
    for name in training_datasets(config):
        if name not in fileset:
            raise ConfigError(
                f"dataset {name!r} is needed for training but is not in the fileset "
                f"(it has {', '.join(sorted(fileset))}); add it or give it events"
            )
        folder = paths.images / name
        key = content_hash(_inputs_identity(fileset[name]["files"]), jets.model_dump())
        marker = folder / "inputs.json"
        if marker.exists() and json.loads(marker.read_text()).get("key") == key:
            log.info("images of %s are up to date in %s", name, folder)
            reports[name] = json.loads((folder / "report.json").read_text())
            continue
        clear_parts(folder)
        marker.unlink(missing_ok=True)
        result = run_processor(
            {name: fileset[name]},
            ImageProcessor(jets, out_dir=paths.images),
            scheduler=client,
            step_size=config.chunk_size,
            progress=progress(f"images {name}", None),
        )
        reports[name] = write_report(folder, name, result, jets)
        write_json_atomic(marker, {"key": key})
    return reports


def train_models(config, paths, progress=_no_progress):
    """Train every model of the configuration that is not trained yet.

    A trained model is reused when its card's ``cache_key`` (a hash of the training
    data's content hash and the model settings) matches: changing the samples, the
    images or a setting retrains it.
    """
    from models.data import prepare_training_data
    from models.io import load_card, save_model
    from models.training import train

    cards = {}
    for spec in config.all_models():
        data = prepare_training_data(
            paths.images, config.train_dataset, spec.contamination, 0.1, spec.seed
        )
        key = content_hash(data.content_hash, spec.model_dump())
        folder = paths.models / spec.name
        partial = paths.models / f"{spec.name}.partial"
        if (folder / "card.json").exists():
            card = load_card(folder)
            if card.get("cache_key") == key:
                log.info("model %s is up to date in %s", spec.name, folder)
                cards[spec.name] = card
                continue
        scorer, card = train(
            spec.architecture,
            paths.images,
            config.train_dataset,
            latent=spec.latent,
            epochs=spec.epochs,
            preset=spec.preset,
            seed=spec.seed,
            contamination=spec.contamination,
            data=data,
            progress=progress(f"train {spec.name}", None),
            # An interrupted training resumes from its last epoch on a rerun.
            checkpoint_dir=partial,
        )
        card.update(name=spec.name, cache_key=key)
        save_model(scorer, folder, card)
        shutil.rmtree(partial, ignore_errors=True)
        cards[spec.name] = card
    return cards


def latent_scan(config, paths, progress=_no_progress):
    """Validation loss against k on background only (cached like the models)."""
    from models.latent import latent_scan as scan

    settings = config.latent_scan
    if settings is None:
        return None
    target = paths.models / "latent_scan.json"
    key = content_hash(
        settings.model_dump(), sorted(paths.images.glob("*/inputs.json"))
    )
    if target.exists():
        cached = json.loads(target.read_text())
        if cached.get("cache_key") == key:
            return cached
    result = scan(
        paths.images,
        config.train_dataset,
        settings.latents,
        tuple(settings.architectures),
        epochs=settings.epochs,
        progress=progress("latent scan", None),
    )
    result["cache_key"] = key
    write_json_atomic(target, result)
    return result


def score(config, fileset, paths, client, triton_url=None, progress=_no_progress):
    """Scores of every selected jet of every dataset, and the filled histograms."""
    from processors.score_processor import score_fileset

    return score_fileset(
        fileset,
        paths.models,
        triton_url=triton_url,
        names=[spec.name for spec in config.all_models()],
        jet_config=jet_config(config),
        out_dir=paths.scores,
        step_size=config.chunk_size,
        unit_weight=config.unit_weight,
        scheduler=client,
        progress=progress("score", None),
        # Files scored by an interrupted run are reused; the key covers the model
        # contents, the settings and the server, so nothing stale comes back.
        cache_dir=paths.out / ".cache" / "scores",
    )


def run_info(config, fileset, cards, scan, score_report, image_reports):
    """What ``run.json`` records: everything the results are computed from."""
    settings = config.results.model_dump()
    settings["window"] = list(settings["window"])
    return {
        "profile": config.profile,
        "config": json.loads(config.model_dump_json()),
        "datasets": {name: entry["metadata"] for name, entry in fileset.items()},
        "models": cards,
        "settings": settings,
        "training": {"latent_scan": scan} if scan else {},
        "images": image_reports,
        "scores": score_report,
    }
