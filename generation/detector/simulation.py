"""The detector chain of Delphes' CMS card, on a batch of Pythia events.

propagation -> tracking efficiency and smearing -> ECAL, HCAL -> energy flow ->
anti-kT jets -> missing ET. Every step is vectorized over all particles of the
batch; each Delphes collection comes out as a :class:`FlatCollection`: per-event
counts and flat per-object arrays named as Delphes' fields (without ``X.``).

Known simplifications, said here where a reader meets them: particles start at the
origin (displaced vertices only enter Track.X/Y/Z and D0/DZ); electrons, photons
and muons are not identified (no Electron/Photon/Muon collections); jets carry no
flavour, b-tag or substructure fields; ScalarHT sums jets only; references between
collections (TRef: Jet.Constituents, Track.Particle, Tower.Particles) are not
written.
"""

from dataclasses import dataclass

import awkward as ak
import numpy as np

from generation.detector import card
from generation.detector.calorimeter import (
    Calorimeter,
    Segmentation,
    simulate_calorimeter,
)
from generation.detector.jets import cluster, kinematics
from generation.detector.tracking import propagate, reconstruct_tracks
from generation.record import keep_mask, select_particles

__all__ = ["Detector", "FlatCollection", "simulate"]

# Pythia's production times are in mm/c; Delphes writes seconds.
MM_TO_SECONDS = 1e-3 / 299_792_458.0


@dataclass(frozen=True)
class Detector:
    ecal: Calorimeter
    hcal: Calorimeter

    @classmethod
    def cms(cls):
        return cls(
            ecal=Calorimeter(
                Segmentation(*card.ecal_segmentation()),
                card.ecal_sigma,
                *card.ECAL_THRESHOLDS,
                is_ecal=True,
            ),
            hcal=Calorimeter(
                Segmentation(*card.hcal_segmentation()),
                card.hcal_sigma,
                *card.HCAL_THRESHOLDS,
                is_ecal=False,
            ),
        )


@dataclass
class FlatCollection:
    """One Delphes collection of a batch: objects grouped by event."""

    counts: np.ndarray  # (events,)
    fields: dict  # {field: (objects,) array}

    @classmethod
    def from_events(cls, event, n_events, fields):
        """From per-object event indices; objects must be sorted by event."""
        return cls(np.bincount(event, minlength=n_events), fields)

    def __getitem__(self, name):
        return self.fields[name]

    @property
    def event(self):
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def to_awkward(self):
        """(events, objects) records."""
        return ak.unflatten(ak.zip(self.fields, depth_limit=1), self.counts)


def particle_collection(batch):
    """Every entry of the Pythia record, as Delphes' ``Particle``."""
    pt, eta, phi, _ = kinematics(batch.px, batch.py, batch.pz, batch.e)
    with np.errstate(divide="ignore", invalid="ignore"):
        rapidity = np.where(
            batch.e > np.abs(batch.pz),
            0.5 * np.log((batch.e + batch.pz) / (batch.e - batch.pz)),
            np.sign(batch.pz) * 999.9,
        )
    fields = {
        "PID": batch.pid,
        "Status": batch.status,
        "M1": batch.m1,
        "M2": batch.m2,
        "D1": batch.d1,
        "D2": batch.d2,
        # Delphes stores int(charge): fractional quark charges become 0.
        "Charge": np.trunc(batch.charge).astype(np.int32),
        "Mass": batch.mass,
        "E": batch.e,
        "Px": batch.px,
        "Py": batch.py,
        "Pz": batch.pz,
        "P": np.sqrt(pt**2 + batch.pz**2),
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "Rapidity": rapidity,
        "T": batch.t * MM_TO_SECONDS,
        "X": batch.x,
        "Y": batch.y,
        "Z": batch.z,
    }
    return FlatCollection(np.diff(batch.offsets), fields)


