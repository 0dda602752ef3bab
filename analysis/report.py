"""REPORT.md: every number of results.json beside the study's claim, with a verdict.

The claims are those of arXiv:1808.08992 as restated in the project's physics
notes. Each verdict is one of ``agree``, ``disagree``, ``inconclusive`` (the
difference lies within two standard deviations) or ``not measured`` (the inputs
lack a sample or a model), and the criterion behind it is written next to it.
"""

import math

__all__ = ["claims", "render"]

SIGMAS = 2.0  # a difference counts when it exceeds this many standard deviations
NEAR_MASS_AUC = 0.05  # "approach the jet-mass curve": |AUC - AUC(mass)| at most this
MILD_DROP = 0.30  # "mild": E10 and E100 lose at most this fraction of their value
RISE_CORRELATION = 0.3  # mean mass "rises" with the loss: correlation above this
KEEPS_SHAPE_KS = 0.3  # "keeps its shape": KS distance after the 1% cut below this
BUMP_GAIN = 3.0  # S/B "raised": at least this factor (the study: about 6)
ROBUST_AUC = 0.05  # "small differences": |AUC(alternative) - AUC(nominal)| at most


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _fixed(value, decimals=2):
    """Fixed decimals, for numbers printed side by side (before -> after)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{decimals}f}"


def _pm(entry, key):
    if not entry or entry.get(key) is None:
        return "n/a"
    err = entry.get(f"{key}_err")
    return f"{entry[key]:.3f} ± {err:.3f}" if err is not None else f"{entry[key]:.3f}"


def _by_arch(results):
    """{architecture: model name}: the uncontaminated model of each architecture.

    A model named exactly like its architecture wins; otherwise the shortest name.
    """
    groups = results["inputs"]["model_groups"]
    out = {}
    for name in sorted(
        groups, key=lambda n: (n != groups[n]["architecture"], len(n), n)
    ):
        if groups[name]["contamination"] is None:
            out.setdefault(groups[name]["architecture"], name)
    return out


def _metric(results, model, signal):
    return (results["models"].get(model) or {}).get(signal) or {}


def _compare(a, b, key):
    """+1 if a > b beyond SIGMAS, -1 if below, 0 within, None if not measured."""
    if not a or not b or a.get(key) is None or b.get(key) is None:
        return None
    diff = a[key] - b[key]
    err = math.hypot(a.get(f"{key}_err") or 0.0, b.get(f"{key}_err") or 0.0)
    if abs(diff) <= SIGMAS * err:
        return 0
    return 1 if diff > 0 else -1


def _verdict(outcomes):
    """Combine comparison outcomes that should all be +1 for agreement."""
    if not outcomes or any(o is None for o in outcomes):
        return "not measured"
    if any(o < 0 for o in outcomes):
        return "disagree"
    if all(o > 0 for o in outcomes):
        return "agree"
    return "inconclusive"


def claims(results):
    """[(claim, measured, verdict, criterion)] for every claim of the study."""
    arch = _by_arch(results)
    rows = [
        _claim_top_cnn(results, arch),
        _claim_top_near_mass(results, arch),
        _claim_gluino_pca(results, arch),
        _claim_contamination(results),
        _claim_mass_rise(results, arch),
        _claim_cnn_shape(results, arch),
        _claim_bump(results),
        _claim_robustness(results),
        _claim_field_auc(results, arch),
    ]
    return rows


def _claim_top_cnn(results, arch):
    cnn = _metric(results, arch.get("cnn"), "top")
    others = [_metric(results, arch.get(a), "top") for a in ("pca", "dense")]
    outcomes = [_compare(cnn, o, "auc") for o in others]
    measured = "AUC: CNN {}, PCA {}, dense {}".format(
        _pm(cnn, "auc"), _pm(others[0], "auc"), _pm(others[1], "auc")
    )
    return (
        "Top jets: the CNN autoencoder beats PCA and the dense autoencoder",
        measured,
        _verdict(outcomes),
        f"CNN AUC above each by more than {SIGMAS:g} standard deviations",
    )


def _claim_top_near_mass(results, arch):
    mass = _metric(results, "mass", "top")
    parts, outcomes = [], []
    for a in ("pca", "dense"):
        m = _metric(results, arch.get(a), "top")
        if m.get("auc") is None or mass.get("auc") is None:
            outcomes.append(None)
            continue
        gap = m["auc"] - mass["auc"]
        parts.append(f"{a} AUC - mass AUC = {gap:+.3f}")
        outcomes.append(1 if abs(gap) <= NEAR_MASS_AUC else -1)
    parts = parts or ["PCA and dense not measured"]
    measured = "; ".join(parts) + f" (mass AUC {_pm(mass, 'auc')})"
    return (
        "Top jets: PCA and dense curves approach the jet-mass curve",
        measured,
        _verdict(outcomes),
        f"|AUC - AUC(mass)| at most {NEAR_MASS_AUC}",
    )


def _claim_gluino_pca(results, arch):
    pca = _metric(results, arch.get("pca"), "gluino")
    cnn = _metric(results, arch.get("cnn"), "gluino")
    return (
        "Gluino jets: PCA beats the CNN",
        f"AUC: PCA {_pm(pca, 'auc')}, CNN {_pm(cnn, 'auc')}; "
        f"E10: PCA {_pm(pca, 'e10')}, CNN {_pm(cnn, 'e10')}",
        _verdict([_compare(pca, cnn, "auc")]),
        f"PCA AUC above the CNN's by more than {SIGMAS:g} standard deviations",
    )


def _claim_contamination(results):
    parts, outcomes = [], []
    for architecture, by_signal in results["contamination"].items():
        for signal, series in by_signal.items():
            if len(series["fractions"]) < 2 or series["fractions"][0] != 0:
                continue
            top = series["fractions"][-1]
            e10, e100 = series["relative_change_e10"], series["relative_change_e100"]
            parts.append(
                f"{architecture}, {signal} at {top:.0%}: E10 {_fmt(e10, 2)}, "
                f"E100 {_fmt(e100, 2)} (relative change from 0%)"
            )
            for change in (e10, e100):
                outcomes.append(
                    None if change is None else 1 if change >= -MILD_DROP else -1
                )
    return (
        "Contamination: E10 and E100 drop only mildly as contamination grows",
        "; ".join(parts) or "no contaminated model with an uncontaminated partner",
        _verdict(outcomes),
        f"E10 and E100 lose at most {MILD_DROP:.0%} at the largest fraction",
    )


def _claim_mass_rise(results, arch):
    corr = results["mass_correlation"]
    parts, outcomes = [], []
    for a in ("pca", "dense"):
        r = (corr.get(arch.get(a)) or {}).get("correlation_mass_log10_loss")
        parts.append(f"{a}: correlation(mass, log loss) = {_fmt(r, 3)}")
        outcomes.append(None if r is None else 1 if r > RISE_CORRELATION else -1)
    return (
        "Mass correlation: for PCA and dense the mean jet mass rises with the loss",
        "; ".join(parts),
        _verdict(outcomes),
        f"QCD correlation of mass with log10(loss) above {RISE_CORRELATION}",
    )


def _ks_at(results, model, keep=0.01):
    cuts = (results["mass_correlation"].get(model) or {}).get("after_cuts") or []
    return next((c["ks_distance"] for c in cuts if c["qcd_eff"] == keep), None)


def _claim_cnn_shape(results, arch):
    ks = {a: _ks_at(results, arch.get(a)) for a in ("cnn", "pca", "dense")}
    measured = "KS distance of the QCD mass shape after the 1% cut: " + ", ".join(
        f"{a} {_fmt(v, 2)}" for a, v in ks.items()
    )
    if ks["cnn"] is None:
        outcomes = [None]
    else:
        outcomes = [1 if ks["cnn"] < KEEPS_SHAPE_KS else -1]
        outcomes += [
            1 if ks["cnn"] < ks[a] else -1
            for a in ("pca", "dense")
            if ks[a] is not None
        ]
    return (
        "Mass correlation: for the CNN the QCD mass shape survives cuts keeping "
        "10%, 1%, 0.1% of QCD",
        measured,
        _verdict(outcomes),
        f"CNN KS distance below {KEEPS_SHAPE_KS} and below PCA's and dense's "
        "(where measured)",
    )


def _claim_bump(results):
    b = results["bump_hunt"]
    before, after = b.get("s_over_b_before"), b.get("s_over_b_after")
    if before and after:
        gain = after / before
        verdict = "agree" if gain >= BUMP_GAIN else "disagree"
        measured = (
            f"S/B {before:.1%} -> {after:.1%} (x{gain:.1f}) with {b['model']} in "
            f"[{b['window'][0]:g}, {b['window'][1]:g}] GeV; S/sqrt(B) "
            f"{_fixed(b.get('significance_before'))} -> "
            f"{_fixed(b.get('significance_after'))}"
        )
    else:
        verdict = "not measured"
        measured = b.get("missing") or b.get("note") or "no S/B"
    return (
        "Bump hunt: a CNN loss cut raises S/B in the gluino window from about 4% to "
        "about 25%",
        measured,
        verdict,
        f"S/B raised by at least x{BUMP_GAIN:g} (the study: about x6); the absolute "
        "values depend on cross sections and window",
    )


def _claim_robustness(results):
    rob = results["robustness"]
    parts, outcomes = [], []
    for model, entry in rob.get("models", {}).items():
        for signal, delta in entry.get("delta_auc", {}).items():
            alt_auc = (entry["alternative"].get(signal) or {}).get("auc")
            parts.append(f"{model}/{signal}: dAUC {_fmt(delta, 2)}")
            if delta is None or alt_auc is None:
                outcomes.append(None)
            else:
                outcomes.append(1 if abs(delta) <= ROBUST_AUC and alt_auc > 0.5 else -1)
    return (
        "Robustness: on the other shower the differences are small and the "
        "separation stays",
        "; ".join(parts) or rob.get("missing", "no alternative-shower samples"),
        _verdict(outcomes),
        f"|AUC change| at most {ROBUST_AUC} and AUC above 0.5 on the other shower",
    )


def _claim_field_auc(results, arch):
    cnn = _metric(results, arch.get("cnn"), "top")
    auc = cnn.get("auc")
    verdict = (
        "not measured"
        if auc is None
        else "agree"
        if 0.85 <= auc <= 0.93
        else "disagree"
    )
    return (
        "Field: QCD-trained image autoencoders reach top-vs-QCD AUC about 0.85-0.93",
        f"CNN AUC {_pm(cnn, 'auc')}",
        verdict,
        "CNN AUC inside [0.85, 0.93]",
    )


# -- the document ----------------------------------------------------------------


def render(results):
    """REPORT.md text from a results.json dictionary."""
    lines = ["# aejets results", ""]
    lines += _inputs(results)
    lines += _claims_table(results)
    lines += _metrics_table(results)
    lines += _bump_section(results)
    lines += _contamination_section(results)
    lines += _mass_section(results)
    lines += _robustness_section(results)
    lines += _missing_section(results)
    lines += _notes(results)
    lines += _plots(results)
    return "\n".join(lines) + "\n"


def _inputs(results):
    inputs = results["inputs"]
    s = inputs["settings"]
    groups = ", ".join(
        name + (f" ({len(g['members'])} seeds)" if len(g["members"]) > 1 else "")
        for name, g in inputs["model_groups"].items()
    )
    return [
        f"Datasets: {', '.join(inputs['datasets']) or 'none'}. "
        f"Models: {groups or 'none'}; baseline: jet mass (`mass`).",
        f"Luminosity {s['lumi_fb']:g} fb^-1; background `{s['background']}`; "
        f"signals {', '.join(s['signals'])}.",
        "",
    ]


def _claims_table(results):
    lines = [
        "## The study's claims",
        "",
        "| claim | measured here | verdict | criterion |",
        "| --- | --- | --- | --- |",
    ]
    for claim, measured, verdict, criterion in claims(results):
        cells = [_cell(claim), _cell(measured), f"**{verdict}**", _cell(criterion)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _cell(text):
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metrics_table(results):
    lines = [
        "## AUC, E10, E100",
        "",
        "E10 and E100: signal efficiency at background efficiency 0.1 and 0.01. "
        "Errors: bootstrap over jets (Poisson-resampled bins), plus the spread over "
        "training seeds where a model has several.",
        "",
        "| model | signal | AUC | E10 | E100 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model, by_signal in results["models"].items():
        for signal, m in by_signal.items():
            lines.append(
                f"| {model} | {signal} | {_pm(m, 'auc')} | {_pm(m, 'e10')} | "
                f"{_pm(m, 'e100')} |"
            )
    return lines + [""]


def _bump_section(results):
    b = results["bump_hunt"]
    lines = ["## Bump hunt", ""]
    if b.get("missing"):
        return lines + [f"Not measured: {b['missing']}.", ""]
    lines += [
        f"Model `{b['model']}`, loss cut {_fmt(b.get('loss_cut'))} keeping "
        f"{b['cut_qcd_eff']:.1%} of QCD; window [{b['window'][0]:g}, "
        f"{b['window'][1]:g}] GeV (bin edges); {b['lumi_fb']:g} fb^-1.",
        "",
        "| | signal | background | S/B | S/sqrt(B) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for when in ("before", "after"):
        lines.append(
            f"| {when} the cut | {_fmt(b[f'signal_{when}'])} | "
            f"{_fmt(b[f'background_{when}'])} | {_fmt(b[f's_over_b_{when}'])} ± "
            f"{_fmt(b.get(f's_over_b_{when}_err'), 2)} | {_fixed(b[f'significance_{when}'])} |"
        )
    lines.append("")
    if b.get("note"):
        lines += [f"Note: {b['note']}.", ""]
    jets = b.get("background_jets_after")
    if jets is not None:
        lines += [f"Background jets in the window after the cut: {jets:.0f}.", ""]
    return lines + ["The study: S/B about 4% before and about 25% after.", ""]


def _contamination_section(results):
    lines = ["## Contamination", ""]
    if not results["contamination"]:
        return lines + ["Not measured: no model trained with signal contamination.", ""]
    for architecture, by_signal in results["contamination"].items():
        for signal, series in by_signal.items():
            lines += [
                f"{architecture}, evaluated on {signal}:",
                "",
                "| fraction | model | AUC | E10 | E100 |",
                "| --- | --- | --- | --- | --- |",
            ]
            for i, fraction in enumerate(series["fractions"]):
                row = {k: series[k][i] for k in series if isinstance(series[k], list)}
                lines.append(
                    f"| {fraction:.0%} | {series['models'][i]} | {_pm(row, 'auc')} | "
                    f"{_pm(row, 'e10')} | {_pm(row, 'e100')} |"
                )
            lines.append("")
    return lines


def _mass_section(results):
    lines = [
        "## Mass correlation (QCD)",
        "",
        "| model | corr(mass, log10 loss) | mean mass [GeV] | after cuts: QCD kept, "
        "mean mass, KS distance |",
        "| --- | --- | --- | --- |",
    ]
    for model, entry in results["mass_correlation"].items():
        if entry.get("missing"):
            lines.append(f"| {model} | n/a | n/a | {entry['missing']} |")
            continue
        cuts = "; ".join(
            f"{c['qcd_eff']:.1%}: {c['entries']:.1f} jets, too few"
            if c.get("missing")
            else f"{c['qcd_eff']:.1%}: {_fmt(c['mean_mass'])}, {_fmt(c['ks_distance'], 2)}"
            for c in entry["after_cuts"]
        )
        lines.append(
            f"| {model} | {_fmt(entry['correlation_mass_log10_loss'], 3)} | "
            f"{_fmt(entry['mean_mass'])} | {cuts} |"
        )
    return lines + [""]


def _robustness_section(results):
    rob = results["robustness"]
    lines = ["## Robustness (alternative shower)", ""]
    if rob.get("missing") and not rob.get("models"):
        return lines + [f"Not measured: {rob['missing']}.", ""]
    lines += [
        "| model | signal | AUC nominal | AUC alternative | E10 nominal | "
        "E10 alternative | QCD eff. of the nominal cut |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, entry in rob["models"].items():
        eff = (entry.get("background_eff_at_nominal_cut") or {}).get("alternative")
        for signal in entry["nominal"]:
            nom, alt = entry["nominal"][signal], entry["alternative"][signal]
            lines.append(
                f"| {model} | {signal} | {_pm(nom, 'auc')} | {_pm(alt, 'auc')} | "
                f"{_pm(nom, 'e10')} | {_pm(alt, 'e10')} | {_fmt(eff)} |"
            )
    return lines + [""]


def _missing_section(results):
    if not results["missing"]:
        return []
    return ["## Missing inputs", ""] + [f"- {m}" for m in results["missing"]] + [""]


def _notes(results):
    s = results["inputs"]["settings"]
    return [
        "## Conventions",
        "",
        "- A jet is signal-like when its score lies above the cut: a high loss for the "
        "autoencoders and a high jet mass for the mass baseline. The baseline is a "
        "one-sided cut, not a mass window: for a signal whose mass lies inside the "
        "QCD bulk (tops) its E10 and E100 can be near zero.",
        "- Efficiencies come from the histograms; between bin edges eps_S is "
        "interpolated linearly in eps_B.",
        f"- Yields are divided by eval_fraction = {s['eval_fraction']:g}: only the "
        "evaluation half of the events fills the histograms, with weights normalized "
        "to the whole sample.",
        f"- Uncertainties: {s['bootstrap_replicas']} Poisson bootstrap replicas per "
        "histogram (effective entries value^2/variance); S/B errors from the weight "
        "variances.",
        "",
    ]


def _plots(results):
    pngs = [p for p in results.get("plots", []) if p.endswith(".png")]
    if not pngs:
        return []
    return ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
