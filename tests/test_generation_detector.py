"""The detector simulation piece by piece, against known answers."""

import numpy as np
import pytest

from analysis.errors import ConfigError
from generation.detector import card
from generation.detector.calorimeter import Segmentation, simulate_calorimeter
from generation.detector.simulation import Detector
from generation.detector.tracking import propagate, reconstruct_tracks
from generation.processes import check_gluino_mass, slha_text
from generation.pythia import hepmc_status


def test_neutral_particles_fly_straight():
    pt, eta, phi = np.array([5.0, 50.0]), np.array([0.3, -2.0]), np.array([1.0, -3.0])
    hit = propagate(pt, eta, phi, pt * np.sinh(eta), np.zeros(2))
    assert np.allclose(hit.eta, eta) and np.allclose(hit.phi, phi)
    assert np.all(hit.reached)


def test_charged_particles_bend_by_the_helix_angle():
    pt = np.array([10.0, 10.0, 100.0])
    charge = np.array([1.0, -1.0, 1.0])
    hit = propagate(pt, np.zeros(3), np.zeros(3), np.zeros(3), charge)
    radius = pt / (0.299792458 * 3.8)  # metres
    expected = -charge * np.arcsin(1.29 / (2 * radius))
    assert np.allclose(hit.phi, expected)
    assert np.allclose(np.hypot(hit.x, hit.y), 1.29)
    assert np.allclose(hit.eta, 0.0)


def test_loopers_never_reach_the_barrel():
    # 2R = 0.88 m < 1.29 m: a 0.5 GeV track at eta = 0 curls up; with some pz it
    # leaves through the end cap at z = 3 m.
    pt, eta = np.array([0.5, 0.5]), np.array([0.0, 1.0])
    hit = propagate(pt, eta, np.zeros(2), pt * np.sinh(eta), np.ones(2))
    assert list(hit.reached) == [False, True]
    assert hit.z[1] == pytest.approx(3.0)
    assert np.hypot(hit.x[1], hit.y[1]) < 0.88


def test_tracking_efficiency_and_resolution_follow_the_card():
    abs_pid = np.array([211, 211, 211, 211, 11, 13, 211])
    pt = np.array([0.5, 5.0, 0.5, 5.0, 5.0, 5.0, 5.0])
    eta = np.array([0.0, 1.0, 2.0, 2.0, 0.0, 0.0, 2.6])
    efficiency = card.tracking_efficiency(abs_pid, pt, np.abs(eta))
    assert np.allclose(efficiency, [0.70, 0.95, 0.60, 0.85, 0.95, 0.99, 0.0])
    resolution = card.track_resolution(np.array([211]), np.array([100.0]), 0.2)
    assert resolution[0] == pytest.approx(np.hypot(0.06, 0.13))
    rng = np.random.default_rng(3)
    n = 20_000
    kept, smeared, rel = reconstruct_tracks(
        np.full(n, 211), np.full(n, 100.0), np.full(n, 1.0), rng
    )
    assert kept.mean() == pytest.approx(0.95, abs=0.01)
    assert np.std(smeared / 100.0) == pytest.approx(np.hypot(0.10, 0.17), rel=0.05)


def test_hcal_segmentation_matches_the_card():
    seg = Segmentation(*card.hcal_segmentation())
    cells = seg.cell(
        np.array([0.01, 0.01, 0.01, 2.0, 4.8, 5.5]),
        np.array([0.01, 0.01 + np.pi / 36, -0.01, 0.0, 0.0, 0.0]),
    )
    assert cells[-1] == -1  # outside the acceptance
    eta_low, eta_high, phi_low, phi_high = seg.bounds(cells[:5])
    assert np.allclose((eta_high - eta_low)[:3], 0.087, atol=1e-6)
    assert np.allclose((phi_high - phi_low)[:3], np.pi / 36)
    assert len(set(cells[:3])) == 3
    assert phi_high[3] - phi_low[3] == pytest.approx(np.pi / 18)
    assert phi_high[4] - phi_low[4] == pytest.approx(np.pi / 9)
    ecal = Segmentation(*card.ecal_segmentation())
    low, high, p_low, p_high = ecal.bounds(ecal.cell(np.array([0.3]), np.array([0.0])))
    assert high - low == pytest.approx(0.0174) and p_high - p_low == pytest.approx(
        np.pi / 180
    )


