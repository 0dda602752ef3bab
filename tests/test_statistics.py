"""Efficiencies from histograms against unbinned values and known answers."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from analysis import statistics as st
from processors.histograms import book

PHI = NormalDist().cdf
Z90, Z99 = NormalDist().inv_cdf(0.9), NormalDist().inv_cdf(0.99)


def _loss_dists(x_signal, x_background, w_signal=1.0, w_background=1.0):
    """Binned loss distributions of log10(loss) samples, as the processor fills them."""
    h = book(lazy=False)["loss"]
    for dataset, x, w in (
        ("sig", x_signal, w_signal),
        ("bkg", x_background, w_background),
    ):
        h.fill(dataset=dataset, model="m", loss=10.0**x, weight=np.full(x.size, w))
    return (
        st.binned(h[{"dataset": "sig", "model": "m"}]),
        st.binned(h[{"dataset": "bkg", "model": "m"}]),
    )


def _unbinned(x_signal, x_background):
    """Reference: AUC from ranks (Mann-Whitney), E10/E100 from the QCD quantiles."""
    both = np.concatenate([x_signal, x_background])
    ranks = np.argsort(np.argsort(both)) + 1.0
    n_s, n_b = x_signal.size, x_background.size
    auc = (ranks[:n_s].sum() - n_s * (n_s + 1) / 2) / (n_s * n_b)
    e10 = np.mean(x_signal > np.quantile(x_background, 0.9))
    e100 = np.mean(x_signal > np.quantile(x_background, 0.99))
    return {"auc": auc, "e10": e10, "e100": e100}


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.default_rng(7)
    separation = 1.5
    x_background = rng.normal(-6.0, 1.0, 100_000)
    x_signal = rng.normal(-6.0 + separation, 1.0, 100_000)
    return separation, x_signal, x_background


def test_binned_metrics_match_unbinned_and_known_answer(gaussians):
    d, x_signal, x_background = gaussians
    signal, background = _loss_dists(x_signal, x_background, 0.02, 3.0)
    binned = st.bootstrap_metrics(signal, background, replicas=100, seed=3)
    unbinned = _unbinned(x_signal, x_background)
    known = {
        "auc": PHI(d / math.sqrt(2)),
        "e10": PHI(d - Z90),
        "e100": PHI(d - Z99),
    }
    for name in ("auc", "e10", "e100"):
        # binning: 100 bins a decade in loss = 0.01 in x, a sigma of 0.01
        assert binned[name] == pytest.approx(unbinned[name], abs=2e-3), name
        # sampling: the bootstrap error covers the distance to the exact value
        assert abs(binned[name] - known[name]) < 4 * binned[f"{name}_err"], name
        assert 0 < binned[f"{name}_err"] < 0.02


def test_weights_do_not_change_efficiencies(gaussians):
    _, x_signal, x_background = gaussians
    unit = st.metrics(*(d.values for d in _loss_dists(x_signal, x_background)))
    weighted = st.metrics(
        *(d.values for d in _loss_dists(x_signal, x_background, 1e-4, 250.0))
    )
    for name in unit:
        assert weighted[name][0] == pytest.approx(unit[name][0], rel=1e-9)


def test_effective_entries_are_counts_for_constant_weights(gaussians):
    _, x_signal, x_background = gaussians
    signal, _ = _loss_dists(x_signal[:5000], x_background[:10], 0.37)
    assert signal.entries == pytest.approx(5000)
    assert signal.total == pytest.approx(5000 * 0.37)


def test_bootstrap_error_matches_spread_of_independent_samples():
    rng = np.random.default_rng(11)
    e10, errors = [], []
    for _ in range(40):
        signal, background = _loss_dists(
            rng.normal(-5, 1, 3000), rng.normal(-6, 1, 3000), 0.5, 2.0
        )
        result = st.bootstrap_metrics(signal, background, replicas=100, seed=1)
        e10.append(result["e10"])
        errors.append(result["e10_err"])
    ratio = np.mean(errors) / np.std(e10, ddof=1)
    assert 0.7 < ratio < 1.4


def test_mass_baseline_counts_higher_mass_as_signal():
    rng = np.random.default_rng(5)
    h = book(lazy=False)["mass"]
    h.fill(dataset="qcd", mass=rng.normal(100, 30, 20000))
    h.fill(dataset="heavy", mass=rng.normal(400, 30, 20000))
    result = st.metrics(
        h[{"dataset": "heavy"}].values(flow=True),
        h[{"dataset": "qcd"}].values(flow=True),
    )
    assert result["auc"][0] == pytest.approx(1.0, abs=1e-3)
    assert result["e100"][0] == pytest.approx(1.0, abs=1e-3)


def test_cut_keeping_keeps_the_fraction_at_the_quantile(gaussians):
    _, _, x_background = gaussians
    _, background = _loss_dists(x_background[:10], x_background, 1.0, 0.8)
    for keep in (0.1, 0.01, 0.001):
        weights, cut = st.cut_keeping(background, keep)
        assert background.values @ weights / background.total == pytest.approx(keep)
        # within one bin (0.01 in log10) of the unbinned quantile
        assert math.log10(cut) == pytest.approx(
            np.quantile(x_background, 1 - keep), abs=0.01
        )


def test_window_yield_sums_bins_whose_centres_lie_inside():
    edges = np.arange(0.0, 110.0, 10.0)  # 10 bins
    values = np.concatenate([[100.0], np.arange(10.0), [100.0]])  # flow bins too
    total, variance, used = st.window_yield(values, values * 2, edges, (30, 60))
    assert total == 3 + 4 + 5  # centres 35, 45, 55
    assert variance == 2 * total
    assert used == (30.0, 60.0)


def test_seed_spread_adds_in_quadrature():
    seeds = [
        {
            "auc": 0.8,
            "auc_err": 0.01,
            "e10": 0.5,
            "e10_err": 0.02,
            "e100": 0.1,
            "e100_err": 0.01,
        },
        {
            "auc": 0.9,
            "auc_err": 0.01,
            "e10": 0.7,
            "e10_err": 0.02,
            "e100": 0.3,
            "e100_err": 0.01,
        },
    ]
    combined = st.combine_seeds(seeds)
    spread = np.std([0.8, 0.9], ddof=1)
    assert combined["auc"] == pytest.approx(0.85)
    assert combined["auc_err_seeds"] == pytest.approx(spread)
    assert combined["auc_err"] == pytest.approx(math.hypot(spread, 0.01))


def test_empty_background_gives_nan_not_an_error():
    h = book(lazy=False)["loss"]
    h.fill(dataset="sig", model="m", loss=[1e-5, 1e-4])
    h.fill(dataset="bkg", model="m", loss=[1e-5])
    empty = st.Binned(np.zeros(1002), np.zeros(1002), h.axes["loss"])
    signal = st.binned(h[{"dataset": "sig", "model": "m"}])
    result = st.bootstrap_metrics(signal, empty, replicas=5)
    assert math.isnan(result["e10"]) and math.isnan(result["auc_err"])
    weights, cut = st.cut_keeping(empty, 0.01)
    assert math.isnan(cut) and not weights.any()


def test_mass_correlation_helpers_on_a_known_2d_histogram():
    values = np.array([[1.0, 0.0], [0.0, 1.0]])  # rows: mass 10, 20; columns: loss
    mean, error, entries = st.column_means(values, values, np.array([10.0, 20.0]))
    assert mean.tolist() == [10.0, 20.0]
    assert entries.tolist() == [1.0, 1.0]
    assert st.weighted_correlation(
        values, np.array([10.0, 20.0]), np.array([0, 1.0])
    ) == (pytest.approx(1.0))
    assert st.ks_distance([1, 0, 0], [0, 0, 1]) == 1.0
