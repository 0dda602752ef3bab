import json

import pytest

from analysis.errors import ConfigError
from analysis.fileset import load_fileset, register_dataset


def test_register_then_load_resolves_relative_paths(tmp_path):
    fileset = tmp_path / "datasets.json"
    sample = tmp_path / "samples" / "qcd_000.root"
    register_dataset(fileset, "qcd", {sample: "Delphes"}, {"xsec_pb": 12.5})

    stored = json.loads(fileset.read_text())
    assert stored["qcd"]["files"] == {"samples/qcd_000.root": "Delphes"}

    loaded = load_fileset(fileset)
    assert loaded["qcd"]["files"] == {str(sample): "Delphes"}
    assert loaded["qcd"]["metadata"]["xsec_pb"] == 12.5


def test_broken_json_is_named_and_left_untouched(tmp_path):
    fileset = tmp_path / "datasets.json"
    fileset.write_text("{not json")
    with pytest.raises(ConfigError, match="datasets.json is not valid JSON"):
        register_dataset(fileset, "qcd", {}, {})
    assert fileset.read_text() == "{not json"


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    fileset = tmp_path / "datasets.json"
    register_dataset(fileset, "qcd", {}, {})
    with pytest.raises(ConfigError, match="no dataset named 'top'.*'qcd'"):
        load_fileset(fileset, datasets=["top"])


def test_real_file_fixture(real_delphes_file):
    import uproot

    with uproot.open(real_delphes_file) as handle:
        assert handle["Delphes"].num_entries == 25


@pytest.mark.parametrize("name", ["../decoy", "a/b", "", "..", " "])
def test_dataset_names_that_would_leave_the_output_folder_are_refused(tmp_path, name):
    fileset = tmp_path / "datasets.json"
    fileset.write_text(json.dumps({name: {"files": {}, "metadata": {}}}))
    with pytest.raises(ConfigError, match="cannot name a folder"):
        load_fileset(fileset)
    with pytest.raises(ConfigError, match="cannot name a folder"):
        register_dataset(tmp_path / "other.json", name, {}, {})
    assert not (tmp_path / "other.json").exists()
