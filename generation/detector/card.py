"""The numbers of Delphes' default CMS card (``cards/delphes_card_CMS.tcl``).

Declarative tables only: efficiencies, resolutions, calorimeter segmentations and
thresholds, each as a small function of numpy arrays. Units: GeV, metres, Tesla.
"""

import numpy as np

# Solenoid (ParticlePropagator)
RADIUS = 1.29
HALF_LENGTH = 3.0
BZ = 3.8

# Stable particles that leave nothing in the calorimeters: neutrinos, the muon (a
# minimum-ionizing track) and the lightest neutralino / gravitino.
INVISIBLE = np.array([12, 14, 16, 1_000_022, 1_000_039])
NO_CALO_DEPOSIT = np.array([12, 13, 14, 16, 1_000_022, 1_000_039])
# Particles removed from the GenJet input (NeutrinoFilter of the card).
GENJET_EXCLUDED = INVISIBLE


def _piecewise(conditions, values):
    return np.select(conditions, values, default=0.0)


def tracking_efficiency(abs_pid, pt, abs_eta):
    """Probability that a charged particle gives a reconstructed track."""
    soft = (pt > 0.1) & (pt <= 1.0)
    barrel = abs_eta <= 1.5
    endcap = (abs_eta > 1.5) & (abs_eta <= 2.5)
    hadron = _piecewise(
        [barrel & soft, barrel & (pt > 1.0), endcap & soft, endcap & (pt > 1.0)],
        [0.70, 0.95, 0.60, 0.85],
    )
    mid = (pt > 1.0) & (pt <= 100.0)
    electron = _piecewise(
        [
            barrel & soft,
            barrel & mid,
            barrel & (pt > 100.0),
            endcap & soft,
            endcap & mid,
            endcap & (pt > 100.0),
        ],
        [0.73, 0.95, 0.99, 0.50, 0.83, 0.90],
    )
    mid = (pt > 1.0) & (pt <= 1000.0)
    high = np.exp(0.5 - pt * 5.0e-4)
    muon = _piecewise(
        [
            barrel & soft,
            barrel & mid,
            barrel & (pt > 1000.0),
            endcap & soft,
            endcap & mid,
            endcap & (pt > 1000.0),
        ],
        [0.75, 0.99, 0.99 * high, 0.70, 0.98, 0.98 * high],
    )
    return np.select([abs_pid == 11, abs_pid == 13], [electron, muon], hadron)


def track_resolution(abs_pid, pt, abs_eta):
    """Relative Gaussian width sigma(pT)/pT of the track momentum smearing.

    Charged hadrons and electrons use the charged-hadron formula of the card (the
    card refines electrons later with the ECAL measurement, which this simulation
    leaves to energy flow); muons use the card's muon momentum smearing.
    """
    hadron = _piecewise(
        [abs_eta <= 0.5, abs_eta <= 1.5, abs_eta <= 2.5],
        [
            np.hypot(0.06, pt * 1.3e-3),
            np.hypot(0.10, pt * 1.7e-3),
            np.hypot(0.25, pt * 3.1e-3),
        ],
    )
    muon = _piecewise(
        [abs_eta <= 0.5, abs_eta <= 1.5, abs_eta <= 2.5],
        [
            np.hypot(0.01, pt * 1.0e-4),
            np.hypot(0.015, pt * 1.5e-4),
            np.hypot(0.025, pt * 3.5e-4),
        ],
    )
    return np.where(abs_pid == 13, muon, hadron)


def ecal_fraction(abs_pid):
    """Fraction of a particle's energy deposited in the ECAL (the rest: HCAL)."""
    em = np.isin(abs_pid, (11, 22, 111))
    strange = np.isin(abs_pid, (310, 3122))
    return np.where(em, 1.0, np.where(strange, 0.3, 0.0))


def ecal_sigma(energy, eta):
    """Absolute ECAL energy resolution sigma(E)."""
    abs_eta = np.abs(eta)
    stochastic = np.sqrt((0.008 * energy) ** 2 + 0.11**2 * energy + 0.40**2)
    return _piecewise(
        [abs_eta <= 1.5, abs_eta <= 2.5, abs_eta <= 5.0],
        [
            (1.0 + 0.64 * eta**2) * stochastic,
            (2.16 + 5.6 * (abs_eta - 2.0) ** 2) * stochastic,
            np.sqrt((0.107 * energy) ** 2 + 2.08**2 * energy),
        ],
    )


def hcal_sigma(energy, eta):
    """Absolute HCAL energy resolution sigma(E)."""
    abs_eta = np.abs(eta)
    return _piecewise(
        [abs_eta <= 3.0, abs_eta <= 5.0],
        [
            np.sqrt((0.050 * energy) ** 2 + 1.50**2 * energy),
            np.sqrt((0.130 * energy) ** 2 + 2.70**2 * energy),
        ],
    )


# Tower thresholds: minimum energy and minimum significance E / sigma(E).
ECAL_THRESHOLDS = (0.5, 2.0)
HCAL_THRESHOLDS = (1.0, 1.0)


def _segmentation(groups):
    """Delphes' ``EtaPhiBins``: each listed eta is the upper edge of a bin that
    has the listed number of phi cells. Returns (edges, n_phi per bin)."""
    pairs = sorted((round(eta, 6), n_phi) for etas, n_phi in groups for eta in etas)
    edges = np.array([eta for eta, _ in pairs])
    n_phi = np.array([n for _, n in pairs[1:]])
    return edges, n_phi


def ecal_segmentation():
    barrel = [i * 0.0174 for i in range(-85, 87)]
    endcaps = [-2.958 + i * 0.0174 for i in range(1, 85)]
    endcaps += [1.4964 + i * 0.0174 for i in range(1, 85)]
    forward = [-5, -4.7, -4.525, -4.35, -4.175, -4, -3.825, -3.65, -3.475, -3.3]
    forward += [-3.125, -2.958, 3.125, 3.3, 3.475, 3.65, 3.825, 4, 4.175, 4.35]
    forward += [4.525, 4.7, 5]
    return _segmentation([(barrel, 360), (endcaps, 360), (forward, 36)])


def hcal_segmentation():
    five_degrees = [round(-1.566 + i * 0.087, 3) for i in range(38)]
    ten_degrees = [-4.35, -4.175, -4, -3.825, -3.65, -3.475, -3.3, -3.125, -2.95]
    ten_degrees += [-2.868, -2.65, -2.5, -2.322, -2.172, -2.043, -1.93, -1.83]
    ten_degrees += [-1.74, -1.653, 1.74, 1.83, 1.93, 2.043, 2.172, 2.322, 2.5, 2.65]
    ten_degrees += [2.868, 2.95, 3.125, 3.3, 3.475, 3.65, 3.825, 4, 4.175, 4.35, 4.525]
    twenty_degrees = [-5, -4.7, -4.525, 4.7, 5]
    return _segmentation([(five_degrees, 72), (ten_degrees, 36), (twenty_degrees, 18)])


# Jet finding (FastJetFinder modules): radius and minimum pT.
GENJET = (0.5, 20.0)
JET = (0.5, 20.0)
FATJET = (0.8, 200.0)
