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
