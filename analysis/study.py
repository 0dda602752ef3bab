"""What a results folder holds, read once: settings, model groups and histogram slices.

A :class:`Study` wraps the histograms of ``processors.histograms.book`` (after
compute) and ``run.json``. It answers "what is there" questions (which signals,
which models, which alternative-shower datasets) so that the result, plot and
report code can produce what the inputs allow and name what is missing.

Models that differ only by their training seed form one :class:`ModelGroup`; its
numbers are the mean over seeds, its error adds the seed spread.
"""

import re
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from analysis.config import ResultSettings
from analysis.errors import ConfigError, InputError
from analysis.statistics import Binned, binned

__all__ = ["MASS_MODEL", "ModelGroup", "Settings", "Study"]

MASS_MODEL = "mass"  # the name of the jet-mass baseline in results.json
DEFAULT_LATENT = 6  # the study's latent dimension; other values are labelled
HISTOGRAMS = ("loss", "mass_loss", "mass")
_CONTAMINATED_NAME = re.compile(
    r"^(?P<arch>[a-z]+)_(?P<signal>[a-z]+)(?P<fraction>[0-9.]+)$"
)


@dataclass(frozen=True)
class Settings:
    """Result settings: the validated ``ResultSettings`` plus report-only extras.

    The first six come from ``analysis.config.ResultSettings`` (defaults there);
    build with :meth:`from_run`.
    """

    lumi_fb: float
    window: tuple
    bump_model: str
    bump_cut_qcd_eff: float
    background: str
    signals: tuple
    bump_signal: str = "gluino"
    alt_shower_suffix: str = "_vincia"
    # The score processor fills only the evaluation half of the events (odd
    # Event.Number, analysis.split) with weights normalized to the whole sample;
    # yields are divided by this fraction to stand for the full cross section.
    eval_fraction: float = 0.5
    qcd_keep_fractions: tuple = (0.1, 0.01, 0.001)
    bootstrap_replicas: int = 200
    bootstrap_seed: int = 1

    @classmethod
    def from_run(cls, settings):
        settings = dict(settings or {})
        known = {k: v for k, v in settings.items() if k in ResultSettings.model_fields}
        try:
            base = ResultSettings.model_validate(known).model_dump()
        except ValidationError as err:
            raise ConfigError(f"run.json 'settings' are invalid: {err}") from err
        extras = {
            k: settings[k]
            for k in cls.__dataclass_fields__
            if k in settings and k not in base
        }
        fields = cls.__dataclass_fields__
        merged = {k: v for k, v in {**base, **extras}.items() if k in fields}
        for key in ("window", "signals", "qcd_keep_fractions"):
            if key in merged:
                merged[key] = tuple(merged[key])
        _check_extras(merged)
        return cls(**merged)

    @property
    def lumi_pb(self):
        return self.lumi_fb * 1000.0


def _check_extras(merged):
    """The checks ``ResultSettings`` does not make; the message names the key."""
    problems = []
    lo, hi = merged.get("window", (0.0, 1.0))
    if not lo < hi:
        problems.append(f"window [{lo}, {hi}] is empty; give [low, high] in GeV")
    if not 0 < float(merged.get("eval_fraction", 0.5)) <= 1:
        problems.append(f"eval_fraction {merged['eval_fraction']!r} is not in (0, 1]")
    bad = [f for f in merged.get("qcd_keep_fractions", ()) if not 0 < f < 1]
    if bad:
        problems.append(f"qcd_keep_fractions {bad} are not in (0, 1)")
    if problems:
        raise ConfigError("run.json settings: " + "; ".join(problems))


@dataclass
class ModelGroup:
    """Trained models that differ only by their seed."""

    name: str
    architecture: str
    latent: int | None
    contamination: tuple | None  # (signal, fraction) or None
    members: list = field(default_factory=list)  # model names, one per seed
    seeds: list = field(default_factory=list)

    @property
    def label(self):
        text = {"pca": "PCA", "dense": "Dense AE", "cnn": "CNN AE"}.get(
            self.architecture, self.name
        )
        if self.latent is not None and self.latent != DEFAULT_LATENT:
            text += f" (k = {self.latent})"
        if self.contamination:
            signal, fraction = self.contamination
            text += f" ({fraction:.0%} {signal})"
        return text


