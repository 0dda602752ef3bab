"""Efficiencies, ROC curves and their uncertainties from binned score distributions.

Every number here comes from histograms, never from per-jet arrays. A jet counts as
signal-like when its score lies *above* a cut: a high reconstruction loss is
anomalous, and for the jet-mass baseline a high mass is signal-like (heavy
resonances stand out against the falling QCD mass spectrum).

Conventions for a 1D score histogram with ``n`` bins and its two flow bins:

``values``  (n + 2,)  weighted sums per bin, underflow first, overflow last
``tail``    (n + 3,)  ``tail[k]`` = sum of ``values[k:]``; ``tail[n + 2]`` = 0

A cut placed at the lower edge of flow-bin ``k`` keeps ``tail[k]``; ``k = 0`` keeps
everything (efficiency 1), ``k = n + 2`` keeps nothing (efficiency 0). Between two
edges the score is taken as uniformly spread in the axis' own coordinate (log for
the loss axis), so eps_S is linear in eps_B inside a bin: that is the interpolation
used for E10, E100 and the AUC (trapezoids).

Uncertainties: each bin's weighted sum is treated as ``w * N`` with ``N`` Poisson
distributed; the effective number of entries ``N = value**2 / variance`` and the
mean weight ``w = variance / value`` come from the Weight storage. Resampling ``N``
is the bootstrap over jets in binned form.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Binned",
    "auc",
    "binned",
    "bootstrap_metrics",
    "column_means",
    "combine_seeds",
    "cut_keeping",
    "efficiencies",
    "effective_entries",
    "ks_distance",
    "metrics",
    "poisson_resample",
    "roc",
    "signal_efficiency_at",
    "weighted_correlation",
    "window_yield",
]

E10_BACKGROUND_EFF = 0.1
E100_BACKGROUND_EFF = 0.01
METRICS = ("auc", "e10", "e100")


@dataclass(frozen=True)
class Binned:
    """A 1D score distribution: contents with flow bins and the axis it lives on."""

    values: np.ndarray  # (n + 2,)
    variances: np.ndarray  # (n + 2,)
    axis: object  # a hist axis; maps fractional bin indices to score values

    @property
    def total(self):
        return float(self.values.sum())

    @property
    def entries(self):
        """Effective (unweighted-equivalent) number of jets."""
        return float(effective_entries(self.values, self.variances).sum())


def binned(h):
    """:class:`Binned` from a one-dimensional ``hist.Hist`` with Weight storage."""
    if h.ndim != 1:
        raise ValueError(
            f"expected a 1D histogram, got axes {[a.name for a in h.axes]}"
        )
    values = np.asarray(h.values(flow=True), dtype=float)
    variances = h.variances(flow=True)
    variances = values.copy() if variances is None else np.asarray(variances, float)
    return Binned(values, variances, h.axes[0])


def effective_entries(values, variances):
    """``value**2 / variance`` per bin; 0 where either is not positive."""
    values = np.asarray(values, float)
    variances = np.asarray(variances, float)
    ok = (values > 0) & (variances > 0)
    out = np.zeros_like(values)
    out[ok] = values[ok] ** 2 / variances[ok]
    return out


def efficiencies(values):
    """Fraction kept by a cut at each flow-bin edge: (..., n + 2) -> (..., n + 3)."""
    values = np.asarray(values, float)
    tail = np.cumsum(values[..., ::-1], axis=-1)[..., ::-1]  # (..., n + 2)
    zero = np.zeros(values.shape[:-1] + (1,))
    tail = np.concatenate([tail, zero], axis=-1)  # (..., n + 3)
    total = tail[..., :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, tail / np.where(total > 0, total, 1), np.nan)


def roc(signal, background):
    """(eps_S, eps_B), each (..., n + 3), for cuts at every bin edge of the score."""
    return efficiencies(signal), efficiencies(background)


def signal_efficiency_at(eps_s, eps_b, target):
    """eps_S where eps_B equals ``target``, linear between neighbouring cuts.

    ``eps_b`` falls from 1 to 0 along the last axis. The cut taken is the loosest
    one whose eps_B is at most ``target`` and the one just before it; a run of cuts
    with eps_B exactly at ``target`` gives the best (largest) eps_S of the run.
    """
    eps_s = np.atleast_2d(eps_s)
    eps_b = np.atleast_2d(eps_b)
    finite = np.isfinite(eps_b[:, 0]) & np.isfinite(eps_s[:, 0])
    safe_b = np.where(finite[:, None], eps_b, 0.0)
    k2 = np.argmax(safe_b <= target, axis=-1)  # (replicas,)
    k1 = np.maximum(k2 - 1, 0)
    take = lambda a, k: np.take_along_axis(a, k[:, None], axis=-1)[:, 0]  # noqa: E731
    b1, b2 = take(safe_b, k1), take(safe_b, k2)
    s1, s2 = take(eps_s, k1), take(eps_s, k2)
    span = b1 - b2
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(span > 0, (b1 - target) / np.where(span > 0, span, 1), 1.0)
    out = s1 + (s2 - s1) * t
    return np.where(finite, out, np.nan)


def auc(eps_s, eps_b):
    """Area under eps_S against eps_B (trapezoids): P(score_S > score_B)."""
    eps_s = np.atleast_2d(eps_s)
    eps_b = np.atleast_2d(eps_b)
    widths = eps_b[:, :-1] - eps_b[:, 1:]  # (replicas, n + 2), >= 0
    heights = 0.5 * (eps_s[:, :-1] + eps_s[:, 1:])
    return np.sum(widths * heights, axis=-1)


def metrics(signal_values, background_values):
    """AUC, E10 and E100 for each row of signal/background contents (..., n + 2)."""
    eps_s, eps_b = roc(signal_values, background_values)
    return {
        "auc": auc(eps_s, eps_b),
        "e10": signal_efficiency_at(eps_s, eps_b, E10_BACKGROUND_EFF),
        "e100": signal_efficiency_at(eps_s, eps_b, E100_BACKGROUND_EFF),
    }


def poisson_resample(dist, replicas, rng):
    """Bootstrap replicas of a :class:`Binned`: (replicas, n + 2) weighted contents."""
    entries = effective_entries(dist.values, dist.variances)  # (n + 2,)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(
            entries > 0, dist.values / np.where(entries > 0, entries, 1), 0
        )
    counts = rng.poisson(entries, size=(replicas, entries.size))  # (replicas, n + 2)
    return counts * weight


def bootstrap_metrics(signal, background, replicas=200, seed=1):
    """Central AUC, E10, E100 and their bootstrap standard deviations.

    Returns ``{"auc": .., "auc_err": .., "e10": .., ...}``; a value that cannot be
    computed (an empty histogram) is NaN.
    """
    central = metrics(signal.values, background.values)
    rng = np.random.default_rng(seed)
    replica = metrics(
        poisson_resample(signal, replicas, rng),
        poisson_resample(background, replicas, rng),
    )
    out = {}
    for name in METRICS:
        out[name] = float(central[name][0])
        spread = replica[name][np.isfinite(replica[name])]
        out[f"{name}_err"] = (
            float(np.std(spread, ddof=1)) if spread.size > 1 else np.nan
        )
    return out


def combine_seeds(per_seed):
    """Mean over training seeds; error = bootstrap (mean) and seed spread in quadrature.

    ``per_seed`` is a list of :func:`bootstrap_metrics` results. With one seed the
    result is that seed's numbers. With several, ``<m>_err_seeds`` holds the
    standard deviation over seeds and ``<m>_err_bootstrap`` the mean bootstrap error.
    """
    if len(per_seed) == 1:
        return dict(per_seed[0])
    out = {}
    for name in METRICS:
        values = np.array([m[name] for m in per_seed], float)
        boot = np.array([m[f"{name}_err"] for m in per_seed], float)
        seeds_sd = float(np.std(values, ddof=1))
        boot_mean = float(np.mean(boot))
        out[name] = float(np.mean(values))
        out[f"{name}_err"] = float(np.hypot(seeds_sd, boot_mean))
        out[f"{name}_err_seeds"] = seeds_sd
        out[f"{name}_err_bootstrap"] = boot_mean
    return out


def cut_keeping(background, fraction):
    """The score cut above which ``fraction`` of the background lies.

    Returns ``(weights, cut)``: per-bin acceptance weights (n + 2,) that keep the
    bins above the cut, a fraction of the bin holding it (so that exactly
    ``fraction`` of the background passes), and the cut value in score units,
    interpolated in the axis' coordinate. ``cut`` is NaN for an empty background.
    """
    values = background.values
    total = values.sum()
    weights = np.zeros_like(values)
    if not total > 0:
        return weights, np.nan
    tail = efficiencies(values)[: values.size]  # (n + 2,) kept from bin k upwards
    above = np.append(tail[1:], 0.0)  # (n + 2,) kept strictly above bin k
    k = int(np.flatnonzero(above <= fraction)[0])
    inside = (fraction - above[k]) / (tail[k] - above[k])  # share of bin k taken
    weights[k + 1 :] = 1.0
    weights[k] = inside

    # Flow bin k is axis bin k - 1, whose upper edge is axis index k. In a flow bin
    # the cut cannot be placed; the nearest edge is reported.
    n = values.size - 2
    index = min(max(k - inside, 0.0), float(n))
    cut = float(background.axis.value(index))
    return weights, cut


def window_yield(values, variances, edges, window):
    """Sum and variance of a mass distribution (n + 2,) over bins inside ``window``.

    A bin belongs to the window when its centre lies in [lo, hi]. Returns
    ``(sum, variance, (first lower edge, last upper edge))``.
    """
    lo, hi = window
    centres = 0.5 * (edges[1:] + edges[:-1])  # (n,)
    inside = (centres >= lo) & (centres <= hi)
    if not inside.any():
        return 0.0, 0.0, (float(lo), float(hi))
    mask = np.concatenate([[False], inside, [False]])  # (n + 2,) flow bins excluded
    used = edges[:-1][inside][0], edges[1:][inside][-1]
    return (
        float(values[mask].sum()),
        float(variances[mask].sum()),
        tuple(map(float, used)),
    )


def ks_distance(a, b):
    """Largest difference of the normalized cumulative sums of two histograms."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if not (a.sum() > 0 and b.sum() > 0):
        return np.nan
    return float(np.max(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum())))


