"""Fat jets from Delphes constituents: collection, cleaning, clustering, truth.

Pipeline of :func:`cluster_jets`, on eager awkward arrays of one chunk of events:

1. constituents: the configured collections (energy-flow objects by default,
   calorimeter towers as an option) concatenated per event, as (pt, eta, phi, mass);
   photons, neutral hadrons and towers are massless, tracks carry their mass;
2. cleaning: a constituent whose pT is not finite and positive, whose phi or mass
   is not finite, or whose abs(eta) is not below 100, is dropped and counted per
   event;
3. clustering: anti-kT with fastjet (radius ``JetConfig.radius``) on the cleaned
   constituents;
4. selection: the ``max_jets`` leading jets of each event by pT, kept when
   ``pt_range[0] < pT < pt_range[1]`` and ``abs(eta) < eta_max`` (pseudorapidity);
5. truth (signal processes only, :func:`truth_flags`): the resonance and its partonic
   daughters within ``truth_radius`` of the jet axis.

The configuration (:class:`JetConfig`) holds every default in one place and is
validated when built. Dask mode is handled one level up, in
:mod:`processors.image_processor`, which maps these eager functions over partitions.
"""

from typing import Literal

import awkward as ak
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from analysis.errors import ConfigError

__all__ = [
    "ConstituentSource",
    "JetConfig",
    "clean_constituents",
    "clean_flat",
    "cluster_jets",
    "cluster_momenta",
    "delta_r",
    "four_momenta_flat",
    "jet_constituents",
    "jet_constituents_flat",
    "truth_flags",
]

MAX_ABS_ETA = 100.0
W_PID = 24


class ConstituentSource(BaseModel):
    """One Delphes collection used as jet constituents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pt: str = "PT"  # "ET" for towers and calorimeter energy-flow objects
    mass: str | None = None  # None: massless


EFLOW = (
    ConstituentSource(name="EFlowTrack", pt="PT", mass="Mass"),
    ConstituentSource(name="EFlowPhoton", pt="ET"),
    ConstituentSource(name="EFlowNeutralHadron", pt="ET"),
)
TOWERS = (ConstituentSource(name="Tower", pt="ET"),)


class JetConfig(BaseModel):
    """Everything that defines the selected fat jets; defaults follow physics.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constituents: Literal["eflow", "towers"] = "eflow"
    eflow_collections: tuple[ConstituentSource, ...] = EFLOW
    tower_collections: tuple[ConstituentSource, ...] = TOWERS
    radius: float = Field(1.5, gt=0, le=10)
    pt_range: tuple[float, float] = (800.0, 900.0)
    eta_max: float = Field(1.0, gt=0)
    max_jets: int | None = Field(1, ge=1)  # leading jets per event; None: all
    truth_radius: float = Field(0.6, gt=0)
    particle_collection: str = "Particle"
    resonance_pid: dict[str, int] = Field(
        default_factory=lambda: {"top": 6, "gluino": 1000021}
    )
    n_daughters: dict[str, int] = Field(default_factory=lambda: {"top": 3, "gluino": 3})

    @model_validator(mode="after")
    def _check(self):
        low, high = self.pt_range
        if not 0 <= low < high:
            raise ValueError(f"pt_range {self.pt_range} must satisfy 0 <= low < high")
        missing = sorted(set(self.resonance_pid) - set(self.n_daughters))
        if missing:
            raise ValueError(f"n_daughters lacks the processes {missing}")
        if not self.sources:
            raise ValueError(f"no constituent collection for {self.constituents!r}")
        return self

    @property
    def sources(self):
        """The constituent collections in use."""
        if self.constituents == "eflow":
            return self.eflow_collections
        return self.tower_collections

    def resonance_for(self, process):
        """PID of the resonance of a signal process; ConfigError if unknown."""
        try:
            return self.resonance_pid[process]
        except KeyError as err:
            raise ConfigError(
                f"signal process {process!r} has no resonance PID; known processes: "
                f"{', '.join(sorted(self.resonance_pid))}. Set the fileset metadata "
                "'process' to one of them, or 'signal' to false for a background"
            ) from err


def _as_float(array):
    return ak.values_astype(ak.without_parameters(array), np.float64)


def _flat(array):
    """(events, var) awkward -> (counts (events,), flat float64 numpy values)."""
    counts = ak.to_numpy(ak.num(array, axis=1))
    return counts, np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), np.float64)


def clean_constituents(pt, eta, phi, mass):
    """Drop constituents without a usable momentum or direction.

    All arguments are (events, var) awkward arrays. Returns the cleaned
    ``(pt, eta, phi, mass)`` as float64 and the number dropped per event,
    (events,).
    """
    counts, pt = _flat(pt)
    eta, phi, mass = (_flat(a)[1] for a in (eta, phi, mass))
    kept, cleaned, dropped = clean_flat(counts, pt, eta, phi, mass)
    return (*(ak.unflatten(a, kept) for a in cleaned), ak.Array(dropped))


