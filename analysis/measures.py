"""The study's measurements, from a :class:`~analysis.study.Study`.

Each function returns plain dictionaries of numbers (NaN where a number cannot be
computed) and, where the inputs lack something, a ``"missing"`` entry saying what.
``analysis.results`` turns them into ``results.json``; ``analysis.plots`` draws
from the same functions, so that a plot and its number never disagree.
"""

import logging
from functools import partial

import numpy as np

from analysis import statistics as st
from analysis.study import DEFAULT_LATENT, MASS_MODEL
from processors.histograms import FAILING_TRUTH

__all__ = [
    "bump_hunt",
    "bump_hunt_distributions",
    "contamination",
    "latent_scans",
    "mass_correlation",
    "model_metrics",
    "robustness",
]

log = logging.getLogger(__name__)

# Fewer (effective) jets than this give no meaningful mean or shape.
MIN_JETS = 5

_EMPTY = {name: np.nan for m in st.METRICS for name in (m, f"{m}_err")}


def _pair_metrics(study, signal_dist, background_dist):
    if signal_dist is None or background_dist is None:
        return None
    s = study.settings
    return st.bootstrap_metrics(
        signal_dist, background_dist, s.bootstrap_replicas, s.bootstrap_seed
    )


def group_metrics(study, group, signal, background=None):
    """AUC, E10, E100 (with errors) of a model group for one signal dataset."""
    background = background or study.background
    per_seed = [
        m
        for m in (
            _pair_metrics(study, study.loss(signal, name), study.loss(background, name))
            for name in group.members
        )
        if m is not None
    ]
    if not per_seed:
        return dict(_EMPTY, missing=f"no {signal!r} or {background!r} jets scored")
    out = st.combine_seeds(per_seed)
    if len(per_seed) > 1:
        out["seeds"] = [s for s in group.seeds]
    return out


def mass_metrics(study, signal, background=None):
    """The jet-mass baseline: a higher jet mass counts as more signal-like."""
    background = background or study.background
    result = _pair_metrics(study, study.mass(signal), study.mass(background))
    if result is None:
        return dict(_EMPTY, missing=f"no {signal!r} or {background!r} jet masses")
    return result


def model_metrics(study):
    """{model: {signal: metrics}} for every model group and the mass baseline."""
    signals = study.signals()
    out = {
        group.name: {s: group_metrics(study, group, s) for s in signals}
        for group in study.groups.values()
    }
    out[MASS_MODEL] = {s: mass_metrics(study, s) for s in signals}
    return out


# -- contamination ---------------------------------------------------------------


def contamination(study, metrics):
    """E10, E100 and AUC against the contamination ratio, per architecture.

    The point at 0 is the uncontaminated model of the same architecture and latent
    dimension; every point is evaluated on the contaminating signal.
    """
    series = {}
    for group in study.contaminated_groups():
        signal, fraction = group.contamination
        key = (group.architecture, group.latent, signal)
        series.setdefault(key, []).append((fraction, group.name))
    out = {}
    for (architecture, latent, signal), points in sorted(series.items(), key=str):
        clean = [
            g
            for g in study.nominal_groups()
            if g.architecture == architecture and g.latent == latent
        ]
        if clean:
            points.append((0.0, clean[0].name))
        points.sort()
        entry = {
            "signal": signal,
            "fractions": [f for f, _ in points],
            "models": [name for _, name in points],
        }
        for name in ("auc", "e10", "e100"):
            for key in (name, f"{name}_err"):
                entry[key] = [
                    metrics[model].get(signal, _EMPTY)[key] for _, model in points
                ]
        entry["relative_change_e10"] = _relative_change(entry["e10"])
        entry["relative_change_e100"] = _relative_change(entry["e100"])
        name = architecture
        if latent not in (None, DEFAULT_LATENT):
            name = f"{architecture}_k{latent}"
        out.setdefault(name, {})[signal] = entry
    return out


def _relative_change(values):
    """(last - first) / first along increasing contamination, NaN if undefined."""
    if len(values) < 2 or not values[0] or not np.isfinite(values[0]):
        return np.nan
    return float((values[-1] - values[0]) / values[0])


# -- mass correlation ------------------------------------------------------------


def _qcd_loss_marginal(one):
    """Loss distribution of a (mass, loss) histogram, summed over mass with flow."""
    values = one.values(flow=True)  # (mass + 2, loss + 2)
    variances = one.variances(flow=True)
    return st.Binned(values.sum(axis=0), variances.sum(axis=0), one.axes["loss"])


