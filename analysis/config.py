"""Configuration of ``aejets run``: profiles, validated once, defaults in one place.

A run is described by a :class:`RunConfig`. It starts from a named profile in
``profiles.yaml`` (``quick``, ``paper``, ``tiny``) and takes overrides from a YAML or
JSON file given with ``--config``; both are validated here, so a misspelled key or an
impossible value stops the run before anything is computed.
"""

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analysis.errors import ConfigError

__all__ = ["RunConfig", "ModelSpec", "load_config", "profile_names"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    architecture: Literal["pca", "dense", "cnn"]
    latent: int = Field(6, ge=1, le=1369)
    epochs: int = Field(20, ge=1)
    preset: Literal["cpu", "paper", "auto"] = "auto"
    seed: int = 1
    contamination: tuple[str, float] | None = None

    @property
    def name(self):
        if self.contamination is None:
            return self.architecture
        signal, fraction = self.contamination
        return f"{self.architecture}_{signal}{fraction:g}"


class Contamination(_Strict):
    architecture: Literal["pca", "dense", "cnn"] = "cnn"
    signal: str = "top"
    fractions: list[float] = Field(default_factory=lambda: [0.05])

    @model_validator(mode="after")
    def _fractions_in_range(self):
        bad = [f for f in self.fractions if not 0 < f < 1]
        if bad:
            raise ValueError(f"contamination fractions must lie in (0, 1), got {bad}")
        return self


class LatentScan(_Strict):
    """Validation loss against latent dimension, on background only."""

    latents: list[int] = Field(default_factory=lambda: [1, 2, 4, 6, 8, 12, 16, 32])
    architectures: list[Literal["pca", "dense", "cnn"]] = Field(
        default_factory=lambda: ["pca"]
    )
    epochs: int = Field(5, ge=1)


class ImageSettings(_Strict):
    pt_range: tuple[float, float] = (800.0, 900.0)
    eta_max: float = Field(1.0, gt=0)
    radius: float = Field(1.5, gt=0)
    constituents: Literal["eflow", "towers"] = "eflow"


class ResultSettings(_Strict):
    lumi_fb: float = Field(100.0, gt=0)
    window: tuple[float, float] = (300.0, 500.0)
    bump_model: str = "cnn"
    bump_cut_qcd_eff: float = Field(0.01, gt=0, lt=1)
    background: str = "qcd"
    signals: list[str] = Field(default_factory=lambda: ["top", "gluino"])


class RunConfig(_Strict):
    profile: str = "quick"
    description: str = ""
    fileset: Path = Path("datasets.json")
    events: dict[str, int] = Field(default_factory=dict)
    jobs: int = Field(1, ge=1)
    # "hard" keeps only the hard process and resonance decays in Particle (about a
    # third of the file size); truth matching needs nothing more.
    particles: Literal["all", "hard"] = "all"
    chunk_size: int = Field(2000, ge=1)
    train_dataset: str = "qcd"
    models: list[ModelSpec]
    contamination: Contamination | None = None
    latent_scan: LatentScan | None = None
    images: ImageSettings = Field(default_factory=ImageSettings)
    results: ResultSettings = Field(default_factory=ResultSettings)
    # Fill histograms with weight 1 instead of xsec_pb / sum_weights: for files
    # without cross sections; S/B then compares jet counts, not cross sections.
    unit_weight: bool = False

    @model_validator(mode="after")
    def _check(self):
        bad = {k: v for k, v in self.events.items() if v < 0}
        if bad:
            raise ValueError(f"event counts must not be negative: {bad}")
        if self.images.pt_range[0] >= self.images.pt_range[1]:
            raise ValueError(f"images.pt_range {self.images.pt_range} is empty")
        if self.results.window[0] >= self.results.window[1]:
            raise ValueError(f"results.window {self.results.window} is empty")
        if not self.models:
            raise ValueError("models is empty: list at least one model to train")
        names = [spec.name for spec in self.all_models()]
        if self.results.bump_model not in names:
            raise ValueError(
                f"results.bump_model {self.results.bump_model!r} is not one of the "
                f"models ({', '.join(names)}); set it to one of them"
            )
        return self

    def all_models(self):
        """The models to train: the listed ones, then the contaminated variants."""
        specs = list(self.models)
        if self.contamination is not None:
            base = next(
                (
                    m
                    for m in self.models
                    if m.architecture == self.contamination.architecture
                ),
                ModelSpec(architecture=self.contamination.architecture),
            )
            for fraction in self.contamination.fractions:
                specs.append(
                    base.model_copy(
                        update={"contamination": (self.contamination.signal, fraction)}
                    )
                )
        return specs


def profile_names():
    return sorted(_profiles())


def _profiles():
    text = resources.files("analysis").joinpath("profiles.yaml").read_text()
    return yaml.safe_load(text)


def load_config(profile="quick", path=None, **overrides):
    """Build the run configuration from a profile, a file and keyword overrides."""
    profiles = _profiles()
    if profile not in profiles:
        raise ConfigError(
            f"unknown profile {profile!r}; choose one of {', '.join(sorted(profiles))}"
        )
    values = dict(profiles[profile], profile=profile)
    if path is not None:
        values = _merge(values, _read_file(Path(path)))
    values = _merge(values, {k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        where = f"{path}" if path else f"profile {profile!r}"
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(f"invalid configuration in {where}: {problems}") from err


def _read_file(path):
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"configuration file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML or JSON: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: a configuration must be a mapping of keys to values"
        )
    return loaded


def _merge(base, update):
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
