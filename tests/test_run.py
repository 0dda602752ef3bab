"""The whole chain, end to end, on the tiny profile: every output exists and is finite."""

import json
import math
import pickle
import shutil
import subprocess
import sys

import pytest
import uproot


def _finite_numbers(value, where="results.json"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _finite_numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _finite_numbers(item, f"{where}[{index}]")
    elif isinstance(value, float):
        yield where, value


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    command = [sys.executable, "-m", "analysis.cli", "run", "--profile", "tiny"]
    command += ["--workers", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


@pytest.mark.slow
def test_every_output_exists_and_is_finite(tiny_run):
    out, result = tiny_run
    results = out / "results"
    for name in ("results.json", "REPORT.md", "histograms.pkl", "histograms.root"):
        assert (results / name).stat().st_size > 0, name
    assert list((results / "plots").glob("roc_top.png"))
    assert list((results / "plots").glob("roc_top.pdf"))

    payload = json.loads((results / "results.json").read_text())
    for model in ("pca", "dense", "cnn", "mass"):
        entry = payload["models"][model]["top"]
        for key in ("auc", "e10", "e100"):
            assert entry[key] is not None and 0 <= entry[key] <= 1, (model, key)
    assert payload["bump_hunt"]["s_over_b_before"] > 0
    for where, number in _finite_numbers(payload):
        assert math.isfinite(number), where

    with open(results / "histograms.pkl", "rb") as handle:
        histograms = pickle.load(handle)
    assert set(histograms) == {"loss", "mass_loss", "mass"}
    with uproot.open(results / "histograms.root") as handle:
        assert handle.keys()

    # The table printed at the end names every model.
    for model in ("pca", "dense", "cnn", "mass"):
        assert model in result.stdout
    for name in ("pca", "dense", "cnn"):
        card = json.loads((out / "models" / name / "card.json").read_text())
        assert card["cache_key"]


@pytest.mark.slow
def test_rerun_in_a_moved_copy_reuses_every_step(tiny_run, tmp_path):
    # A run folder copied elsewhere (another disk, a colleague's area) is reused
    # there: no sample regenerated, no image rebuilt, no model retrained.
    out = tmp_path / "moved"
    shutil.copytree(tiny_run[0], out)  # keeps modification times

    def times(pattern):
        return {p.relative_to(out): p.stat().st_mtime_ns for p in out.glob(pattern)}

    before = {k: times(k) for k in ("models/*/card.json", "samples/*/*.root")}
    before["images"] = times("images/*/part-*.parquet")
    command = [sys.executable, "-m", "analysis.cli", "run", "--profile", "tiny"]
    command += ["--workers", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    after = {k: times(k) for k in ("models/*/card.json", "samples/*/*.root")}
    after["images"] = times("images/*/part-*.parquet")
    assert before["images"] and before == after
    assert "images of qcd are up to date" in result.stderr