def mass_correlation(study):
    """Mean QCD mass in loss bins, mass-loss correlation, mass shapes after cuts."""
    out = {}
    for group in study.nominal_groups():
        one = study.mass_loss(study.background, group.members[0])
        if one is None:
            out[group.name] = {"missing": f"no {study.background!r} jets scored"}
            continue
        out[group.name] = _mass_correlation_one(study, one)
    return out


def _mass_correlation_one(study, one):
    values = one.values()  # (mass, loss) without flow
    variances = one.variances()
    mass_centres = one.axes["mass"].centers
    loss_centres = one.axes["loss"].centers
    mean, error, entries = st.column_means(values, variances, mass_centres)
    filled = entries >= MIN_JETS
    before = one.values(flow=True).sum(axis=1)  # (mass + 2,)
    cuts = []
    marginal = _qcd_loss_marginal(one)
    for keep in study.settings.qcd_keep_fractions:
        weights, cut = st.cut_keeping(marginal, keep)
        after = one.values(flow=True) @ weights  # (mass + 2,)
        after_var = one.variances(flow=True) @ weights
        kept = float(st.effective_entries(after, after_var).sum())
        entry = {"qcd_eff": keep, "loss_cut": cut, "entries": kept}
        if kept >= MIN_JETS:
            entry["mean_mass"] = _mean(after[1:-1], mass_centres)
            entry["ks_distance"] = st.ks_distance(before, after)
        else:  # a shape of a jet or two says nothing
            entry["mean_mass"] = entry["ks_distance"] = None
            entry["missing"] = (
                f"{kept:.1f} QCD jets kept: too few (at least {MIN_JETS})"
            )
        cuts.append(entry)
    return {
        "correlation_mass_log10_loss": st.weighted_correlation(
            values, mass_centres, np.log10(loss_centres)
        ),
        "mean_mass": _mean(before[1:-1], mass_centres),
        "mean_mass_vs_loss": {
            "loss": loss_centres[filled].tolist(),
            "mean_mass": mean[filled].tolist(),
            "mean_mass_err": error[filled].tolist(),
        },
        "rise_mean_mass": _rise(mean[filled]),
        "after_cuts": cuts,
    }


def _mean(values, centres):
    total = values.sum()
    return float(values @ centres / total) if total > 0 else np.nan


def _rise(means):
    """Spearman-like rank correlation of the mean mass with the loss-bin order."""
    if means.size < 3:
        return np.nan
    ranks = np.argsort(np.argsort(means))
    order = np.arange(means.size)
    return float(np.corrcoef(order, ranks)[0, 1])


# -- bump hunt -------------------------------------------------------------------


def _all_signal_jets(study, signal, member):
    """The signal's jets as data would see them: truth-passing and failing alike."""
    parts = [study.mass_loss(name, member) for name in (signal, signal + FAILING_TRUTH)]
    parts = [part for part in parts if part is not None]
    return sum(parts[1:], parts[0]) if parts else None


def bump_hunt_distributions(study):
    """Mass distributions (events at the luminosity) before and after the loss cut.

    Returns None with a reason when the inputs lack the bump model, the signal or
    the background. The cut keeps ``bump_cut_qcd_eff`` of the QCD jets of all
    masses.
    """
    s = study.settings
    group = study.bump_group()
    if group is None:
        return None, f"no model {s.bump_model!r} among {sorted(study.groups)}"
    member = group.members[0]
    qcd = study.mass_loss(s.background, member)
    signal = _all_signal_jets(study, s.bump_signal, member)
    if qcd is None or signal is None:
        return (
            None,
            f"no {s.background!r} or {s.bump_signal!r} jets scored by {member!r}",
        )
    weights, cut = st.cut_keeping(_qcd_loss_marginal(qcd), s.bump_cut_qcd_eff)
    scale = s.lumi_pb / s.eval_fraction  # pb per jet -> events
    dists = {"model": group.name, "member": member, "loss_cut": cut}
    dists["edges"] = qcd.axes["mass"].edges
    for name, one in (("background", qcd), ("signal", signal)):
        values = one.values(flow=True) * scale  # (mass + 2, loss + 2)
        variances = one.variances(flow=True) * scale**2
        dists[name] = {
            "before": (values.sum(axis=1), variances.sum(axis=1)),
            "after": (values @ weights, variances @ weights),
        }
    return dists, None