def clean_flat(counts, pt, eta, phi, mass):
    """:func:`clean_constituents` on flat numpy arrays.

    ``counts``: (events,) constituents per event; the others (constituents,)
    float64. Returns ``(kept counts (events,), (pt, eta, phi, mass) cleaned,
    dropped (events,))``. Usable: finite positive pT, finite eta, phi and mass,
    and abs(eta) < 100 (beyond, pT sinh(eta) may overflow; no detector sees it).
    """
    with np.errstate(invalid="ignore"):
        good = (
            np.isfinite(pt)
            & (pt > 0)
            & (np.abs(eta) < MAX_ABS_ETA)
            & np.isfinite(phi)
            & np.isfinite(mass)
        )
    event = np.repeat(np.arange(len(counts)), counts)  # (constituents,)
    kept = np.bincount(event[good], minlength=len(counts))  # (events,)
    return kept, tuple(a[good] for a in (pt, eta, phi, mass)), counts - kept


def four_momenta_flat(counts, pt, eta, phi, mass):
    """(events, var) Momentum4D records (px, py, pz, E) from flat numpy arrays."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    flat = ak.zip({"px": px, "py": py, "pz": pz, "E": energy})
    return ak.with_name(ak.unflatten(flat, counts), "Momentum4D")


def _four_momenta(pt, eta, phi, mass):
    counts, pt = _flat(pt)
    return four_momenta_flat(counts, pt, *(_flat(a)[1] for a in (eta, phi, mass)))


def _jet_kinematics(jets):
    pt = np.hypot(jets.px, jets.py)
    eta = np.arcsinh(jets.pz / pt)
    phi = np.arctan2(jets.py, jets.px)
    mass2 = jets.E**2 - jets.px**2 - jets.py**2 - jets.pz**2
    mass = np.sqrt(ak.where(mass2 > 0, mass2, 0.0))
    return pt, eta, phi, mass


def cluster_jets(pt, eta, phi, mass, config):
    """Cluster cleaned constituents and select jets.

    Inputs are (events, var) float64 arrays of cleaned constituents. Returns a dict
    of (events, var) arrays for the selected jets: ``pt``, ``eta``, ``phi``,
    ``mass`` and ``index`` (events, jets, var) with each jet's constituent indices
    into the event's constituent list; and ``rejected``: {reason: (events,) int64}
    for the other jets with pT >= ``pt_range[0]``: ``rank`` (beyond ``max_jets``),
    ``pt`` (outside the pT window), ``eta`` (abs(eta) >= ``eta_max``).
    """
    return cluster_momenta(_four_momenta(pt, eta, phi, mass), config)


def cluster_momenta(momenta, config):
    """:func:`cluster_jets` from (events, var) Momentum4D records."""
    # fastjet prints a banner on its first clustering in a process (each dask
    # worker): spent on /dev/null once.
    from generation.detector.jets import quiet_fastjet

    fastjet = quiet_fastjet()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)
    sequence = fastjet.ClusterSequence(momenta, definition)
    # Jets below the pT window never pass, and the leading jets above it are the
    # leading jets overall: asking fastjet for those alone saves most of the
    # constituent bookkeeping.
    low, high = config.pt_range
    jets = sequence.inclusive_jets(min_pt=low)  # (events, jets)
    index = sequence.constituent_index(min_pt=low)  # (events, jets, constituents)

    jet_pt, jet_eta, jet_phi, jet_mass = _jet_kinematics(jets)
    order = ak.argsort(jet_pt, axis=1, ascending=False)
    if config.max_jets is not None:
        order = order[:, : config.max_jets]
    in_pt = (jet_pt[order] > low) & (jet_pt[order] < high)  # (events, ranked)
    in_eta = abs(jet_eta[order]) < config.eta_max
    keep = order[in_pt & in_eta]
    # Every jet with pT >= low is selected or rejected for exactly one reason.
    rejected = {
        "rank": ak.num(jet_pt, axis=1) - ak.num(order, axis=1),
        "pt": ak.sum(~in_pt, axis=1),
        "eta": ak.sum(in_pt & ~in_eta, axis=1),
    }
    return {
        "pt": jet_pt[keep],
        "eta": jet_eta[keep],
        "phi": jet_phi[keep],
        "mass": jet_mass[keep],
        "index": index[keep],
        "rejected": {k: ak.to_numpy(v).astype(np.int64) for k, v in rejected.items()},
    }


def jet_constituents(index, *arrays):
    """The constituents of each jet, as (jets, var) arrays.

    ``index``: (events, jets, var) constituent indices per jet, as from
    :func:`cluster_jets`; ``arrays``: (events, var) constituent quantities.
    Returns one (jets, var) array per quantity, in the order given.
    """
    sizes = ak.to_numpy(ak.num(arrays[0], axis=1))  # (events,)
    return jet_constituents_flat(index, sizes, *(_flat(a)[1] for a in arrays))


def jet_constituents_flat(index, sizes, *flat):
    """:func:`jet_constituents` from (constituents,) numpy arrays and (events,)
    sizes."""
    starts = np.cumsum(sizes) - sizes
    flat_index = ak.flatten(index + starts, axis=1)  # (jets, var), global indices
    counts = ak.to_numpy(ak.num(flat_index, axis=1))
    take = ak.to_numpy(ak.flatten(flat_index, axis=1))
    return tuple(ak.unflatten(a[take], counts) for a in flat)


def delta_r(eta1, phi1, eta2, phi2):
    """Angular distance with the phi difference folded into (-pi, pi]."""
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def _gather(values, index):
    """values[event][index[event][...]] for (events, var) values, -1 -> None."""
    safe = ak.where(index >= 0, index, 0)
    return ak.where(index >= 0, values[safe], -1)


def truth_flags(jet_eta, jet_phi, particles, resonance_pid, n_daughters, radius):
    """Match and merge flags of each jet to the resonance of a signal process.

    ``jet_eta``/``jet_phi``: (events, jets); ``particles``: the Particle record
    (events, particles) with PID, D1, D2, Eta, Phi, where D1 and D2 index the same
    event's particles (-1: none). The resonance is the last copy of
    ``abs(PID) == resonance_pid`` (its first daughter is not a copy); the jet is
    matched to the nearest one within ``radius``. Its partonic daughters are the
    quarks among its daughters plus the quarks among the daughters of the last copy
    of a W among them; the jet is merged when it is matched, there are exactly
    ``n_daughters`` of them, and all lie within ``radius``.
    Returns ``(matched, merged)``, booleans (events, jets).
    """
    pid = abs(ak.values_astype(particles.PID, np.int64))  # (events, particles)
    d1 = ak.values_astype(particles.D1, np.int64)
    d2 = ak.values_astype(particles.D2, np.int64)
    p_eta, p_phi = _as_float(particles.Eta), _as_float(particles.Phi)
    index = ak.local_index(pid, axis=1)

    last = (pid == resonance_pid) & (abs(_gather(pid, d1)) != resonance_pid)
    res_index = index[last]  # (events, resonances)
    dr = delta_r(
        jet_eta[:, :, None],
        jet_phi[:, :, None],
        p_eta[res_index][:, None, :],
        p_phi[res_index][:, None, :],
    )  # (events, jets, resonances)
    res_index, dr = ak.broadcast_arrays(res_index[:, None, :], dr)
    nearest = ak.argmin(dr, axis=2, keepdims=True)
    best_dr = ak.fill_none(ak.firsts(dr[nearest], axis=2), np.inf)  # (events, jets)
    best_res = ak.fill_none(ak.firsts(res_index[nearest], axis=2), -1)
    matched = best_dr < radius

    quark = ((pid >= 1) & (pid <= 5))[:, None, :]  # (events, 1, particles)
    is_w = (pid == W_PID)[:, None, :]
    in_res = _in_range(index, _gather(d1, best_res), _gather(d2, best_res))
    w_first = _first_index(index, in_res & is_w)  # (events, jets)
    w_last = _last_copy(w_first, pid, d1)
    in_w = _in_range(index, _gather(d1, w_last), _gather(d2, w_last))
    daughters = (in_res | in_w) & quark  # (events, jets, particles)

    near = (
        delta_r(
            jet_eta[:, :, None],
            jet_phi[:, :, None],
            p_eta[:, None, :],
            p_phi[:, None, :],
        )
        < radius
    )
    count = ak.sum(daughters, axis=2)
    count_near = ak.sum(daughters & near, axis=2)
    merged = matched & (count == n_daughters) & (count_near == n_daughters)
    return matched, merged


def _in_range(index, first, last):
    """(events, jets, particles): first <= particle index <= last, none if -1."""
    lo, hi = first[:, :, None], last[:, :, None]
    return (index[:, None, :] >= lo) & (index[:, None, :] <= hi) & (lo >= 0)


def _first_index(index, mask):
    """(events, jets): the smallest particle index where mask holds, else -1."""
    big = np.iinfo(np.int64).max
    first = ak.min(ak.where(mask, index[:, None, :], big), axis=2)
    return ak.fill_none(ak.where(first == big, -1, first), -1)


def _last_copy(start, pid, d1, max_depth=64):
    """Follow first daughters while they are copies of the same particle."""
    current = start  # (events, jets), -1 for none
    for _ in range(max_depth):  # over copy generations, never over events
        nxt = _gather(d1, current)
        step = (
            (current >= 0) & (nxt >= 0) & (_gather(pid, nxt) == _gather(pid, current))
        )
        if not ak.any(step):
            break
        current = ak.where(step, nxt, current)
    return current
