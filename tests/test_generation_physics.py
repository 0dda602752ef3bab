"""Physics validation of generated samples (200 events each): jet masses of the
three processes, and jet response and eflow multiplicity against a real file."""

import awkward as ak
import numpy as np
import pytest

from generation.validation import (
    eflow_multiplicity,
    fat_jets,
    jet_response,
    leading_fatjet_mass,
)
from tests.generated import session_samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    return {k: v.files for k, v in session_samples(tmp_path_factory).items()}


def _peak(values, bins):
    counts, edges = np.histogram(values, bins)
    return edges[np.argmax(counts)]


def test_most_events_hold_a_fat_jet_in_the_window(samples):
    for process, files in samples.items():
        jets = fat_jets(files)
        window = (jets.pt > 800) & (jets.pt < 900) & (np.abs(jets.eta) < 1)
        assert ak.mean(ak.any(window, axis=1)) > 0.45, process


def test_top_fat_jets_peak_at_the_top_mass(samples):
    masses = leading_fatjet_mass(samples["top"], pt_range=(700, 1000), eta_max=1.5)
    assert len(masses) > 60
    assert 150 <= _peak(masses, np.arange(0, 400, 25)) < 200
    assert 150 < np.median(masses) < 200


def test_gluino_large_radius_jets_peak_near_400(samples):
    jets = fat_jets(samples["gluino"], radius=1.5)
    window = (jets.pt > 700) & (jets.pt < 1000) & (np.abs(jets.eta) < 1.5)
    masses = ak.to_numpy(ak.flatten(jets.mass[window]))
    assert len(masses) > 100
    assert 350 <= _peak(masses, np.arange(0, 800, 50)) < 500


def test_qcd_jet_mass_falls_steeply(samples):
    masses = leading_fatjet_mass(samples["qcd"], pt_range=(700, 1000), eta_max=1.5)
    counts, _ = np.histogram(masses, [100, 200, 300, 500])
    assert counts[0] > 2 * counts[1] > 0
    assert counts[1] >= counts[2]
    top = leading_fatjet_mass(samples["top"], pt_range=(700, 1000), eta_max=1.5)

    def in_top_window(values):
        return np.mean((values > 150) & (values < 200))

    assert in_top_window(masses) < 0.5 * in_top_window(top)


def test_response_and_eflow_multiplicity_like_a_real_file(samples, real_delphes_file):
    ours = jet_response(samples["top"])
    real = jet_response([real_delphes_file])
    assert len(ours) > 100 and len(real) > 10
    assert 0.9 < np.median(ours) < 1.1
    assert abs(np.median(ours) - np.median(real)) < 0.15
    ours_n = eflow_multiplicity(samples["top"])
    real_n = eflow_multiplicity([real_delphes_file])
    assert 0.6 < sum(ours_n.values()) / sum(real_n.values()) < 1.6
    for name in ours_n:
        assert 0.4 < ours_n[name] / real_n[name] < 2.5, name


def test_validation_plot(samples, tmp_path):
    from generation.validation import main

    output = tmp_path / "validation.png"
    folder = samples["qcd"][0].parent
    assert main([str(folder), "-o", str(output)]) == 0
    assert output.stat().st_size > 10_000