def bump_hunt(study):
    """S/B and S/sqrt(B) in the mass window before and after the loss cut."""
    s = study.settings
    out = {
        "model": s.bump_model,
        "signal": s.bump_signal,
        "window": list(s.window),
        "lumi_fb": s.lumi_fb,
        "cut_qcd_eff": s.bump_cut_qcd_eff,
    }
    dists, missing = bump_hunt_distributions(study)
    if dists is None:
        names = ("s_over_b", "significance", "signal", "background")
        out.update({f"{n}_{w}": np.nan for n in names for w in ("before", "after")})
        out["missing"] = missing
        return out
    out["model"] = dists["model"]
    out["loss_cut"] = dists["loss_cut"]
    for when in ("before", "after"):
        sig, sig_var, used = st.window_yield(
            *dists["signal"][when], dists["edges"], s.window
        )
        bkg, bkg_var, _ = st.window_yield(
            *dists["background"][when], dists["edges"], s.window
        )
        out["window"] = list(used)
        out[f"signal_{when}"] = sig
        out[f"background_{when}"] = bkg
        out[f"s_over_b_{when}"] = sig / bkg if bkg > 0 else np.nan
        out[f"s_over_b_{when}_err"] = _ratio_error(sig, sig_var, bkg, bkg_var)
        out[f"significance_{when}"] = sig / np.sqrt(bkg) if bkg > 0 else np.nan
        # jets of the background that really fill the window: the statistical
        # weight of the S/B figure
        out[f"background_jets_{when}"] = _window_entries(
            dists["background"][when], dists["edges"], s.window
        )
        if not bkg > 0:
            out["note"] = (
                f"no {s.background} jet lies in the window {when} the cut; S/B is "
                "undefined: more background jets are needed"
            )
    return out


def _window_entries(dist, edges, window):
    values, variances = dist
    entries = st.effective_entries(values, variances)
    return st.window_yield(entries, entries, edges, window)[0]


def _ratio_error(num, num_var, den, den_var):
    """Error of num/den from the Weight-storage variances (independent samples)."""
    if not (num > 0 and den > 0):
        return np.nan
    return float(num / den * np.sqrt(num_var / num**2 + den_var / den**2))


# -- robustness ------------------------------------------------------------------


def robustness(study):
    """Nominal-trained models on the alternative-shower samples."""
    s = study.settings
    alt_background = study.alternative(s.background)
    out = {"shower_suffix": s.alt_shower_suffix, "models": {}}
    if alt_background is None:
        name = s.background + s.alt_shower_suffix
        out["missing"] = (
            f"no {name!r} jets (no such dataset, or 0 events in the profile)"
        )
        return out
    pairs = [(sig, study.alternative(sig)) for sig in study.signals()]
    pairs = [(sig, alt) for sig, alt in pairs if alt is not None]
    out["datasets"] = {s.background: alt_background, **dict(pairs)}
    if not pairs:
        out["missing"] = f"no signal dataset with the suffix {s.alt_shower_suffix!r}"
    for group in study.nominal_groups():
        model = group.members[0]
        entry = _compare_showers(
            pairs,
            partial(group_metrics, study, group),
            partial(group_metrics, study, group, background=alt_background),
        )
        entry["loss_shape"] = {
            nominal: _loss_shape(study, model, nominal, alt)
            for nominal, alt in out["datasets"].items()
        }
        entry["background_eff_at_nominal_cut"] = _eff_at_nominal_cut(
            study, model, alt_background
        )
        out["models"][group.name] = entry
    out["models"][MASS_MODEL] = _compare_showers(
        pairs,
        partial(mass_metrics, study),
        partial(mass_metrics, study, background=alt_background),
    )
    return out


def _compare_showers(pairs, nominal_metrics, alternative_metrics):
    """Metrics per signal on each shower, and the change of the AUC."""
    entry = {"nominal": {}, "alternative": {}, "delta_auc": {}}
    for signal, alt in pairs:
        nominal, alternative = nominal_metrics(signal), alternative_metrics(alt)
        entry["nominal"][signal] = nominal
        entry["alternative"][signal] = alternative
        entry["delta_auc"][signal] = alternative["auc"] - nominal["auc"]
    return entry


def _loss_shape(study, model, nominal, alt):
    a, b = study.loss(nominal, model), study.loss(alt, model)
    if a is None or b is None:
        return {"alternative": alt, "missing": f"no {nominal!r} or {alt!r} jets scored"}
    log_centres = np.log10(a.axis.centers)
    return {
        "alternative": alt,
        "ks_distance": st.ks_distance(a.values, b.values),
        "mean_log10_loss_nominal": _mean(a.values[1:-1], log_centres),
        "mean_log10_loss_alternative": _mean(b.values[1:-1], log_centres),
    }


