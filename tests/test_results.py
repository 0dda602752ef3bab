"""A synthetic results folder: every output is written, read back and rebuilt."""

import json
import math
import pickle

import numpy as np
import pytest
import uproot

from analysis import cli
from analysis.errors import ConfigError, InputError
from analysis.results import load_results_inputs, write_results
from processors.histograms import book

DATASETS = {
    "qcd": "qcd",
    "top": "top",
    "gluino": "gluino",
    "qcd_vincia": "qcd",
    "top_vincia": "top",
}
XSEC_PB = {"qcd": 1000.0, "top": 20.0, "gluino": 5.0}
# mean log10(loss) above QCD per process, and the rise of log10(loss) per 100 GeV
MODELS = {
    "pca": ({"qcd": 0.0, "top": 0.6, "gluino": 1.2}, 0.6),
    "dense": ({"qcd": 0.0, "top": 0.7, "gluino": 1.0}, 0.5),
    "cnn": ({"qcd": 0.0, "top": 1.5, "gluino": 0.8}, 0.0),
    "cnn_seed2": ({"qcd": 0.0, "top": 1.4, "gluino": 0.8}, 0.0),
    "cnn_top0.05": ({"qcd": 0.0, "top": 1.3, "gluino": 0.8}, 0.0),
}
PLOTS = [
    "roc_top",
    "roc_gluino",
    "contamination_cnn_top",
    "mass_vs_loss",
    "mass_after_cuts_pca",
    "mass_after_cuts_dense",
    "mass_after_cuts_cnn",
    "robustness_pca",
    "robustness_dense",
    "robustness_cnn",
    "bump_hunt",
    "latent_scan",
]


def _masses(rng, process, n):
    if process == "qcd":
        return rng.exponential(120.0, n) + 20.0
    return rng.normal({"top": 175.0, "gluino": 400.0}[process], 25.0, n)


def synthetic_inputs(datasets=DATASETS, models=MODELS, jets=6000, seed=1):
    """Histograms as `book(lazy=False)` filled by the score processor, and run.json."""
    rng = np.random.default_rng(seed)
    histograms = book(lazy=False)
    for dataset, process in datasets.items():
        mass = _masses(rng, process, jets)  # (jets,)
        weight = np.full(jets, XSEC_PB[process] / jets)  # pb per jet
        histograms["mass"].fill(dataset=dataset, mass=mass, weight=weight)
        shift = 0.1 if dataset.endswith("_vincia") else 0.0
        for model, (offset, slope) in models.items():
            x = offset[process] + shift + slope * (mass - 100) / 100
            loss = 10.0 ** (-6 + x + rng.normal(0, 1, jets))  # (jets,)
            fields = {"dataset": dataset, "model": model, "weight": weight}
            histograms["loss"].fill(loss=loss, **fields)
            histograms["mass_loss"].fill(mass=mass, loss=loss, **fields)
    cards = {
        name: {
            "architecture": name.split("_")[0],
            "latent": 6,
            "seed": 2 if name.endswith("seed2") else 1,
            "contamination": (
                {"signal": "top", "fraction": 0.05} if "top0" in name else None
            ),
        }
        for name in models
    }
    run_info = {
        "datasets": {
            d: {"process": p, "signal": p != "qcd"} for d, p in datasets.items()
        },
        "models": cards,
        "settings": {"lumi_fb": 100.0, "window": [350.0, 450.0], "bump_model": "cnn"},
        "training": {
            "pca": {
                "latent_scan": {"eigenvalues": (1 / np.arange(1, 20) ** 2).tolist()}
            },
            "cnn": {"latent_scan": {"k": [2, 4, 6, 8], "val_loss": [4, 3, 2, 1.9]}},
        },
    }
    return histograms, run_info


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("results")
    histograms, run_info = synthetic_inputs()
    results = write_results(path, histograms, run_info)
    return path, histograms, results


def _no_nan(text):
    def refuse(token):
        raise ValueError(f"results.json holds {token}")

    return json.loads(text, parse_constant=refuse)


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_every_plot_is_written_as_png_and_pdf(folder):
    path, _, results = folder
    for name in PLOTS:
        png, pdf = path / "plots" / f"{name}.png", path / "plots" / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
    assert sorted(results["plots"]) == sorted(
        f"plots/{n}.{f}" for n in PLOTS for f in ("png", "pdf")
    )


