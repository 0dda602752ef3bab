"""Generated Delphes files: layout and types against a real Delphes file, coffea
reading, reproducibility, reruns, registration and bad input."""

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from analysis.cli import main
from analysis.errors import ConfigError, OutputError
from generation import generate_sample
from generation.delphes_format import COLLECTIONS
from generation.production import file_name, job_seeds, plan_jobs
from tests.generated import SAMPLE_EVENTS, session_samples


@pytest.fixture(scope="session")
def generated_samples(tmp_path_factory):
    return session_samples(tmp_path_factory)


# Collections of the real (CMS card) file to compare each of ours with.
REAL_COUNTERPART = {name: name for name in COLLECTIONS} | {"FatJet": "Jet"}


def _leaf_types(tree, name):
    """{field: numpy dtype} of collection ``name`` in a Delphes tree."""
    types = {}
    for key, branch in tree.items(filter_name=f"{name}/{name}.*"):
        field = key.split("/")[-1][len(name) + 1 :]
        interpretation = branch.interpretation
        content = getattr(interpretation, "content", None)
        if content is not None and hasattr(content, "to_dtype"):
            types[field] = np.dtype(content.to_dtype)
    return types


def test_fields_and_types_match_a_real_delphes_file(
    generated_samples, real_delphes_file
):
    ours = uproot.open(generated_samples["top"].files[0])["Delphes"]
    real = uproot.open(real_delphes_file)["Delphes"]
    for name in COLLECTIONS:
        assert f"{name}_size" in ours
        our_types = _leaf_types(ours, name)
        real_types = _leaf_types(real, REAL_COUNTERPART[name])
        assert our_types, name
        unknown = set(our_types) - set(real_types)
        assert not unknown, f"{name}: fields not in a real Delphes file: {unknown}"
        for field, dtype in our_types.items():
            assert dtype == real_types[field], f"{name}.{field}"


def test_counters_match_collections(generated_samples):
    tree = uproot.open(generated_samples["qcd"].files[0])["Delphes"]
    assert tree.num_entries == SAMPLE_EVENTS
    for name in ("Particle", "Tower", "EFlowTrack", "Jet", "FatJet", "MissingET"):
        counts = tree[f"{name}_size"].array(library="np")
        pt_like = tree.keys(filter_name=f"{name}/{name}.*")[2]
        assert np.array_equal(counts, ak.num(tree[pt_like].array()).to_numpy())
    assert np.all(tree["Event_size"].array(library="np") == 1)
    assert np.all(tree["MissingET_size"].array(library="np") == 1)


@pytest.mark.parametrize("mode", ["eager", "virtual", "dask"])
def test_loads_with_coffea_delphes_schema(generated_samples, mode):
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    path = str(generated_samples["gluino"].files[0])
    events = NanoEventsFactory.from_root(
        {path: "Delphes"}, schemaclass=DelphesSchema, mode=mode
    ).events()
    fat_pt = events.FatJet.pt
    n_eflow = ak.num(events.EFlowTrack) + ak.num(events.EFlowPhoton)
    weight = events.Event.Weight
    if mode == "dask":
        import dask

        fat_pt, n_eflow, weight = dask.compute(fat_pt, n_eflow, weight)
    assert len(fat_pt) == SAMPLE_EVENTS
    assert ak.all(ak.num(fat_pt) >= 1)
    assert ak.min(fat_pt) >= 200.0
    assert ak.all(n_eflow > 50)
    assert ak.all(weight == 1.0)


def test_event_branch_and_metadata(generated_samples):
    result = generated_samples["top"]
    meta = result.metadata
    assert meta["process"] == "top" and meta["signal"] is True
    assert meta["n_events"] == SAMPLE_EVENTS
    assert meta["sum_weights"] == pytest.approx(SAMPLE_EVENTS)
    assert meta["shower"] == "pythia" and meta["seed"] == 1
    assert meta["generator"].startswith("Pythia 8.3")
    # LO ttbar with pT-hat ~ 800 GeV and hadronic W decays: O(0.01-0.1) pb.
    assert 0.005 < meta["xsec_pb"] < 0.2
    assert 0 < meta["xsec_err_pb"] < meta["xsec_pb"]
    event = uproot.open(result.files[0])["Delphes"].arrays(filter_name="Event/*")
    number = ak.flatten(event["Event/Event.Number"])
    assert np.array_equal(number, np.arange(SAMPLE_EVENTS))
    xsec = ak.flatten(event["Event/Event.CrossSection"])
    assert xsec[-1] == pytest.approx(meta["xsec_pb"], rel=1e-6)
    process_id = set(ak.flatten(event["Event/Event.ProcessID"]).tolist())
    assert process_id <= {601, 602}


