"""The detector chain of Delphes' CMS card, on a batch of Pythia events.

propagation -> tracking efficiency and smearing -> ECAL, HCAL -> energy flow ->
anti-kT jets -> missing ET. Every step is vectorized over all particles of the
batch; the result holds one awkward array (events, objects) per Delphes collection
with the Delphes field names (without the ``X.`` prefix).

Known simplifications, said here where a reader meets them: particles start at the
origin (displaced vertices only enter Track.X/Y/Z and D0/DZ); electrons and
photons are not identified (no Electron/Photon/Muon collections); jets carry no
flavour, b-tag or substructure fields; references between collections (TRef:
Jet.Constituents, Track.Particle, Tower.Particles) are not written.
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
from generation.detector.jets import cluster
from generation.detector.tracking import propagate, reconstruct_tracks

__all__ = ["Detector", "simulate"]


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


def _jagged(event, n_events, fields):
    """Flat per-object arrays sorted by ``event`` -> (events, objects) records."""
    counts = np.bincount(event, minlength=n_events)
    return ak.unflatten(ak.zip(fields, depth_limit=1), counts)


def _momentum(px, py, pz, e):
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    phi = np.arctan2(py, px)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / pt), np.sign(pz) * 999.9)
        rapidity = np.where(
            e > np.abs(pz), 0.5 * np.log((e + pz) / (e - pz)), np.sign(pz) * 999.9
        )
    return pt, p, eta, phi, rapidity


def particle_collection(batch):
    """Every entry of the Pythia record, as Delphes' ``Particle``."""
    pt, p, eta, phi, rapidity = _momentum(batch.px, batch.py, batch.pz, batch.e)
    fields = {
        "PID": batch.pid,
        "Status": batch.status,
        "IsPU": np.zeros(len(pt), np.int32),
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
        "P": p,
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "Rapidity": rapidity,
        "T": batch.t,
        "X": batch.x,
        "Y": batch.y,
        "Z": batch.z,
    }
    return _jagged(batch.event_index, batch.n_events, fields), (pt, eta, phi)


def simulate(batch, rng, detector=None):
    """Run the detector on a :class:`generation.pythia.ParticleBatch`.

    Returns {collection name: awkward array (events, objects)}.
    """
    detector = detector or Detector.cms()
    n_events = batch.n_events
    particles, (pt, eta, phi) = particle_collection(batch)
    event = batch.event_index

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
    tracks = _tracks(batch, final, charged[kept], smeared_pt[kept], resolution[kept])
    tracks.update(
        {
            "EtaOuter": hit.eta[charged[kept]],
            "PhiOuter": hit.phi[charged[kept]],
            "XOuter": 1e3 * hit.x[charged[kept]],
            "YOuter": 1e3 * hit.y[charged[kept]],
            "ZOuter": 1e3 * hit.z[charged[kept]],
            "L": 1e3 * hit.path[charged[kept]],
        }
    )

    # 3. Calorimeters, then energy flow.
    ecal, hcal, track_scale = _calorimeters(detector, batch, final, hit, tracks, rng)
    eflow_tracks = {**tracks}
    for name in ("PT", "P"):
        eflow_tracks[name] = tracks[name] * track_scale
    collections = {
        "Particle": particles,
        "Track": _jagged(tracks["event"], n_events, _drop_event(tracks)),
        "Tower": _towers(ecal, hcal, n_events),
        "EFlowTrack": _jagged(tracks["event"], n_events, _drop_event(eflow_tracks)),
        "EFlowPhoton": _neutrals(ecal, True, n_events),
        "EFlowNeutralHadron": _neutrals(hcal, False, n_events),
    }
    eflow = _eflow_constituents(collections)
    visible = final[~np.isin(abs_pid, card.GENJET_EXCLUDED)]
    collections["GenJet"] = cluster(
        _gen_constituents(batch, visible, event), *card.GENJET
    )
    collections["Jet"] = cluster(eflow, *card.JET)
    collections["FatJet"] = cluster(eflow, *card.FATJET)
    collections["MissingET"] = _missing_et(eflow)
    collections["ScalarHT"] = ak.unflatten(
        ak.zip({"HT": ak.sum(collections["Jet"].PT, axis=1)}), 1
    )
    return collections


def _drop_event(fields):
    return {k: v for k, v in fields.items() if k != "event"}