def _eff_at_nominal_cut(study, model, alt_background):
    """QCD efficiency on the alternative shower of the cut keeping 1% of nominal QCD."""
    nominal = study.loss(study.background, model)
    alt = study.loss(alt_background, model)
    keep = study.settings.bump_cut_qcd_eff
    if nominal is None or alt is None:
        return {"nominal": keep, "alternative": np.nan}
    weights, _ = st.cut_keeping(nominal, keep)
    return {"nominal": keep, "alternative": float(alt.values @ weights / alt.total)}


# -- latent dimension ------------------------------------------------------------

_K_KEYS = ("k", "latent", "latents", "ks", "latent_dims")
_LOSS_KEYS = ("val_loss", "validation_loss", "loss", "losses")
_EIGEN_KEYS = ("eigenvalues", "explained_variance", "scree", "spectrum")


def _first(mapping, keys):
    return next((mapping[k] for k in keys if k in mapping), None)


def _normalize_scan(scan):
    try:
        return _normalize_scan_unchecked(scan)
    except (TypeError, ValueError) as err:
        log.warning("latent scan %r skipped: not a list of numbers (%s)", scan, err)
        return None


def _normalize_scan_unchecked(scan):
    """A latent scan in any of the accepted shapes -> {"k", "val_loss", "eigenvalues"}.

    Accepted: ``{"k": [...], "val_loss": [...], "eigenvalues": [...]}`` (any
    subset, common aliases), a list of ``{"k": .., "val_loss": ..}``, or a mapping
    ``{k: val_loss}``.
    """
    if isinstance(scan, list):
        rows = [r for r in scan if isinstance(r, dict)]
        scan = {
            "k": [_first(r, _K_KEYS) for r in rows],
            "val_loss": [_first(r, _LOSS_KEYS) for r in rows],
        }
    if not isinstance(scan, dict):
        return None
    k, loss = _first(scan, _K_KEYS), _first(scan, _LOSS_KEYS)
    if k is None and loss is None and scan and all(_is_int(key) for key in scan):
        pairs = sorted((int(key), value) for key, value in scan.items())
        k, loss = [p[0] for p in pairs], [p[1] for p in pairs]
    out = {}
    if k is not None and loss is not None and len(k) == len(loss):
        out["k"] = [int(v) for v in k]
        out["val_loss"] = [float(v) if v is not None else np.nan for v in loss]
    eigen = _first(scan, _EIGEN_KEYS)
    if eigen is not None:
        out["eigenvalues"] = [np.nan if v is None else float(v) for v in eigen]
    return out or None


def _is_int(text):
    try:
        int(text)
    except (TypeError, ValueError):
        return False
    return True


def _expand_scan(name, scan):
    """[(model, normalized scan)] from one scan, which may cover several models.

    ``models.latent.latent_scan`` writes ``{"latents": [...], "pca": {...},
    "dense": {...}, "cnn": {...}}``: one entry per architecture.
    """
    if isinstance(scan, dict) and "latents" in scan:
        parts = [
            (a, scan[a])
            for a in ("pca", "dense", "cnn")
            if isinstance(scan.get(a), dict)
        ]
        if parts:
            return [
                (arch, found)
                for arch, sub in parts
                if (found := _normalize_scan({"k": scan["latents"], **sub}))
            ]
    found = _normalize_scan(scan)
    return [(name, found)] if found else []


def latent_scans(run_info):
    """{model: scan}: scree and validation loss against k, without any signal.

    Read from ``run.json`` 'training' (``{model: {"latent_scan": ...}}``, or
    ``{"latent_scan": ...}`` holding one scan per model or the output of
    ``models.latent.latent_scan``) and from the model cards ('latent_scan', and
    the PCA card's 'eigenvalues').
    """
    training = run_info.get("training") or {}
    found = []
    for name, info in training.items():
        if name == "latent_scan":
            if isinstance(info, dict) and "latents" not in info:
                for model, scan in info.items():
                    found += _expand_scan(model, scan)
            else:
                found += _expand_scan("latent_scan", info)
        elif isinstance(info, dict) and "latent_scan" in info:
            found += _expand_scan(name, info["latent_scan"])
    for name, card in (run_info.get("models") or {}).items():
        if isinstance(card, dict):
            found += _expand_scan(name, card.get("latent_scan"))
            found += _expand_scan(name, {"eigenvalues": card.get("eigenvalues")})
    scans = {}
    for name, scan in found:
        for key, value in scan.items():
            scans.setdefault(name, {}).setdefault(key, value)
    return scans
