import json
from pathlib import Path

import pytest

from analysis.config import load_config, profile_names
from analysis.errors import ConfigError
from analysis.fileset import load_fileset

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", profile_names())
def test_every_profile_validates(profile):
    config = load_config(profile)
    names = [spec.name for spec in config.all_models()]
    assert len(names) == len(set(names)), names
    assert {"pca", "dense", "cnn"} <= set(names)


def test_file_overrides_profile(tmp_path):
    override = tmp_path / "run.yaml"
    override.write_text("events: {qcd: 10}\nresults: {lumi_fb: 3.5}\n")
    config = load_config("tiny", override)
    assert config.events["qcd"] == 10
    assert config.events["top"] == 300  # untouched keys keep the profile's value
    assert config.results.lumi_fb == 3.5


def test_misspelled_key_is_named(tmp_path):
    override = tmp_path / "run.yaml"
    override.write_text("chunksize: 10\n")
    with pytest.raises(ConfigError, match="chunksize"):
        load_config("tiny", override)


def test_unknown_profile_lists_choices():
    with pytest.raises(ConfigError, match="quick"):
        load_config("huge")


def test_repository_fileset_has_a_recipe_for_every_dataset():
    fileset = load_fileset(REPO / "datasets.json")
    assert {"qcd", "top", "gluino"} <= set(fileset)
    for name, entry in fileset.items():
        recipe = entry["metadata"]["generate"]
        assert recipe["process"] in {"qcd", "top", "gluino"}, name
    json.loads((REPO / "datasets.json").read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: []\n", "models is empty"),
        ("results: {bump_model: vae}\n", "bump_model 'vae' is not one of the models"),
    ],
)
def test_settings_that_would_fail_late_are_refused_at_once(tmp_path, text, message):
    override = tmp_path / "run.yaml"
    override.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", override)


def test_run_without_cross_sections_stops_before_any_work(tmp_path, real_delphes_file):
    from analysis.cli import main

    fileset = tmp_path / "byo.json"
    entry = {"files": {str(real_delphes_file): "Delphes"}, "metadata": {}}
    fileset.write_text(json.dumps({"qcd": entry}))
    out = tmp_path / "out"
    argv = ["run", "--profile", "tiny", "--fileset", str(fileset), "--out", str(out)]
    assert main(argv) == 2
    assert not (out / "images").exists()  # refused before the first slow step
    assert load_config("tiny", unit_weight=True).unit_weight


def test_non_numeric_cross_section_is_named():
    from processors.score_processor import dataset_weight

    metadata = {"dataset": "top", "xsec_pb": "abc", "sum_weights": 300}
    with pytest.raises(ConfigError, match="'top': xsec_pb is 'abc', not a number"):
        dataset_weight(metadata)
    assert dataset_weight({**metadata, "xsec_pb": "2.5"}) == pytest.approx(2.5 / 300)
