"""The study's figures, in a CMS-like mplhep style, as PNG and PDF.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no global state
beyond a style context), so writing them works without a display and leaks no
open figures. Each ``plot_*`` function returns a Figure, or None when the inputs
lack what it needs; :func:`write_all` saves what exists.
"""

import logging
from pathlib import Path

import matplotlib
import mplhep
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis import measures
from analysis import statistics as st
from analysis.fileset import atomic_path

__all__ = [
    "plot_bump_hunt",
    "plot_contamination",
    "plot_latent_scan",
    "plot_mass_after_cuts",
    "plot_mass_vs_loss",
    "plot_robustness",
    "plot_roc",
    "write_all",
]

log = logging.getLogger(__name__)

FORMATS = ("png", "pdf")
OWN_PREFIXES = (
    "roc_",
    "contamination_",
    "mass_vs_loss",
    "mass_after_cuts_",
    "robustness_",
    "bump_hunt",
    "latent_scan",
)
# Not a CMS result: the style is CMS-like, the label names the simulation used.
EXPERIMENT = "aejets"
LABEL = "Simulation"


def write_all(study, results, plots_dir):
    """Draw and save every figure the inputs allow; return the files written."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for signal in study.signals():
        figures[f"roc_{signal}"] = plot_roc(study, signal)
    for arch, by_signal in results["contamination"].items():
        for signal, series in by_signal.items():
            figures[f"contamination_{arch}_{signal}"] = plot_contamination(series, arch)
    figures["mass_vs_loss"] = plot_mass_vs_loss(study, results["mass_correlation"])
    for group in study.nominal_groups():
        name = group.name
        figures[f"mass_after_cuts_{name}"] = plot_mass_after_cuts(study, group)
        figures[f"robustness_{name}"] = plot_robustness(study, group)
    figures["bump_hunt"] = plot_bump_hunt(study, results["bump_hunt"])
    figures["latent_scan"] = plot_latent_scan(results["latent_scan"])
    written = []
    for name, figure in figures.items():
        if figure is None:
            log.info("plot %s skipped: its inputs are missing", name)
            continue
        for fmt in FORMATS:
            _save(figure, plots_dir / f"{name}.{fmt}", fmt)
            written.append(f"plots/{name}.{fmt}")
    _remove_stale(plots_dir, written)
    return written


def _remove_stale(plots_dir, written):
    """Drop figures of an earlier report that these inputs no longer make."""
    keep = {Path(p).name for p in written}
    for fmt in FORMATS:
        for path in plots_dir.glob(f"*.{fmt}"):
            if path.name not in keep and path.name.startswith(OWN_PREFIXES):
                log.info("removing %s: its inputs are gone", path)
                path.unlink()


def _save(figure, path, fmt):
    # Fonts are resolved when drawing: save inside the style too.
    with (
        matplotlib.rc_context(mplhep.style.CMS),
        atomic_path(path, "choose a writable results folder") as partial,
    ):
        figure.savefig(partial, format=fmt)


def _figure(ncols=1, lumi=None):
    figure = Figure(figsize=(10 * ncols, 10))
    axes = figure.subplots(1, ncols, squeeze=False, gridspec_kw={"wspace": 0.35})[0]
    for ax in axes:
        lumi_text = None if lumi is None else f"{lumi:g}"
        mplhep.label.exp_label(exp=EXPERIMENT, llabel=LABEL, lumi=lumi_text, ax=ax)
    return figure, axes


def _styled(draw):
    """Run a drawing function inside the CMS-like style context."""

    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(mplhep.style.CMS):
            return draw(*args, **kwargs)

    wrapper.__name__ = draw.__name__
    wrapper.__doc__ = draw.__doc__
    return wrapper


@_styled
def plot_roc(study, signal):
    """1/eps_B against eps_S (log y) for every uncontaminated model and jet mass."""
    curves = []
    for group in study.nominal_groups():
        dists = (
            study.loss(signal, group.members[0]),
            study.loss(study.background, group.members[0]),
        )
        if None not in dists:
            curves.append((group.label, "-", dists))
    mass = study.mass(signal), study.mass(study.background)
    if None not in mass:
        curves.append(("Jet mass", "--", mass))
    if not curves:
        return None
    figure, (ax,) = _figure()
    for label, line, (sig, bkg) in curves:
        eps_s, eps_b = st.roc(sig.values, bkg.values)
        keep = eps_b > 0
        ax.plot(eps_s[keep], 1 / eps_b[keep], line, label=label)
    grid = np.linspace(0.01, 1, 100)
    ax.plot(grid, 1 / grid, ":", color="grey", label="Random")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(rf"Signal efficiency $\varepsilon_S$ ({signal})")
    ax.set_ylabel(r"Background rejection $1/\varepsilon_B$")
    ax.legend(loc="upper right")
    return figure


@_styled
def plot_contamination(series, architecture=""):
    """E10 and E100 against the contamination ratio."""
    fractions = np.array(series["fractions"], float)
    figure, (ax,) = _figure()
    for key, label, marker in (("e10", "E10", "o"), ("e100", "E100", "s")):
        values = np.array([np.nan if v is None else v for v in series[key]], float)
        errors = np.array([0 if v is None else v for v in series[f"{key}_err"]], float)
        ax.errorbar(100 * fractions, values, yerr=errors, marker=marker, label=label)
    ax.set_xlabel(f"Contamination of the training set by {series['signal']} [%]")
    ax.set_ylabel(rf"Signal efficiency $\varepsilon_S$ ({series['signal']})")
    ax.set_ylim(0, 1)
    ax.legend(title=architecture.upper() or None)
    return figure


@_styled
def plot_mass_vs_loss(study, correlation):
    """Mean QCD jet mass in bins of the loss, one line per model."""
    figure, (ax,) = _figure()
    drawn = 0
    for group in study.nominal_groups():
        entry = correlation.get(group.name, {}).get("mean_mass_vs_loss")
        if not entry or not entry["loss"]:
            continue
        errors = [0 if e is None else e for e in entry["mean_mass_err"]]
        ax.errorbar(
            entry["loss"],
            entry["mean_mass"],
            yerr=errors,
            marker="o",
            label=group.label,
        )
        drawn += 1
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_xlabel("Reconstruction loss (MSE)")
    ax.set_ylabel(f"Mean {study.background} jet mass [GeV]")
    ax.legend()
    return figure


@_styled
def plot_mass_after_cuts(study, group):
    """QCD jet-mass shapes before and after loss cuts keeping 10%, 1%, 0.1%."""
    one = study.mass_loss(study.background, group.members[0])
    if one is None:
        return None
    figure, (ax,) = _figure()
    edges = one.axes["mass"].edges
    values = one.values(flow=True)  # (mass + 2, loss + 2)
    marginal = measures._qcd_loss_marginal(one)
    shapes = [("no cut", values.sum(axis=1))]
    variances = one.variances(flow=True)
    for keep in study.settings.qcd_keep_fractions:
        weights, _ = st.cut_keeping(marginal, keep)
        jets = st.effective_entries(values @ weights, variances @ weights).sum()
        if jets >= measures.MIN_JETS:  # else no shape to speak of
            shapes.append((f"{keep:.1%} of QCD kept", values @ weights))
    for label, shape in shapes:
        inner = shape[1:-1]
        if inner.sum() > 0:
            mplhep.histplot(inner / inner.sum(), edges, ax=ax, label=label)
    ax.set_xlabel(f"{study.background} jet mass [GeV]")
    ax.set_ylabel("Fraction of jets")
    ax.legend(title=group.label)
    return figure


@_styled
def plot_bump_hunt(study, numbers):
    """Mass histograms at the luminosity, before and after the loss cut."""
    dists, _missing = measures.bump_hunt_distributions(study)
    if dists is None:
        return None
    s = study.settings
    figure, axes = _figure(ncols=2, lumi=s.lumi_fb)
    edges = dists["edges"]
    for ax, when in zip(axes, ("before", "after"), strict=True):
        background = dists["background"][when][0][1:-1]
        signal = dists["signal"][when][0][1:-1]
        artists = mplhep.histplot(
            [background, signal],
            edges,
            stack=True,
            histtype="fill",
            label=[s.background, s.bump_signal],
            ax=ax,
        )
        for edge in numbers["window"]:  # lines: a shaded band hides under the fill
            ax.axvline(edge, color="black", ls="--", lw=1.5)
        colours = {a.stairs.get_label(): a.stairs.get_facecolor() for a in artists}
        handles = [
            Patch(color=colours[label], label=label)
            for label in (s.background, s.bump_signal)
        ]
        handles.append(Line2D([], [], color="black", ls="--", label="mass window"))
        ratio = numbers[f"s_over_b_{when}"]
        title = (
            "No cut"
            if when == "before"
            else (f"{dists['model']} loss cut\nkeeping {s.bump_cut_qcd_eff:.1%} of QCD")
        )
        if ratio is not None:
            title += f"\nS/B = {ratio:.1%} in window"
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, low * (high / low) ** 1.6)  # headroom for the legend
        ax.set_xlabel("Jet mass [GeV]")
        ax.set_ylabel("Jets / bin")
        # An opaque frame, top right: the legend must not sit on the fill.
        ax.legend(
            handles=handles, title=title, loc="upper right", frameon=True, framealpha=1
        )
    return figure


@_styled
def plot_robustness(study, group):
    """Loss distributions, nominal shower (solid) against the alternative (dashed)."""
    model = group.members[0]
    figure, (ax,) = _figure()
    drawn = 0
    for dataset in [study.background, *study.signals()]:
        alt = study.alternative(dataset)
        if alt is None:
            continue
        for name, line in ((dataset, "-"), (alt, "--")):
            dist = study.loss(name, model)
            if dist is None:
                continue
            inner, edges = _coarse(dist.values[1:-1], dist.axis.edges)
            mplhep.histplot(inner / dist.total, edges, ax=ax, ls=line, label=name)
            drawn += 1
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_xlabel("Reconstruction loss (MSE)")
    ax.set_ylabel("Fraction of jets")
    ax.legend(title=group.label)
    return figure


def _coarse(values, edges, bins=100):
    """Merge neighbouring bins for display: (n,), (n + 1,) -> about ``bins`` bins."""
    factor = max(1, values.size // bins)
    if values.size % factor:
        return values, edges
    return values.reshape(-1, factor).sum(axis=1), edges[::factor]


@_styled
def plot_latent_scan(scans):
    """PCA eigenvalue spectrum (scree) and validation loss against k."""
    scree = {n: s["eigenvalues"] for n, s in scans.items() if "eigenvalues" in s}
    losses = {n: s for n, s in scans.items() if "k" in s}
    if not scree and not losses:
        return None
    figure, (left, right) = _figure(ncols=2)
    for name, eigen in scree.items():
        eigen = np.array([np.nan if v is None else v for v in eigen], float)
        left.plot(np.arange(1, eigen.size + 1), eigen, marker=".", label=name)
    left.set_yscale("log")
    left.set_xlabel("Principal component")
    left.set_ylabel("Eigenvalue")
    for name, scan in losses.items():
        loss = [np.nan if v is None else v for v in scan["val_loss"]]
        right.plot(scan["k"], loss, marker="o", label=name)
    right.set_yscale("log")
    right.set_xlabel("Latent dimension k")
    right.set_ylabel("Validation loss (MSE)")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k and components
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return figure