def test_particle_record_is_consistent(generated_samples):
    tree = uproot.open(generated_samples["top"].files[0])["Delphes"]
    particles = tree.arrays(filter_name="Particle/Particle.*", entry_stop=20)

    def col(field):
        return particles[f"Particle/Particle.{field}"]

    size = ak.num(col("PID"))
    for field in ("M1", "M2", "D1", "D2"):
        assert ak.all((col(field) >= -1) & (col(field) < size))
    assert ak.all(col("Status")[:, :2] == 4)  # beams
    # Every event holds a top and an anti-top whose last copies decay to q W.
    for event in range(20):
        pid = col("PID")[event].to_numpy()
        d1, d2 = col("D1")[event].to_numpy(), col("D2")[event].to_numpy()
        last_tops = [
            i for i in np.flatnonzero(np.abs(pid) == 6) if abs(pid[d1[i]]) != 6
        ]
        assert len(last_tops) == 2
        for top in last_tops:
            daughters = set(np.abs(pid[d1[top] : d2[top] + 1]).tolist())
            assert 24 in daughters and daughters & {1, 3, 5}  # t -> (b|s|d) W


def test_same_seed_same_events_other_seed_other_events(tmp_path):
    first = generate_sample("qcd", 12, tmp_path / "a", seed=7, batch_size=5)
    again = generate_sample("qcd", 12, tmp_path / "b", seed=7, batch_size=5)
    other = generate_sample("qcd", 12, tmp_path / "c", seed=8, batch_size=5)

    def jets(result):
        tree = uproot.open(result.files[0])["Delphes"]
        return tree["Jet/Jet.PT"].array(), tree["Particle/Particle.PID"].array()

    assert ak.all(jets(first)[0] == jets(again)[0])
    assert ak.all(jets(first)[1] == jets(again)[1])
    assert not ak.array_equal(jets(first)[1], jets(other)[1])


def test_seeds_and_file_plan():
    assert job_seeds(1, 0) == job_seeds(1, 0)
    assert len({job_seeds(1, i) for i in range(50)}) == 50
    assert all(1 <= job_seeds(s, 0)[0] <= 900_000_000 for s in range(20))
    plan = plan_jobs("qcd", 1001, "/x", 1, 2, "vincia", 400.0, 100)
    assert [job.n_events for job in plan] == [501, 500]
    assert [job.first_number for job in plan] == [0, 501]
    assert plan[1].path.name == "qcd_vincia_s1_001.root"
    assert file_name("top", "pythia", 3, 2) == "top_s3_002.root"


def test_files_made_with_other_settings_are_never_kept():
    # A rerun keeps a file by its name and event count: the name must change
    # with every setting that changes the events.
    def name(process, mass=400.0, particles="all", shower="pythia"):
        plan = plan_jobs(process, 10, "/x", 1, 1, shower, mass, 100, particles)
        return plan[0].path.name

    names = [name("gluino", m, p) for m in (400.0, 1000.0) for p in ("all", "hard")]
    assert len(set(names)) == 4
    assert names[0] == "gluino_s1_000.root"
    assert name("gluino", 1000.0) == "gluino_m1000_s1_000.root"
    assert name("qcd", 1000.0) == "qcd_s1_000.root"  # the mass is a gluino setting
    assert name("top", particles="hard", shower="vincia") == (
        "top_vincia_hardrecord_s1_000.root"
    )


def test_mass_for_another_process_is_ignored_with_a_warning(tmp_path, caplog, capsys):
    argv = ["generate", "--process", "foo", "--events", "5", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "foo" in caplog.text
    assert "0/5" not in capsys.readouterr().err  # the error comes before any bar
    caplog.clear()
    argv = ["generate", "--process", "qcd", "--events", "2", "--mass", "500"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "--mass applies to --process gluino only; ignored for qcd" in caplog.text
    assert [p.name for p in tmp_path.glob("*.root")] == ["qcd_s1_000.root"]


def test_rerun_keeps_complete_files_and_redoes_the_rest(tmp_path):
    first = generate_sample("qcd", 6, tmp_path, seed=2, jobs=2, batch_size=3)
    assert len(first.files) == 2
    kept, broken = first.files
    stamp = kept.stat().st_mtime_ns
    broken.write_bytes(b"not a root file")
    seen = []
    again = generate_sample(
        "qcd", 6, tmp_path, seed=2, jobs=2, batch_size=3, progress=seen.append
    )
    assert kept.stat().st_mtime_ns == stamp
    assert uproot.open(broken)["Delphes"].num_entries == 3
    assert sum(seen) == 6
    assert again.metadata["n_events"] == 6
    assert again.metadata["xsec_pb"] == pytest.approx(first.metadata["xsec_pb"])
    assert not list(tmp_path.glob(".*"))  # no partial or probe files left


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"process": "ttbar"}, ConfigError, "ttbar"),
        ({"events": 0}, ConfigError, "0"),
        ({"events": -5}, ConfigError, "-5"),
        ({"jobs": 0}, ConfigError, "0"),
        ({"shower": "herwig"}, ConfigError, "herwig"),
        ({"process": "gluino", "mass": 50.0}, ConfigError, "50"),
        ({"process": "gluino", "mass": 1e5}, ConfigError, "100000"),
    ],
)
def test_bad_requests_name_the_value(tmp_path, kwargs, error, named):
    request = {"process": "qcd", "events": 10, "out_dir": tmp_path / "out"} | kwargs
    with pytest.raises(error, match=named):
        generate_sample(**request)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=str(blocker)):
        generate_sample("qcd", 10, blocker / "sub")


