"""Propagation in the solenoid, tracking efficiency and track momentum smearing.

All functions work on flat arrays holding the particles of a whole batch of events.
Particles are taken to come from the origin: production vertices (a few mm for
K0S and Lambda decays) are ignored for the propagation.
"""

from dataclasses import dataclass

import numpy as np

from generation.detector import card

# pT [GeV] = 0.299792458 * B [T] * R [m]
_C = 0.299792458


@dataclass
class Propagated:
    """Where each particle meets the calorimeter surface."""

    eta: np.ndarray  # pseudorapidity of the hit position, (particles,)
    phi: np.ndarray
    x: np.ndarray  # hit position, metres
    y: np.ndarray
    z: np.ndarray
    path: np.ndarray  # path length, metres
    reached: np.ndarray  # bool: False for loopers and beam-pipe particles


def propagate(pt, eta, phi, pz, charge):
    """Move particles to the cylinder of radius ``card.RADIUS`` and half-length
    ``card.HALF_LENGTH``: helices for charged particles, lines for neutral ones.

    A charged particle whose helix diameter is smaller than the radius leaves
    through an end cap; one with no longitudinal momentum never gets out.
    """
    charged = charge != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        helix_radius = np.where(charged, pt / (_C * card.BZ), np.inf)  # metres
        # Transverse arc length to the barrel and to the end caps.
        sin_half = card.RADIUS / (2.0 * helix_radius)
        barrel_arc = np.where(
            sin_half <= 1.0, 2.0 * helix_radius * np.arcsin(sin_half), np.inf
        )
        barrel_arc = np.where(charged, barrel_arc, card.RADIUS)
        endcap_arc = np.where(pz != 0, card.HALF_LENGTH * pt / np.abs(pz), np.inf)
        arc = np.minimum(barrel_arc, endcap_arc)
        turn = np.where(charged, arc / helix_radius, 0.0)  # bending angle
        chord = np.where(charged, 2.0 * helix_radius * np.abs(np.sin(turn / 2.0)), arc)
        z = arc * pz / pt
        hit_phi = _wrap(phi - np.sign(charge) * np.sign(card.BZ) * turn / 2.0)
        hit_eta = np.arcsinh(z / chord)
        reached = np.isfinite(arc) & (chord > 1e-3) & (pt > 0)
    hit_eta = np.where(reached, hit_eta, eta)
    return Propagated(
        eta=hit_eta,
        phi=hit_phi,
        x=chord * np.cos(hit_phi),
        y=chord * np.sin(hit_phi),
        z=z,
        path=np.hypot(arc, z),
        reached=reached,
    )


def _wrap(phi):
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


def reconstruct_tracks(abs_pid, pt, eta, rng):
    """Tracking efficiency and pT smearing.

    Returns (kept, smeared_pt, relative_error) for the input charged particles;
    ``kept`` drops lost tracks and smeared pT that came out non-positive.
    """
    abs_eta = np.abs(eta)
    efficiency = card.tracking_efficiency(abs_pid, pt, abs_eta)
    found = rng.random(len(pt)) < efficiency
    resolution = card.track_resolution(abs_pid, pt, abs_eta)
    smeared = pt * (1.0 + resolution * rng.standard_normal(len(pt)))
    return found & (smeared > 0), smeared, resolution