def column_means(values, variances, centres):
    """Weighted mean of the row coordinate in each column of a 2D histogram.

    ``values`` and ``variances`` are (rows, columns) without flow bins, ``centres``
    the (rows,) row-bin centres. Returns ``(mean, error, entries)``, each
    (columns,); the error is the weighted standard deviation over the square root
    of the effective entries, NaN where a column is empty.
    """
    sums = values.sum(axis=0)  # (columns,)
    entries = effective_entries(sums, variances.sum(axis=0))  # (columns,)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (centres[:, None] * values).sum(axis=0) / sums
        second = (centres[:, None] ** 2 * values).sum(axis=0) / sums
        spread = np.sqrt(np.clip(second - mean**2, 0, None))
        error = spread / np.sqrt(entries)
    empty = ~(sums > 0)
    mean[empty] = np.nan
    error[empty | ~(entries > 0)] = np.nan
    return mean, error, entries


def weighted_correlation(values, row_centres, column_centres):
    """Pearson correlation of row and column coordinates in a 2D histogram."""
    total = values.sum()
    if not total > 0:
        return np.nan
    rows = values.sum(axis=1) / total  # (rows,)
    columns = values.sum(axis=0) / total  # (columns,)
    mean_r = rows @ row_centres
    mean_c = columns @ column_centres
    cov = (row_centres - mean_r) @ (values / total) @ (column_centres - mean_c)
    var_r = rows @ (row_centres - mean_r) ** 2
    var_c = columns @ (column_centres - mean_c) ** 2
    if not (var_r > 0 and var_c > 0):
        return np.nan
    return float(cov / np.sqrt(var_r * var_c))
