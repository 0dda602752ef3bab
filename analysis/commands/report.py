"""`aejets report RESULTS_DIR`: rebuild plots, results.json and REPORT.md.

Reads only ``histograms.pkl`` and ``run.json`` of the results folder; nothing is
generated, trained or scored again.
"""

import logging

log = logging.getLogger("aejets.report")


def register(subparsers):
    parser = subparsers.add_parser(
        "report",
        help="rebuild plots, results.json and REPORT.md from a results folder",
        description=(
            "Rebuild the plots (PNG and PDF), histograms.root, results.json and "
            "REPORT.md of a results folder from its saved histograms.pkl and run.json, "
            "without rerunning anything."
        ),
    )
    parser.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="a folder written by 'aejets run'"
    )
    parser.set_defaults(func=run)


def run(args):
    from analysis.results import load_results_inputs, write_outputs

    histograms, run_info = load_results_inputs(args.results_dir)
    results = write_outputs(
        args.results_dir, histograms, run_info, progress=lambda text: log.info(text)
    )
    print(summary_table(results))
    log.info(
        "wrote %s/results.json, REPORT.md and %d plot files",
        args.results_dir,
        len(results["plots"]),
    )
    return 0


def summary_table(results):
    """One screen: AUC, E10, E100 per model and signal; S/B before and after."""

    def cell(entry, key):
        value, err = entry.get(key), entry.get(f"{key}_err")
        if value is None:
            return "n/a".rjust(15)
        return (f"{value:.3f}" + (f" ± {err:.3f}" if err is not None else "")).rjust(15)

    lines = [f"{'model':<16}{'signal':<10}{'AUC':>15}{'E10':>15}{'E100':>15}"]
    for model, by_signal in results["models"].items():
        for signal, entry in by_signal.items():
            lines.append(
                f"{model:<16}{signal:<10}"
                + "".join(cell(entry, k) for k in ("auc", "e10", "e100"))
            )
    bump = results["bump_hunt"]
    before, after = bump.get("s_over_b_before"), bump.get("s_over_b_after")
    if before is not None and after is not None:
        lines.append(
            f"S/B in [{bump['window'][0]:g}, {bump['window'][1]:g}] GeV with "
            f"{bump['model']}: {before:.1%} before, {after:.1%} after the cut"
        )
    else:
        lines.append(f"bump hunt: {bump.get('missing', 'not measured')}")
    return "\n".join(lines)