def test_root_file_reads_back_with_the_same_contents(folder):
    path, histograms, _ = folder
    with uproot.open(path / "histograms.root") as root:
        loss = root["loss/qcd/cnn"]
        expected = histograms["loss"][{"dataset": "qcd", "model": "cnn"}]
        np.testing.assert_allclose(loss.values(flow=True), expected.values(flow=True))
        np.testing.assert_allclose(
            loss.variances(flow=True), expected.variances(flow=True)
        )
        np.testing.assert_allclose(loss.axis().edges(), expected.axes[0].edges)
        two = root["mass_loss/top/cnn_top0.05"]
        expected = histograms["mass_loss"][{"dataset": "top", "model": "cnn_top0.05"}]
        assert two.classname == "TH2D"
        np.testing.assert_allclose(two.values(flow=True), expected.values(flow=True))
        mass = root["mass/gluino"]
        np.testing.assert_allclose(
            mass.values(), histograms["mass"][{"dataset": "gluino"}].values()
        )
        # The title says what the contents are: the report's normalization.
        assert loss.title.startswith("loss of qcd, model cnn: evaluation jets only")
        assert "pb per jet" in mass.title and "2 x L x content" in mass.title


def test_pickle_and_run_json_are_the_inputs(folder):
    path, histograms, _ = folder
    with (path / "histograms.pkl").open("rb") as handle:
        saved = pickle.load(handle)
    assert saved["loss"] == histograms["loss"]
    assert json.loads((path / "run.json").read_text())["settings"]["lumi_fb"] == 100


def test_results_json_has_the_required_shape_and_finite_numbers(folder):
    path, _, _ = folder
    results = _no_nan((path / "results.json").read_text())
    assert all(math.isfinite(v) for v in _numbers(results))
    for model in ("pca", "dense", "cnn", "cnn_top0.05", "mass"):
        for signal in ("top", "gluino"):
            entry = results["models"][model][signal]
            for key in ("auc", "auc_err", "e10", "e10_err", "e100", "e100_err"):
                assert entry[key] is not None, (model, signal, key)
    bump = results["bump_hunt"]
    for key in ("model", "window", "s_over_b_before", "s_over_b_after"):
        assert bump[key] is not None
    assert bump["window"] == [350.0, 450.0]
    assert bump["s_over_b_after"] > bump["s_over_b_before"]
    assert set(results["contamination"]["cnn"]["top"]["fractions"]) == {0.0, 0.05}
    assert set(results["robustness"]["models"]) == {"pca", "dense", "cnn", "mass"}
    # the two CNN seeds form one model whose error includes their spread
    assert results["models"]["cnn"]["top"]["seeds"] == [1, 2]
    assert "cnn_seed2" not in results["models"]