def test_energy_sharing_by_particle_type():
    fraction = card.ecal_fraction(np.array([11, 22, 111, 310, 3122, 211, 2112, 130]))
    assert list(fraction) == [1, 1, 1, 0.3, 0.3, 0, 0, 0]
    assert set(card.NO_CALO_DEPOSIT) >= {12, 13, 14, 16, 1_000_022}


def _one_cell(calo, energy, track_energy=None, track_sigma=0.01, n=4000, seed=5):
    rng = np.random.default_rng(seed)
    events = np.arange(n)
    deposits = (events, np.full(n, 0.3), np.full(n, 0.3), np.full(n, energy))
    if track_energy is None:
        tracks = (np.zeros(0, int), *(np.zeros(0) for _ in range(4)))
    else:
        sigma = track_sigma * track_energy
        tracks = (
            events,
            np.full(n, 0.3),
            np.full(n, 0.3),
            np.full(n, track_energy),
            np.full(n, sigma),
        )
    return simulate_calorimeter(calo, deposits, tracks, rng)


def test_calorimeter_resolution_thresholds_and_centres():
    detector = Detector.cms()
    result = _one_cell(detector.hcal, 100.0)
    assert len(result.energy) == 4000
    sigma = card.hcal_sigma(100.0, 0.3045)
    assert np.mean(result.energy) == pytest.approx(100.0, rel=0.01)
    assert np.std(result.energy) == pytest.approx(sigma, rel=0.05)
    # The cell at eta 0.3 spans [0.261, 0.348]; centres are smeared inside it.
    assert result.eta.min() >= 0.261 and result.eta.max() <= 0.348
    assert np.std(result.eta) == pytest.approx(0.087 / np.sqrt(12), rel=0.05)
    # Neutral (no tracks): all energy is an energy-flow neutral.
    assert np.allclose(result.neutral, result.energy)
    # 0.6 GeV in the HCAL: below the 1 GeV threshold most of the time.
    soft = _one_cell(detector.hcal, 0.6)
    assert len(soft.energy) < 0.3 * 4000
    assert np.all(soft.energy >= 1.0)


def test_energy_flow_subtracts_tracks_and_rescales_them():
    hcal = Detector.cms().hcal
    # Track energy equal to the deposit: a neutral remainder only from upward
    # fluctuations beyond the 1-sigma significance cut (about 16%); otherwise the
    # tracks are rescaled to the combination of track and calorimeter energy.
    charged = _one_cell(hcal, 50.0, track_energy=50.0)
    assert 0.10 < np.mean(charged.neutral > 0) < 0.22
    assert np.mean(charged.track_scale) == pytest.approx(1.0, abs=0.02)
    # A 30 GeV neutral hadron on top of a 20 GeV track: the remainder is neutral.
    mixed = _one_cell(hcal, 50.0, track_energy=20.0)
    assert np.mean(mixed.neutral > 0) > 0.9
    assert np.median(mixed.neutral[mixed.neutral > 0]) == pytest.approx(30, rel=0.1)
    assert np.all(mixed.track_scale[mixed.neutral > 0] == 1.0)
    # A stiff 600 GeV track (35% error) over a 500 GeV deposit (5% error) is
    # pulled to the calorimeter measurement.
    stiff = _one_cell(hcal, 500.0, track_energy=600.0, track_sigma=0.35)
    rescaled = stiff.track_scale[stiff.neutral == 0]
    assert np.median(rescaled) == pytest.approx(500 / 600, rel=0.03)


def test_hepmc_status():
    pid = np.array([2212, 21, 211, 211, 6, 13, 2101])
    status = np.array([-12, -23, 91, -91, -62, -91, -63])
    assert list(hepmc_status(pid, status)) == [4, 23, 1, 2, 62, 2, 63]


def test_slha_spectrum_and_mass_checks():
    text = slha_text(400)
    for block in (
        "MASS",
        "NMIX",
        "UMIX",
        "VMIX",
        "STOPMIX",
        "SBOTMIX",
        "STAUMIX",
        "ALPHA",
        "HMIX",
    ):
        assert f"BLOCK {block}" in text
    assert "1000021 4.000000e+02" in text
    assert "3 2 1 3" in text and "3 -2 -1 -3" in text
    for bad in (50, 5000, "heavy"):
        with pytest.raises(ConfigError, match=str(bad)):
            check_gluino_mass(bad)
