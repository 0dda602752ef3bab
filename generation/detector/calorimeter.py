"""ECAL and HCAL towers and the energy-flow neutrals, for a batch of events.

Deposits and tracks are aggregated per (event, cell) with ``np.unique`` over a
single integer key, so every step is a numpy operation over all the cells of the
batch. The logic follows Delphes' ``SimpleCalorimeter``: a log-normal smearing of
the summed cell energy, thresholds on energy and significance, smeared tower
centres, and the energy-flow split of each cell into the track part and a neutral
remainder (or, if the remainder is not significant, tracks rescaled to the best
combined estimate).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segmentation:
    """Eta edges and the number of uniform phi cells of each eta ring."""

    edges: np.ndarray  # (rings + 1,)
    n_phi: np.ndarray  # (rings,)

    @property
    def max_phi(self):
        return int(self.n_phi.max())

    @property
    def n_cells(self):
        return (len(self.edges) - 1) * self.max_phi

    def cell(self, eta, phi):
        """Cell id of each (eta, phi), -1 outside the acceptance."""
        ring = np.searchsorted(self.edges, eta, side="right") - 1
        inside = (ring >= 0) & (ring < len(self.n_phi))
        ring = np.clip(ring, 0, len(self.n_phi) - 1)
        n_phi = self.n_phi[ring]
        column = np.floor((phi + np.pi) / (2.0 * np.pi) * n_phi).astype(np.int64)
        column = np.clip(column, 0, n_phi - 1)
        return np.where(inside, ring * self.max_phi + column, -1)

    def bounds(self, cell):
        """(eta_low, eta_high, phi_low, phi_high) of each cell id."""
        ring, column = np.divmod(cell, self.max_phi)
        width = 2.0 * np.pi / self.n_phi[ring]
        phi_low = -np.pi + column * width
        return self.edges[ring], self.edges[ring + 1], phi_low, phi_low + width


@dataclass(frozen=True)
class Calorimeter:
    segmentation: Segmentation
    sigma: object  # callable (energy, eta) -> sigma(E)
    energy_min: float
    significance_min: float
    is_ecal: bool


@dataclass
class CellResult:
    """Towers and energy-flow neutrals of one calorimeter, sorted by event."""

    event: np.ndarray  # (towers,) event index in the batch
    energy: np.ndarray  # smeared tower energy
    track_energy: np.ndarray
    eta: np.ndarray  # smeared tower centre
    phi: np.ndarray
    edges: np.ndarray  # (towers, 4): eta low, eta high, phi low, phi high
    neutral: np.ndarray  # (towers,) energy-flow neutral energy (0: none)
    track_scale: np.ndarray  # (tracks,) rescaling of each input track


def _lognormal(rng, mean, sigma):
    """Log-normal with the given mean and width (Delphes' ``LogNormal``)."""
    positive = mean > 0
    mean = np.where(positive, mean, 1.0)
    ratio = np.where(positive, sigma / mean, 0.0)
    s2 = np.log1p(ratio**2)
    mu = np.log(mean) - 0.5 * s2
    value = np.exp(mu + np.sqrt(s2) * rng.standard_normal(len(mean)))
    return np.where(positive, value, 0.0)


def simulate_calorimeter(calo, deposits, tracks, rng):
    """Towers and energy flow of one calorimeter.

    ``deposits``: (event, eta, phi, energy) arrays of the particles' energy in this
    calorimeter; ``tracks``: (event, eta, phi, energy, sigma) of the reconstructed
    tracks whose expected energy sits in this calorimeter.
    """
    seg = calo.segmentation
    dep_event, dep_eta, dep_phi, dep_energy = deposits
    trk_event, trk_eta, trk_phi, trk_energy, trk_sigma = tracks

    # 1. One integer key per (event, cell); unique keys are the touched cells.
    dep_cell = seg.cell(dep_eta, dep_phi)
    trk_cell = seg.cell(trk_eta, trk_phi)
    dep_ok, trk_ok = dep_cell >= 0, trk_cell >= 0
    keys = np.concatenate(
        [
            dep_event[dep_ok] * seg.n_cells + dep_cell[dep_ok],
            trk_event[trk_ok] * seg.n_cells + trk_cell[trk_ok],
        ]
    )
    cells, inverse = np.unique(keys, return_inverse=True)
    n_dep = int(dep_ok.sum())
    dep_slot, trk_slot = inverse[:n_dep], inverse[n_dep:]

    # 2. Sums per cell: (cells,)
    true_energy = np.bincount(dep_slot, dep_energy[dep_ok], minlength=len(cells))
    track_energy = np.bincount(trk_slot, trk_energy[trk_ok], minlength=len(cells))
    track_var = np.bincount(trk_slot, trk_sigma[trk_ok] ** 2, minlength=len(cells))

    # 3. Smearing and thresholds, at the cell centre.
    cell_id = cells % seg.n_cells
    eta_low, eta_high, phi_low, phi_high = seg.bounds(cell_id)
    centre = 0.5 * (eta_low + eta_high)
    sigma = calo.sigma(true_energy, centre)
    energy = _lognormal(rng, true_energy, sigma)
    passed = (energy >= calo.energy_min) & (energy >= calo.significance_min * sigma)
    energy = np.where(passed, energy, 0.0)

    # 4. Energy flow: the neutral remainder, or rescaled tracks.
    neutral = np.maximum(energy - track_energy, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = neutral / np.sqrt(track_var + sigma**2)
        keep_neutral = (neutral > calo.energy_min) & (
            significance > calo.significance_min
        )
        weight_track = np.where(track_var > 0, 1.0 / track_var, 0.0)
        weight_calo = np.where(sigma > 0, 1.0 / sigma**2, 0.0)
        best = (weight_track * track_energy + weight_calo * energy) / (
            weight_track + weight_calo
        )
        scale = np.where(~keep_neutral & (track_energy > 0), best / track_energy, 1.0)
    track_scale = np.ones(len(trk_event))
    track_scale[trk_ok] = np.nan_to_num(scale[trk_slot], nan=1.0)

    # 5. Towers: smeared centres, kept where the energy passed.
    tower_eta = rng.uniform(eta_low, eta_high)
    tower_phi = rng.uniform(phi_low, phi_high)
    keep = energy > 0
    return CellResult(
        event=(cells // seg.n_cells)[keep],
        energy=energy[keep],
        track_energy=track_energy[keep],
        eta=tower_eta[keep],
        phi=tower_phi[keep],
        edges=np.stack([eta_low, eta_high, phi_low, phi_high], axis=1)[keep],
        neutral=np.where(keep_neutral, neutral, 0.0)[keep],
        track_scale=track_scale,
    )