def simulate(batch, rng, detector=None, record="all"):
    """Run the detector on a :class:`generation.pythia.ParticleBatch`.

    ``record`` chooses the generator record written as ``Particle`` (see
    :mod:`generation.record`). Returns {collection name: :class:`FlatCollection`}.
    """
    detector = detector or Detector.cms()
    n_events = batch.n_events
    particles = particle_collection(batch)
    pt, eta, phi = particles["PT"], particles["Eta"], particles["Phi"]

    # 1. Stable particles and their paths to the calorimeter surface.
    final = np.flatnonzero(batch.pythia_status > 0)  # (stable,)
    abs_pid = np.abs(batch.pid[final])
    charge = batch.charge[final]
    hit = propagate(pt[final], eta[final], phi[final], batch.pz[final], charge)

    # 2. Tracks: charged particles that reached the calorimeter surface.
    charged = np.flatnonzero((charge != 0) & hit.reached)  # into `final`
    kept, smeared_pt, resolution = reconstruct_tracks(
        abs_pid[charged], pt[final][charged], eta[final][charged], rng
    )
    chosen = charged[kept]
    tracks = _tracks(batch, final[chosen], smeared_pt[kept], resolution[kept])
    tracks.update(
        {
            "EtaOuter": hit.eta[chosen],
            "PhiOuter": hit.phi[chosen],
            "XOuter": 1e3 * hit.x[chosen],
            "YOuter": 1e3 * hit.y[chosen],
            "ZOuter": 1e3 * hit.z[chosen],
            "L": 1e3 * hit.path[chosen],
        }
    )

    # 3. Calorimeters, then energy flow: tracks rescaled where the calorimeter
    # saw no significant neutral energy on top of them.
    ecal, hcal, track_scale = _calorimeters(detector, batch, final, hit, tracks, rng)
    track_event = tracks.pop("event")
    for helper in ("_sigma_rel", "_abs_pid"):
        tracks.pop(helper)
    eflow_tracks = dict(tracks)
    for name in ("PT", "P", "ErrorPT", "ErrorP"):
        eflow_tracks[name] = tracks[name] * track_scale
    if record == "hard":
        keep = keep_mask(batch.pid, batch.pythia_status)
        particles = FlatCollection(
            *select_particles(particles.counts, particles.fields, keep)
        )
    collections = {
        "Particle": particles,
        "Track": FlatCollection.from_events(track_event, n_events, tracks),
        "Tower": _towers(ecal, hcal, n_events),
        "EFlowTrack": FlatCollection.from_events(track_event, n_events, eflow_tracks),
        "EFlowPhoton": _neutrals(ecal, True, n_events),
        "EFlowNeutralHadron": _neutrals(hcal, False, n_events),
    }

    # 4. Jets and missing transverse momentum.
    eflow, eflow_counts = _eflow_constituents(collections, n_events)
    visible = final[~np.isin(abs_pid, card.GENJET_EXCLUDED)]
    generated = {
        "px": batch.px[visible],
        "py": batch.py[visible],
        "pz": batch.pz[visible],
        "E": batch.e[visible],
        "charge": np.rint(batch.charge[visible]).astype(np.int32),
        "eem": np.zeros(len(visible)),
        "ehad": np.zeros(len(visible)),
    }
    gen_counts = np.bincount(batch.event_index[visible], minlength=n_events)
    for name, inputs, counts, (radius, pt_min) in (
        ("GenJet", generated, gen_counts, card.GENJET),
        ("Jet", eflow, eflow_counts, card.JET),
        ("FatJet", eflow, eflow_counts, card.FATJET),
    ):
        collections[name] = FlatCollection(*cluster(inputs, counts, radius, pt_min))
    collections["MissingET"] = _missing_et(eflow, eflow_counts)
    jets = collections["Jet"]
    collections["ScalarHT"] = FlatCollection(
        np.ones(n_events, np.int64),
        {"HT": np.bincount(jets.event, jets["PT"], minlength=n_events)},
    )
    return collections


def _tracks(batch, index, pt, resolution):
    """Track fields of the particles ``index`` with smeared ``pt``."""
    px, py, pz = batch.px[index], batch.py[index], batch.pz[index]
    true_pt = np.hypot(px, py)
    eta = np.arcsinh(pz / true_pt)
    p = pt * np.cosh(eta)
    charge = np.rint(batch.charge[index]).astype(np.int32)
    x, y, z = batch.x[index], batch.y[index], batch.z[index]
    helix_radius_mm = 1e3 * pt / (0.299792458 * card.BZ)
    return {
        "event": batch.event_index[index],
        "PID": batch.pid[index],
        "Charge": charge,
        "P": p,
        "PT": pt,
        "Eta": eta,
        "Phi": np.arctan2(py, px),
        "CtgTheta": np.sinh(eta),
        "C": charge / (2.0 * helix_radius_mm),
        "Mass": batch.mass[index],
        "T": batch.t[index] * MM_TO_SECONDS,
        "X": x,
        "Y": y,
        "Z": z,
        # Straight-line impact parameters from the production vertex (mm).
        "D0": (x * py - y * px) / true_pt,
        "DZ": z - (x * px + y * py) / true_pt * pz / true_pt,
        "ErrorP": resolution * p,
        "ErrorPT": resolution * pt,
        "VertexIndex": np.zeros(len(index), np.int32),
        "_sigma_rel": resolution,
        "_abs_pid": np.abs(batch.pid[index]),
    }


