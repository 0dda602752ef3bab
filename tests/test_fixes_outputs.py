"""Outputs are readable by others as the umask allows; output places are checked
before the work; option and registration messages say what they mean."""

import json
import logging
import os
import pickle
import stat
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from analysis import fileset
from analysis.cli import main
from analysis.fileset import register_dataset, write_json_atomic


@pytest.fixture
def umask_022(monkeypatch):
    """A typical shared-facility umask, for this test only."""
    old = os.umask(0o022)
    monkeypatch.setattr(fileset, "_UMASK", 0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_publish_follows_the_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(fileset, "_UMASK", 0o027)
    (tmp_path / "f").write_text("x")
    os.chmod(tmp_path / "f", 0o600)
    (tmp_path / "d").mkdir(mode=0o700)
    fileset.publish(tmp_path / "f")
    fileset.publish(tmp_path / "d")
    assert _mode(tmp_path / "f") == 0o640
    assert _mode(tmp_path / "d") == 0o750


def test_json_and_fileset_are_0644(tmp_path, umask_022):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert _mode(tmp_path / "a.json") == 0o644
    datasets = tmp_path / "datasets.json"
    datasets.write_text("{}\n")
    register_dataset(datasets, "qcd", {}, {})
    assert _mode(datasets) == 0o644


def test_results_files_are_0644(tmp_path, umask_022):
    from analysis.results import _atomic, write_root
    from tests.test_results import synthetic_inputs

    histograms, _ = synthetic_inputs(
        datasets={"qcd": "qcd"}, models={"pca": ({"qcd": 0.0}, 0.0)}, jets=50
    )
    _atomic(tmp_path / "histograms.pkl", lambda f: pickle.dump(histograms, f), "wb")
    _atomic(tmp_path / "REPORT.md", lambda f: f.write("# report\n"), "w")
    write_root(tmp_path / "histograms.root", histograms)
    for name in ("histograms.pkl", "REPORT.md", "histograms.root"):
        assert _mode(tmp_path / name) == 0o644, name


def test_plots_and_cached_outputs_are_0644(tmp_path, umask_022):
    from matplotlib.figure import Figure

    from analysis.plots import _save
    from processors.cache import OutputCache

    figure = Figure()
    figure.subplots().plot([0, 1], [1, 0])
    _save(figure, tmp_path / "line.png", "png")
    assert _mode(tmp_path / "line.png") == 0o644
    cache = OutputCache(tmp_path / "cache", "key")
    cache.store("qcd", "a.root", {"steps": [[0, 10]]}, {}, {"events": 10})
    (stored,) = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert _mode(stored) == 0o644
    assert cache.load("qcd", "a.root", {"steps": [[0, 10]]}, {}) == {"events": 10}
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary left


def test_model_folder_is_0755_and_its_files_0644(tmp_path, umask_022):
    from models.io import save_model
    from models.pca import build_pca, fit_pca
    from models.scorer import make_scorer
    from models.toy import toy_images

    rng = np.random.default_rng(3)
    scorer = make_scorer(build_pca(fit_pca([toy_images(30, "qcd", rng)]), 2))
    folder = save_model(scorer, tmp_path / "pca", {"architecture": "pca"})
    assert _mode(folder) == 0o755
    assert _mode(folder / "saved_model") == 0o755
    assert _mode(folder / "model.keras") == 0o644
    assert _mode(folder / "card.json") == 0o644


def test_checkpoint_files_are_0644(tmp_path, umask_022):
    from models.checkpoint import _atomic

    _atomic(tmp_path / "state.json", lambda p: Path(p).write_text("{}"))
    assert _mode(tmp_path / "state.json") == 0o644


def test_image_parquet_is_0644(tmp_path, umask_022):
    from processors.image_processor import ChunkWriter

    table = ak.Array({"pt": np.array([500.0, 600.0])})
    writer = ChunkWriter(tmp_path / "qcd", "qcd", "t")
    assert writer(table, 0).tolist() == [2]
    (part,) = (tmp_path / "qcd").glob("part-*.parquet")
    assert _mode(part) == 0o644
    assert ak.from_parquet(part)["dataset"].tolist() == ["qcd", "qcd"]


def test_generate_register_keeps_modes_and_warns_on_replacing(
    tmp_path, umask_022, caplog
):
    datasets = tmp_path / "datasets.json"
    old = {"qcd": {"files": {"a.root": "Delphes", "b.root": "Delphes"}}}
    datasets.write_text(json.dumps(old))
    os.chmod(datasets, 0o644)
    argv = ["generate", "--process", "qcd", "--events", "2"]
    argv += ["--out", str(tmp_path / "samples"), "--register", str(datasets)]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert "dataset 'qcd'" in caplog.text
    assert "its 2 file(s) are replaced by the 1 new one(s)" in caplog.text
    assert _mode(datasets) == 0o644
    (root,) = (tmp_path / "samples").glob("*.root")
    assert _mode(root) == 0o644
    stored = json.loads(datasets.read_text())
    assert stored["qcd"]["files"] == {f"samples/{root.name}": "Delphes"}

    caplog.clear()  # the same files again: nothing is lost, no warning
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert "replaced" not in caplog.text


def test_generate_checks_the_register_folder_first(tmp_path, caplog):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = tmp_path / "samples"
    argv = ["generate", "--process", "qcd", "--events", "2", "--out", str(out)]
    assert main([*argv, "--register", str(blocker / "ds.json")]) == 2
    assert f"cannot write into {blocker} (--register)" in caplog.text
    assert "it is a file, not a folder" in caplog.text
    assert not out.exists()  # nothing generated

    caplog.clear()
    assert main([*argv, "--register", str(blocker / "sub" / "ds.json")]) == 2
    assert f"a parent, {blocker}, is a file, not a folder" in caplog.text
    assert not out.exists()


def test_train_checks_out_before_reading_images(tmp_path, caplog):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    argv = ["train", "--model", "pca", "--dataset", "qcd"]
    argv += ["--images", str(tmp_path / "no-images"), "--out", str(blocker / "m")]
    assert main(argv) == 2
    assert f"cannot write into {blocker / 'm'} (--out)" in caplog.text
    assert f"a parent, {blocker}, is a file" in caplog.text
    assert "no-images" not in caplog.text


@pytest.mark.parametrize("option", ["--latent", "--epochs", "--batch-size"])
def test_train_names_the_option_that_is_not_positive(tmp_path, caplog, option):
    argv = ["train", "--model", "pca", "--dataset", "qcd", "--out", str(tmp_path)]
    assert main([*argv, option, "0"]) == 2
    assert f"{option} must be a positive integer; got 0" in caplog.text


def test_generate_refuses_a_bad_name_before_generating(tmp_path, caplog):
    out = tmp_path / "samples"
    argv = ["generate", "--process", "qcd", "--events", "2", "--out", str(out)]
    argv += ["--register", str(tmp_path / "ds.json"), "--name", "../x"]
    assert main(argv) == 2
    assert "'../x' cannot name a folder" in caplog.text
    assert not out.exists()