def test_command_registers_dataset(tmp_path, capsys):
    fileset = tmp_path / "datasets.json"
    fileset.write_text(json.dumps({"other": {"files": {}, "metadata": {}}}))
    argv = ["generate", "--process", "qcd", "--events", "5", "--out"]
    argv += [str(tmp_path / "samples"), "--shower", "vincia", "--register"]
    assert main([*argv, str(fileset)]) == 0
    stored = json.loads(fileset.read_text())
    assert set(stored) == {"other", "qcd_vincia"}
    entry = stored["qcd_vincia"]
    assert entry["files"] == {"samples/qcd_vincia_s1_000.root": "Delphes"}
    assert entry["metadata"]["shower"] == "vincia"
    assert entry["metadata"]["n_events"] == 5
    assert "5 qcd events" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--process", "wprime", "--events", "5"], "wprime"),
        (["--process", "qcd", "--events", "0"], "0"),
        (["--process", "gluino", "--events", "5", "--mass", "20"], "20"),
    ],
)
def test_command_rejects_bad_input(tmp_path, caplog, argv, named):
    fileset = tmp_path / "datasets.json"
    fileset.write_text("{}\n")
    out = tmp_path / "samples"
    full = ["generate", *argv, "--out", str(out), "--register", str(fileset)]
    assert main(full) == 2
    assert named in caplog.text
    assert fileset.read_text() == "{}\n"
    assert not out.exists() or not list(out.iterdir())


def test_command_refuses_a_broken_fileset(tmp_path, caplog):
    fileset = tmp_path / "datasets.json"
    fileset.write_text("{not json")
    out = tmp_path / "samples"
    argv = ["generate", "--process", "qcd", "--events", "5", "--out", str(out)]
    assert main([*argv, "--register", str(fileset)]) == 2
    assert "not valid JSON" in caplog.text
    assert fileset.read_text() == "{not json"
    assert not out.exists()


def _last_copy(i, pid, d1):
    while d1[i] >= 0 and pid[d1[i]] == pid[i]:
        i = d1[i]
    return i


def _children(i, d1, d2):
    return range(d1[i], d2[i] + 1) if d1[i] >= 0 and d2[i] >= d1[i] else []


def _event_resonances(pid, eta, d1, d2, resonance):
    items = []
    for i in np.flatnonzero(np.abs(pid) == resonance):
        if d1[i] >= 0 and pid[d1[i]] == pid[i]:
            continue  # not the last copy
        items.append((int(pid[i]), round(float(eta[i]), 3)))
        for j in _children(i, d1, d2):
            if abs(pid[j]) == 24:
                for k in _children(_last_copy(j, pid, d1), d1, d2):
                    items.append((int(pid[k]), round(float(eta[k]), 3)))
            elif 1 <= abs(pid[j]) <= 5:
                items.append((int(pid[j]), round(float(eta[j]), 3)))
    return sorted(items)


def _resonance_daughters(path, resonance):
    """Per event: sorted (pid, eta) of the last copies of ``resonance`` and of the
    quarks they (and their W daughters' last copies) decay to; a per-particle walk."""
    p = uproot.open(path)["Delphes"].arrays(filter_name="Particle/Particle.*")
    columns = [p[f"Particle/Particle.{f}"] for f in ("PID", "Eta", "D1", "D2")]
    return [
        _event_resonances(*(c[event].to_numpy() for c in columns), resonance)
        for event in range(len(p))
    ]


@pytest.mark.parametrize(("process", "resonance"), [("top", 6), ("gluino", 1_000_021)])
def test_hard_record_keeps_what_truth_matching_needs(tmp_path, process, resonance):
    full = generate_sample(process, 15, tmp_path / "all", seed=4)
    hard = generate_sample(process, 15, tmp_path / "hard", seed=4, particles="hard")
    assert hard.metadata["particles"] == "hard"
    expected = _resonance_daughters(full.files[0], resonance)
    assert all(len(items) >= 2 * 4 for items in expected)  # 2 resonances, 3 quarks
    assert _resonance_daughters(hard.files[0], resonance) == expected
    sizes = [
        uproot.open(r.files[0])["Delphes"]["Particle_size"].array()
        for r in (full, hard)
    ]
    assert ak.all(sizes[1] < 0.1 * sizes[0])