def _calorimeters(detector, batch, final, hit, tracks, rng):
    event = batch.event_index[final]
    abs_pid = np.abs(batch.pid[final])
    energy = batch.e[final]
    deposits = hit.reached & ~np.isin(abs_pid, card.NO_CALO_DEPOSIT)
    fraction = card.ecal_fraction(abs_pid)

    # Expected energy of each track, and the calorimeter it is subtracted in.
    track_energy = np.sqrt(tracks["P"] ** 2 + tracks["Mass"] ** 2)
    track_sigma = tracks["_sigma_rel"] * tracks["P"] ** 2 / track_energy
    in_ecal = tracks["_abs_pid"] == 11
    in_hcal = ~in_ecal & (tracks["_abs_pid"] != 13)
    track_scale = np.ones(len(track_energy))

    results = []
    for calo, share, chosen in (
        (detector.ecal, fraction, in_ecal),
        (detector.hcal, 1.0 - fraction, in_hcal),
    ):
        mask = deposits & (share > 0)
        result = simulate_calorimeter(
            calo,
            (event[mask], hit.eta[mask], hit.phi[mask], (energy * share)[mask]),
            (
                tracks["event"][chosen],
                tracks["EtaOuter"][chosen],
                tracks["PhiOuter"][chosen],
                track_energy[chosen],
                track_sigma[chosen],
            ),
            rng,
        )
        track_scale[chosen] = result.track_scale
        results.append(result)
    return results[0], results[1], track_scale


def _tower_fields(energy, eta, phi, eem, ehad, etrk):
    return {
        "ET": energy / np.cosh(eta),
        "Eta": eta,
        "Phi": phi,
        "E": energy,
        "Eem": eem,
        "Ehad": ehad,
        "Etrk": etrk,
    }


def _towers(ecal, hcal, n_events):
    event = np.concatenate([ecal.event, hcal.event])
    order = np.argsort(event, kind="stable")
    zeros_e, zeros_h = np.zeros(len(ecal.event)), np.zeros(len(hcal.event))
    fields = _tower_fields(
        np.concatenate([ecal.energy, hcal.energy]),
        np.concatenate([ecal.eta, hcal.eta]),
        np.concatenate([ecal.phi, hcal.phi]),
        np.concatenate([ecal.energy, zeros_h]),
        np.concatenate([zeros_e, hcal.energy]),
        np.concatenate([ecal.track_energy, hcal.track_energy]),
    )
    fields = {k: v[order] for k, v in fields.items()}
    return FlatCollection.from_events(event[order], n_events, fields)


def _neutrals(result, is_ecal, n_events):
    keep = result.neutral > 0
    energy = result.neutral[keep]
    zeros = np.zeros(len(energy))
    fields = _tower_fields(
        energy,
        result.eta[keep],
        result.phi[keep],
        energy if is_ecal else zeros,
        zeros if is_ecal else energy,
        zeros,
    )
    return FlatCollection.from_events(result.event[keep], n_events, fields)


def _eflow_constituents(collections, n_events):
    """Energy-flow objects as jet-finder input: flat arrays sorted by event."""
    tracks = collections["EFlowTrack"]
    parts = [(tracks, tracks["PT"], tracks["Mass"], tracks["Charge"])]
    for name in ("EFlowPhoton", "EFlowNeutralHadron"):
        towers = collections[name]
        n = len(towers["ET"])
        parts.append((towers, towers["ET"], np.zeros(n), np.zeros(n, np.int32)))
    event = np.concatenate([part.event for part, *_ in parts])
    order = np.argsort(event, kind="stable")
    pt = np.concatenate([p for _, p, _, _ in parts])
    eta = np.concatenate([part["Eta"] for part, *_ in parts])
    phi = np.concatenate([part["Phi"] for part, *_ in parts])
    mass = np.concatenate([m for _, _, m, _ in parts])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    inputs = {
        "px": px,
        "py": py,
        "pz": pz,
        "E": np.sqrt(px**2 + py**2 + pz**2 + mass**2),
        "charge": np.concatenate([c for *_, c in parts]),
        "eem": np.concatenate(
            [np.zeros(len(tracks["PT"]))]
            + [collections[n]["Eem"] for n in ("EFlowPhoton", "EFlowNeutralHadron")]
        ),
        "ehad": np.concatenate(
            [np.zeros(len(tracks["PT"]))]
            + [collections[n]["Ehad"] for n in ("EFlowPhoton", "EFlowNeutralHadron")]
        ),
    }
    inputs = {name: values[order] for name, values in inputs.items()}
    return inputs, np.bincount(event, minlength=n_events)


def _missing_et(eflow, counts):
    event = np.repeat(np.arange(len(counts)), counts)
    px, py, pz = (
        -np.bincount(event, eflow[name], minlength=len(counts))
        for name in ("px", "py", "pz")
    )
    met = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(met > 0, np.arcsinh(pz / met), 0.0)
    fields = {"MET": met, "Eta": eta, "Phi": np.arctan2(py, px)}
    return FlatCollection(np.ones(len(counts), np.int64), fields)