def test_report_names_the_claims_and_verdicts(folder):
    text = (folder[0] / "REPORT.md").read_text()
    assert "Gluino jets: PCA beats the CNN" in text
    assert "| **agree** |" in text
    assert "high jet mass" in text
    claims = text.split("## The study's claims")[1].split("##")[0]
    rows = [line for line in claims.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 9  # header, rule and one row per claim
    for row in rows:  # four cells: every other pipe is escaped
        assert row.replace("\\|", "").count("|") == 5, row


def test_report_command_rebuilds_outputs_from_the_saved_inputs(folder, tmp_path):
    path, _, _ = folder
    for name in ("histograms.pkl", "run.json"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    (tmp_path / "plots").mkdir()
    stale, own = tmp_path / "plots" / "roc_axion.png", tmp_path / "plots" / "mine.png"
    stale.write_bytes(b"old")
    own.write_bytes(b"user")
    assert cli.main(["report", str(tmp_path)]) == 0
    assert not stale.exists() and own.exists()
    rebuilt = json.loads((tmp_path / "results.json").read_text())
    assert rebuilt == json.loads((path / "results.json").read_text())
    assert (tmp_path / "REPORT.md").read_text() == (path / "REPORT.md").read_text()
    assert (tmp_path / "histograms.root").is_file()
    assert (tmp_path / "plots" / "bump_hunt.pdf").is_file()


def test_a_folder_with_less_produces_what_it_can(tmp_path):
    histograms, run_info = synthetic_inputs(
        datasets={"qcd": "qcd", "top": "top"},
        models={"cnn": MODELS["cnn"]},
        jets=2000,
    )
    run_info = {"models": run_info["models"]}  # no settings, no training
    results = write_results(tmp_path, histograms, run_info)
    assert results["models"]["cnn"]["top"]["auc"] > 0.8
    assert "gluino" not in results["models"]["cnn"]
    assert results["bump_hunt"]["s_over_b_after"] is None
    assert results["contamination"] == {}
    missing = " ".join(results["missing"])
    assert "'gluino'" in missing and "'pca'" in missing and "latent" in missing
    report = (tmp_path / "REPORT.md").read_text()
    assert "not measured" in report
    assert (tmp_path / "plots" / "roc_top.png").is_file()
    assert not (tmp_path / "plots" / "bump_hunt.png").exists()
    _no_nan((tmp_path / "results.json").read_text())


def test_a_folder_without_inputs_gets_an_error_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="histograms.pkl does not exist"):
        load_results_inputs(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 2
    # Pointed at the run's output folder instead of its results folder:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "histograms.pkl").write_bytes(b"")
    with pytest.raises(InputError, match=f"did you mean {tmp_path / 'results'}"):
        load_results_inputs(tmp_path)


def test_invalid_settings_are_named(tmp_path):
    histograms, run_info = synthetic_inputs(
        datasets={"qcd": "qcd"}, models={"cnn": MODELS["cnn"]}, jets=10
    )
    run_info["settings"] = {"window": [450.0, 350.0], "qcd_keep_fractions": [2.0]}
    with pytest.raises(ConfigError, match=r"window \[450.0, 350.0\] is empty"):
        write_results(tmp_path, histograms, run_info)


def test_latent_scans_are_read_in_the_shapes_training_writes():
    from analysis.measures import latent_scans

    scan = {  # models.latent.latent_scan
        "latents": [2, 6],
        "pca": {"eigenvalues": [3.0, 1.0], "validation_loss": [2.0, 1.0]},
        "cnn": {"validation_loss": [1.5, None], "train_loss": [1.4, 0.9]},
    }
    cards = {"pca": {"eigenvalues": [9.0]}, "dense": {"latent_scan": {"4": 0.5}}}
    scans = latent_scans({"training": {"latent_scan": scan}, "models": cards})
    assert scans["pca"] == {
        "k": [2, 6],
        "val_loss": [2.0, 1.0],
        "eigenvalues": [3.0, 1.0],
    }
    assert scans["cnn"]["k"] == [2, 6] and math.isnan(scans["cnn"]["val_loss"][1])
    assert scans["dense"] == {"k": [4], "val_loss": [0.5]}
    assert latent_scans({"training": {"cnn": {"latent_scan": "garbage"}}}) == {}


def test_a_damaged_pickle_is_an_input_error(folder, tmp_path):
    folder, _, _ = folder
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = (folder / "histograms.pkl").read_bytes()
    (damaged / "histograms.pkl").write_bytes(data[: len(data) // 3] + b"1234junk")
    (damaged / "run.json").write_text((folder / "run.json").read_text())
    with pytest.raises(InputError, match="histograms.pkl is not a readable pickle"):
        load_results_inputs(damaged)
    assert cli.main(["report", str(damaged)]) == 2


def test_cuts_keeping_too_few_qcd_jets_are_not_measured(tmp_path):
    # 400 QCD jets: the 0.1% cut keeps about half a jet, which has no shape.
    histograms, run_info = synthetic_inputs(
        datasets={"qcd": "qcd"}, models={"cnn": MODELS["cnn"]}, jets=400
    )
    results = write_results(tmp_path, histograms, run_info)
    cuts = {c["qcd_eff"]: c for c in results["mass_correlation"]["cnn"]["after_cuts"]}
    assert cuts[0.001]["entries"] < 5
    assert cuts[0.001]["mean_mass"] is None and cuts[0.001]["ks_distance"] is None
    assert "too few" in cuts[0.001]["missing"]
    assert cuts[0.1]["entries"] >= 5 and cuts[0.1]["ks_distance"] is not None
    assert "0.1%: " in (tmp_path / "REPORT.md").read_text()
    assert "jets, too few" in (tmp_path / "REPORT.md").read_text()