def _tracks(batch, final, chosen, pt, resolution):
    index = final[chosen]  # into the batch's particles
    px, py, pz = batch.px[index], batch.py[index], batch.pz[index]
    true_pt = np.hypot(px, py)
    eta = np.arcsinh(pz / true_pt)
    phi = np.arctan2(py, px)
    mass = batch.mass[index]
    p = pt * np.cosh(eta)
    charge = np.rint(batch.charge[index]).astype(np.int32)
    x, y, z = batch.x[index], batch.y[index], batch.z[index]
    # Straight-line impact parameters from the production vertex (mm).
    d0 = (x * py - y * px) / true_pt
    dz = z - (x * px + y * py) / true_pt * pz / true_pt
    helix_radius_mm = 1e3 * pt / (0.299792458 * card.BZ)
    return {
        "event": batch.event_index[index],
        "PID": batch.pid[index],
        "Charge": charge,
        "P": p,
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "CtgTheta": np.sinh(eta),
        "C": charge / (2.0 * helix_radius_mm),
        "Mass": mass,
        "T": batch.t[index],
        "X": x,
        "Y": y,
        "Z": z,
        "D0": d0,
        "DZ": dz,
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

    # Expected energy of each track, and where it is subtracted.
    abs_track_pid = tracks.pop("_abs_pid")
    sigma_rel = tracks.pop("_sigma_rel")
    track_energy = np.sqrt(tracks["P"] ** 2 + tracks["Mass"] ** 2)
    track_sigma = sigma_rel * tracks["P"] ** 2 / track_energy
    in_ecal = abs_track_pid == 11
    in_hcal = ~in_ecal & (abs_track_pid != 13)
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


def _tower_fields(energy, eta, phi, eem, ehad, etrk, edges):
    return {
        "ET": energy / np.cosh(eta),
        "Eta": eta,
        "Phi": phi,
        "E": energy,
        "T": np.zeros(len(energy)),
        "NTimeHits": np.zeros(len(energy), np.int32),
        "Eem": eem,
        "Ehad": ehad,
        "Etrk": etrk,
        "Edges[4]": edges,
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
        np.concatenate([ecal.edges, hcal.edges]),
    )
    return _jagged(event[order], n_events, {k: v[order] for k, v in fields.items()})


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
        result.edges[keep],
    )
    return _jagged(result.event[keep], n_events, fields)


def _four_vectors(pt, eta, phi, mass):
    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return px, py, pz, energy


def _eflow_constituents(collections):
    """Energy-flow objects of each event as jet-finder input: (events, objects)."""
    tracks = collections["EFlowTrack"]
    parts = [
        ak.zip(
            {
                **dict(
                    zip(
                        ("px", "py", "pz", "E"),
                        _four_vectors(tracks.PT, tracks.Eta, tracks.Phi, tracks.Mass),
                        strict=True,
                    )
                ),
                "charge": tracks.Charge,
                "eem": ak.zeros_like(tracks.PT),
                "ehad": ak.zeros_like(tracks.PT),
            }
        )
    ]
    for name in ("EFlowPhoton", "EFlowNeutralHadron"):
        towers = collections[name]
        px, py, pz, energy = _four_vectors(
            towers.ET, towers.Eta, towers.Phi, ak.zeros_like(towers.ET)
        )
        parts.append(
            ak.zip(
                {
                    "px": px,
                    "py": py,
                    "pz": pz,
                    "E": energy,
                    "charge": ak.values_astype(ak.zeros_like(towers.ET), np.int32),
                    "eem": towers.Eem,
                    "ehad": towers.Ehad,
                }
            )
        )
    return ak.concatenate(parts, axis=1)


def _gen_constituents(batch, visible, event):
    return _jagged(
        event[visible],
        batch.n_events,
        {
            "px": batch.px[visible],
            "py": batch.py[visible],
            "pz": batch.pz[visible],
            "E": batch.e[visible],
        },
    )


def _missing_et(eflow):
    px, py, pz = (-ak.sum(eflow[name], axis=1) for name in ("px", "py", "pz"))
    met = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(met > 0, np.arcsinh(pz / met), 0.0)
    fields = {"MET": met, "Eta": eta, "Phi": np.arctan2(py, px)}
    return ak.unflatten(ak.zip({k: np.asarray(v) for k, v in fields.items()}), 1)