def _contamination(card, name):
    value = card.get("contamination")
    if isinstance(value, dict):
        return (str(value.get("signal")), float(value.get("fraction", 0.0)))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (str(value[0]), float(value[1]))
    if isinstance(value, str) and ":" in value:
        signal, fraction = value.split(":", 1)
        return (signal, float(fraction))
    if value is None and not card:
        match = _CONTAMINATED_NAME.match(name)
        if match:
            return (match["signal"], float(match["fraction"]))
    return None


def _describe(name, card):
    architecture = str(card.get("architecture") or name.split("_")[0])
    latent = card.get("latent", card.get("k"))
    contamination = _contamination(card, name)
    if contamination is not None and contamination[1] == 0:
        contamination = None
    return architecture, latent, contamination, card.get("preset"), card.get("seed")


def group_models(model_names, cards):
    """{group name: ModelGroup}; models equal but for the seed share a group.

    "Equal" means the same architecture, latent dimension, contamination and
    preset (CNN width) in the model card.
    """
    groups = {}
    for name in sorted(model_names):
        card = cards.get(name) or {}
        architecture, latent, contamination, preset, seed = _describe(name, card)
        key = (architecture, latent, contamination, preset)
        group = groups.setdefault(
            key, ModelGroup(name, architecture, latent, contamination)
        )
        group.members.append(name)
        group.seeds.append(seed)
    out = {}
    for group in groups.values():
        group.name = min(group.members, key=lambda n: (len(n), n))
        out[group.name] = group
    return out


class Study:
    """The inputs of a results folder and slices of its histograms."""

    def __init__(self, histograms, run_info):
        missing = [name for name in HISTOGRAMS if name not in histograms]
        if missing:
            raise InputError(
                f"histograms lack {', '.join(missing)}; expected the keys "
                f"{', '.join(HISTOGRAMS)} from processors.histograms.book()"
            )
        self.histograms = histograms
        self.run_info = run_info or {}
        self.settings = Settings.from_run(self.run_info.get("settings"))
        self.datasets = self._categories("loss", "dataset") | self._categories(
            "mass", "dataset"
        )
        cards = self.run_info.get("models") or {}
        self.groups = group_models(self._categories("loss", "model"), cards)

    def _categories(self, hist_name, axis):
        return set(self.histograms[hist_name].axes[axis])

    # -- what is there -------------------------------------------------------

    @property
    def background(self):
        return self.settings.background

    def signals(self):
        return [s for s in self.settings.signals if s in self.datasets]

    def nominal_groups(self):
        return [g for g in self.groups.values() if g.contamination is None]

    def contaminated_groups(self):
        return [g for g in self.groups.values() if g.contamination is not None]

    def alternative(self, dataset):
        name = f"{dataset}{self.settings.alt_shower_suffix}"
        return name if name in self.datasets else None

    def bump_group(self):
        wanted = self.settings.bump_model
        if wanted in self.groups:
            return self.groups[wanted]
        matches = [g for g in self.nominal_groups() if g.architecture == wanted]
        return matches[0] if matches else None

    # -- histogram slices ----------------------------------------------------

    def loss(self, dataset, model):
        """:class:`Binned` loss distribution, or None if not filled."""
        h = self.histograms["loss"]
        if dataset not in h.axes["dataset"] or model not in h.axes["model"]:
            return None
        return _nonempty(binned(h[{"dataset": dataset, "model": model}]))

    def mass(self, dataset):
        """:class:`Binned` jet-mass distribution (the baseline score), or None."""
        h = self.histograms["mass"]
        if dataset not in h.axes["dataset"]:
            return None
        return _nonempty(binned(h[{"dataset": dataset}]))

    def mass_loss(self, dataset, model):
        """2D ``hist.Hist`` (mass, loss) of one dataset and model, or None."""
        h = self.histograms["mass_loss"]
        if dataset not in h.axes["dataset"] or model not in h.axes["model"]:
            return None
        one = h[{"dataset": dataset, "model": model}]
        return one if one.values(flow=True).sum() > 0 else None


def _nonempty(dist: Binned):
    return dist if dist.total > 0 and np.isfinite(dist.total) else None
