"""Reliability: bad input, faults and restarts lose nothing (issue 8).

Fault injection on a real dask ``LocalCluster`` of two worker processes: broken
and odd files in a fileset (garbage, truncated, corrupt basket, zero entries, a
missing collection, constituents with NaN and inf, events without constituents),
a worker process killed mid-run, outputs that cannot be written, and inputs of
unexpected types. The samples are small generated ones (:mod:`tests.generated`).
"""

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from processors.image_processor import REJECTIONS, ImageProcessor, jets_and_images
from processors.jets import JetConfig
from processors.runner import run
from tests import faults
from tests.generated import session_samples

LOOSE = JetConfig(pt_range=(100.0, 10000.0), eta_max=2.5, max_jets=None)
STEP = 50  # events per chunk: four chunks per 200-event file


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    return session_samples(tmp_path_factory)


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: two single-threaded worker processes under nannies."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def open_events(path):
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    return NanoEventsFactory.from_root(
        {str(path): "Delphes"}, schemaclass=DelphesSchema, mode="eager"
    ).events()


def entries(path):
    import uproot

    with uproot.open(path) as handle:
        return handle["Delphes"].num_entries


# ---- item 1: a fileset of broken and odd files -----------------------------------

NAN_EVENTS = range(0, 5)  # EFlowTrack.PT = NaN
INF_EVENTS = range(5, 10)  # EFlowPhoton.Eta = inf
EMPTY_EVENTS = range(10, 20)  # no constituents at all: no jets


def poison(collections):
    """NaN and inf constituents, and events without any constituent."""
    out = dict(collections)
    out["EFlowTrack"] = faults.set_field(
        out["EFlowTrack"], "EFlowTrack.PT", NAN_EVENTS, np.nan
    )
    out["EFlowPhoton"] = faults.set_field(
        out["EFlowPhoton"], "EFlowPhoton.Eta", INF_EVENTS, np.inf
    )
    for name in faults.EFLOW:
        out[name] = faults.drop_objects(out[name], EMPTY_EVENTS)
    return out


def broken_fileset(folder, source):
    """{name: path} of the good source and six broken or odd copies of it."""
    files = {
        "good": source,
        "garbage": faults.garbage_file(folder / "garbage.root"),
        "truncated": faults.truncated_copy(source, folder / "truncated.root"),
        "corrupt": faults.corrupt_basket_copy(source, folder / "corrupt.root"),
        "no_entries": faults.rewrite_delphes(
            source,
            folder / "no_entries.root",
            lambda c: {name: array[:0] for name, array in c.items()},
        ),
        "no_eflow_track": faults.rewrite_delphes(
            source,
            folder / "no_eflow_track.root",
            names=("Event", "EFlowPhoton", "EFlowNeutralHadron"),
        ),
        "poisoned": faults.rewrite_delphes(source, folder / "poisoned.root", poison),
    }
    return {name: str(path) for name, path in files.items()}


def test_broken_files_are_reported_and_the_rest_is_counted(tmp_path, samples, client):
    source = samples["qcd"].files[0]
    files = broken_fileset(tmp_path, source)
    fileset = {
        "qcd": {
            "files": {path: "Delphes" for path in files.values()},
            "metadata": {"process": "qcd", "signal": False},
        }
    }
    result = run(fileset, ImageProcessor(LOOSE), scheduler=client, step_size=STEP)
    counts = result.output["qcd"]

    # Everything readable is processed: the sums of the eager chain per file.
    readable = [open_events(files[n]) for n in ("good", "poisoned")]
    eager = [jets_and_images(events, LOOSE) for events in readable]
    assert counts["events"] == sum(len(events) for events in readable)
    assert counts["jets_selected"] == sum(len(r.jets) for r in eager) > 0
    assert counts["constituents_dropped"] == sum(
        int(np.sum(r.constituents_dropped)) for r in eager
    )
    for reason in REJECTIONS:
        assert counts[f"jets_rejected_{reason}"] == sum(
            int(np.sum(r.jets_rejected[reason])) for r in eager
        )

    # Each failure names its file, its entries and the reason.
    failed = {}
    for failure in result.failures:
        name = next(n for n, p in files.items() if p == failure["file"])
        failed.setdefault(name, []).append(failure)
    assert set(failed) == {"garbage", "truncated", "corrupt", "no_eflow_track"}
    assert failed["garbage"][0]["entries"] is None
    assert "not a ROOT file" in failed["garbage"][0]["reason"]
    assert (
        "EFlowTrack/EFlowTrack.PT is missing" in (failed["no_eflow_track"][0]["reason"])
    )
    assert all(f["reason"] for group in failed.values() for f in group)

    # Counts reconcile: events read + entries failed = entries of the files
    # that open (the garbage file has none that anyone can know).
    failed_entries = sum(
        stop - start
        for group in failed.values()
        for f in group
        if f["entries"] is not None
        for start, stop in [f["entries"]]
    )
    opened = sum(entries(p) for n, p in files.items() if n != "garbage")
    assert entries(files["no_entries"]) == 0
    assert counts["events"] + failed_entries == opened


def test_jets_are_selected_or_rejected_for_one_reason(samples):
    events = open_events(samples["qcd"].files[0])
    low = 150.0
    every = JetConfig(pt_range=(low, 1e5), eta_max=1e3, max_jets=None)
    ranked = every.model_copy(update={"max_jets": 2})
    windowed = ranked.model_copy(update={"pt_range": (low, 700.0)})
    selected = windowed.model_copy(update={"eta_max": 1.0})

    def n_jets(config):
        return len(jets_and_images(events, config).jets)

    result = jets_and_images(events, selected)
    rejected = {k: int(np.sum(result.jets_rejected[k])) for k in REJECTIONS}
    assert rejected == {
        "rank": n_jets(every) - n_jets(ranked),
        "pt": n_jets(ranked) - n_jets(windowed),
        "eta": n_jets(windowed) - n_jets(selected),
    }
    assert min(rejected.values()) > 0  # every reason occurs in this sample
    assert len(result.jets) + sum(rejected.values()) == n_jets(every)


def test_bad_constituents_are_dropped_and_empty_events_give_no_jets(tmp_path, samples):
    source = samples["qcd"].files[0]
    poisoned = open_events(
        faults.rewrite_delphes(source, tmp_path / "poisoned.root", poison)
    )
    original = open_events(source)
    before = jets_and_images(original, LOOSE)
    after = jets_and_images(poisoned, LOOSE)

    assert np.sum(before.constituents_dropped) == 0  # the simulation writes none
    expected = np.zeros(len(original), dtype=np.int64)  # (events,)
    expected[list(NAN_EVENTS)] = [len(original.EFlowTrack[e]) for e in NAN_EVENTS]
    expected[list(INF_EVENTS)] = [len(original.EFlowPhoton[e]) for e in INF_EVENTS]
    np.testing.assert_array_equal(np.asarray(after.constituents_dropped), expected)

    numbers = np.asarray(original.Event.Number)
    jet_events = set(np.asarray(after.jets.event).tolist())
    assert not jet_events & set(numbers[list(EMPTY_EVENTS)].tolist())
    untouched = set(numbers[20:].tolist())
    assert [e for e in np.asarray(before.jets.event) if e in untouched] == [
        e for e in np.asarray(after.jets.event) if e in untouched
    ]
    assert np.isfinite(np.asarray(after.images)).all()


# ---- item 2: a worker process killed mid-run -------------------------------------


@pytest.fixture(scope="module")
def pca_models(tmp_path_factory):
    """``folder/pca``: a 4-component PCA scorer of toy QCD images."""
    from models.io import save_model
    from models.pca import build_pca, fit_pca
    from models.scorer import make_scorer
    from models.toy import toy_images

    folder = tmp_path_factory.mktemp("models")
    images = toy_images(200, "qcd", np.random.default_rng(5))  # (200, 37, 37)
    scorer = make_scorer(build_pca(fit_pca([images]), 4))
    save_model(scorer, folder / "pca", {"architecture": "pca"})
    return folder


def score_run(samples, models, client, wrap=lambda p: p):
    from processors.inference import make_scorers
    from processors.score_processor import ScoreProcessor

    fileset = {
        process: {
            "files": {str(path): "Delphes" for path in samples[process].files},
            "metadata": samples[process].metadata,
        }
        for process in ("qcd", "top")
    }
    score = ScoreProcessor(make_scorers(models), LOOSE)
    return run(fileset, wrap(score), scheduler=client, step_size=STEP)


@pytest.fixture(scope="module")
def undisturbed(samples, pca_models, client):
    """The score run of qcd and top without any fault."""
    return score_run(samples, pca_models, client)


def assert_same_histograms(got, expected):
    for name, histogram in expected.items():
        assert got[name].sum(flow=True).value > 0
        np.testing.assert_array_equal(
            got[name].values(flow=True), histogram.values(flow=True)
        )
        np.testing.assert_array_equal(
            got[name].variances(flow=True), histogram.variances(flow=True)
        )


@pytest.mark.slow
def test_killed_worker_loses_nothing(
    tmp_path, samples, pca_models, client, undisturbed
):
    marker = tmp_path / "killed"
    before = set(client.scheduler_info()["workers"])
    disturbed = score_run(
        samples,
        pca_models,
        client,
        lambda p: faults.KillOnce(p, marker, number=120),
    )
    assert marker.exists()  # a worker process did die with SIGKILL
    assert disturbed.failures == undisturbed.failures == []
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # a new one came up

    assert disturbed.output["jets"] == undisturbed.output["jets"]
    jets = undisturbed.output["jets"]
    assert jets["qcd"]["evaluation"] > 0 and jets["top"]["evaluation"] > 0
    assert_same_histograms(
        disturbed.output["histograms"], undisturbed.output["histograms"]
    )


# ---- item 6: outputs that cannot be written --------------------------------------


def unwritable(tmp_path):
    """A folder path below a regular file: mkdir fails even for root."""
    (tmp_path / "file.txt").write_text("a file, not a folder")
    return tmp_path / "file.txt" / "sub"


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def half_written(path_argument):
    """A writer that leaves half a file at its target, then finds the disk full."""

    def write(*args, **kwargs):
        target = args[path_argument]
        Path(getattr(target, "name", target)).write_bytes(b"PAR1 half a file")
        disk_full()

    return write


def files_under(folder):
    return sorted(p.name for p in Path(folder).rglob("*") if p.is_file())


def one_file_fileset(tmp_path, path):
    fileset = {"qcd": {"files": {str(path): "Delphes"}, "metadata": {"process": "qcd"}}}
    target = tmp_path / "datasets.json"
    target.write_text(json.dumps(fileset))
    return fileset, target


def test_images_command_with_unwritable_out_fails_clearly(
    tmp_path, samples, client, caplog
):
    from analysis import cli

    _, fileset = one_file_fileset(tmp_path, samples["qcd"].files[0])
    out = unwritable(tmp_path)
    argv = ["images", "--fileset", str(fileset), "--dataset", "qcd"]
    argv += ["--out", str(out), "--scheduler", client.scheduler.address]
    assert cli.main(argv) == 2
    assert f"{out}" in caplog.text and "Not a directory" in caplog.text


def test_images_on_a_full_disk_fail_and_leave_no_partial_file(
    tmp_path, samples, monkeypatch
):
    import awkward as ak

    from analysis.errors import OutputError

    fileset, _ = one_file_fileset(tmp_path, samples["qcd"].files[0])
    out = tmp_path / "images"
    monkeypatch.setattr(ak, "to_parquet", half_written(1))
    with pytest.raises(OutputError, match="No space left on device"):
        run(
            fileset,
            ImageProcessor(LOOSE, out_dir=out),
            workers=1,
            processes=False,  # the patched writer runs in this process
            step_size=STEP,
        )
    assert files_under(out) == []


def test_generate_with_unwritable_out_fails_clearly(tmp_path, caplog):
    from analysis import cli

    out = unwritable(tmp_path)
    argv = ["generate", "--process", "qcd", "--events", "10", "--out", str(out)]
    assert cli.main(argv) == 2
    assert f"cannot write to output folder {out}" in caplog.text


def test_generate_on_a_full_disk_fails_and_leaves_no_partial_file(
    tmp_path, monkeypatch
):
    from analysis.errors import OutputError
    from generation import delphes_format, generate_sample

    monkeypatch.setattr(delphes_format.DelphesWriter, "write", disk_full)
    with pytest.raises(OutputError, match="qcd_s4_000.root: No space left"):
        generate_sample("qcd", 10, tmp_path / "samples", seed=4)
    assert files_under(tmp_path / "samples") == []


def test_results_on_unwritable_or_full_disk_fail_and_leave_no_partial_file(
    tmp_path, monkeypatch
):
    from analysis import fileset as fileset_module
    from analysis import results
    from analysis.errors import OutputError
    from processors.histograms import book

    histograms = book(lazy=False)
    with pytest.raises(OutputError, match="file.txt"):
        results.write_results(unwritable(tmp_path), histograms, {})

    folder = tmp_path / "results"
    with monkeypatch.context() as patch:
        patch.setattr(results.pickle, "dump", half_written(1))
        with pytest.raises(OutputError, match="histograms.pkl: No space left"):
            results.write_results(folder, histograms, {})
    assert files_under(folder) == []

    with monkeypatch.context() as patch:
        patch.setattr(fileset_module.json, "dump", half_written(1))
        with pytest.raises(OutputError, match="run.json: No space left"):
            results.write_results(folder, histograms, {})
    assert files_under(folder) == ["histograms.pkl"]


# ---- item 7: inputs from elsewhere with unexpected types -------------------------

N_JETS = 16


def image_table(**replace):
    """The columns of an image Parquet file as ``aejets images`` writes them."""
    import awkward as ak

    images = np.random.default_rng(2).random((N_JETS, 37, 37), dtype=np.float32)
    columns = {
        "image": ak.from_numpy(images, regulararray=True),  # (jets, 37, 37)
        "pt": np.full(N_JETS, 850.0),
        "mass": np.full(N_JETS, 170.0),
        "event": np.arange(N_JETS, dtype=np.int64),
        "weight": np.ones(N_JETS),
        "truth_pass": np.ones(N_JETS, dtype=bool),
    }
    columns.update(replace)
    return ak.zip(
        {name: value for name, value in columns.items() if value is not None},
        depth_limit=1,
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("image", None, "has no column 'image'"),
        ("event", None, "has no column 'event'"),
        ("event", [str(n) for n in range(N_JETS)], "'event' has type string"),
        ("event", np.arange(N_JETS) + 0.5, "'event' has type double"),
        ("image", np.zeros((N_JETS, 37 * 37), np.float32), "'image' has type"),
        ("image", np.zeros((N_JETS, 37, 37), np.int32), "int32"),
        ("truth_pass", np.ones(N_JETS), "'truth_pass' has type double"),
    ],
)
def test_training_refuses_parquet_of_unexpected_types(tmp_path, column, value, message):
    import awkward as ak

    from analysis.errors import InputError
    from models.data import prepare_training_data

    for name, table in (("qcd", image_table()), ("top", image_table())):
        (tmp_path / name).mkdir()
        ak.to_parquet(table, tmp_path / name / "part-0.parquet")
    data = prepare_training_data(tmp_path, "qcd", contamination=("top", 0.2))
    assert data.n_train + data.n_validation > 0  # the layout of aejets images

    bad = "top" if column == "truth_pass" else "qcd"
    ak.to_parquet(image_table(**{column: value}), tmp_path / bad / "part-0.parquet")
    with pytest.raises(InputError, match=message) as error:
        prepare_training_data(tmp_path, "qcd", contamination=("top", 0.2))
    assert f"{tmp_path / bad / 'part-0.parquet'}" in str(error.value)


def cast_leaf(collection, field, dtype):
    def change(collections):
        out = dict(collections)
        records = out[collection]
        values = records[f"{collection}.{field}"]
        out[collection] = ak_with_field(records, values, dtype, f"{collection}.{field}")
        return out

    return change


def ak_with_field(records, values, dtype, name):
    import awkward as ak

    return ak.with_field(records, ak.values_astype(values, dtype), name)


def drop_leaf(collection, field):
    def change(collections):
        out = dict(collections)
        records = out[collection]
        out[collection] = records[
            [f for f in records.fields if f != f"{collection}.{field}"]
        ]
        return out

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (cast_leaf("EFlowTrack", "PT", np.int32), "EFlowTrack.PT holds int32"),
        (cast_leaf("EFlowPhoton", "Eta", np.int16), "EFlowPhoton.Eta holds int16"),
        (cast_leaf("Event", "Number", np.float64), "Event.Number holds float64"),
    ],
)
def test_delphes_file_of_unexpected_types_names_file_and_branch(
    tmp_path, samples, change, message
):
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    from analysis.errors import InputError

    path = faults.rewrite_delphes(
        samples["qcd"].files[0], tmp_path / "elsewhere.root", change
    )
    events = NanoEventsFactory.from_root(
        {str(path): "Delphes"},
        schemaclass=DelphesSchema,
        mode="virtual",
        metadata={"filename": str(path)},
    ).events()
    with pytest.raises(InputError, match=message) as error:
        jets_and_images(events, LOOSE)
    assert str(error.value).startswith(f"{path}: branch")


def test_runner_records_files_of_unexpected_types_and_fail_fast_stops(
    tmp_path, samples, client
):
    from analysis.errors import InputError

    source = samples["qcd"].files[0]
    no_eta = faults.rewrite_delphes(
        source, tmp_path / "no_eta.root", drop_leaf("EFlowTrack", "Eta")
    )
    int_pt = faults.rewrite_delphes(
        source, tmp_path / "int_pt.root", cast_leaf("EFlowTrack", "PT", np.int32)
    )
    files = {str(p): "Delphes" for p in (source, no_eta, int_pt)}
    fileset = {"qcd": {"files": files, "metadata": {"process": "qcd"}}}
    result = run(fileset, ImageProcessor(LOOSE), scheduler=client, step_size=200)

    assert result.output["qcd"]["events"] == entries(source)
    reasons = {f["file"]: f["reason"] for f in result.failures}
    assert set(reasons) == {str(no_eta), str(int_pt)}
    assert "'Eta'" in reasons[str(no_eta)]
    assert "EFlowTrack/EFlowTrack.PT holds int32" in reasons[str(int_pt)]

    del files[str(no_eta)]
    with pytest.raises(InputError, match="int_pt.root: .*PT holds int32"):
        run(fileset, ImageProcessor(LOOSE), scheduler=client, fail_fast=True)


# ---- item 5: generation killed mid-way -------------------------------------------

# `aejets generate --jobs 1` in a child process, with files of 40 events (the
# production default is 20k) so that a small sample has two files.
GENERATE = """
import sys
import generation.production as production
from analysis import cli
production.MAX_EVENTS_PER_FILE = 40
sys.exit(cli.main(sys.argv[1:]))
"""


def generate_argv(out, seed=11):
    return ["generate", "--process", "qcd", "--events", "80", "--jobs", "1"] + [
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]


def delphes_content(folder):
    """{file name: {branch: numpy array}} of every sample file in ``folder``."""
    import uproot

    content = {}
    for path in sorted(Path(folder).glob("*.root")):
        with uproot.open(path) as handle:
            arrays = handle["Delphes"].arrays(library="ak")
            content[path.name] = {f: arrays[f] for f in arrays.fields}
    return content


@pytest.mark.slow
def test_generation_killed_after_one_file_completes_on_rerun(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import awkward as ak

    from generation.production import file_name

    killed = tmp_path / "killed"
    first = killed / file_name("qcd", "pythia", 11, 0)
    second = killed / file_name("qcd", "pythia", 11, 1)
    argv = [sys.executable, "-c", GENERATE, *generate_argv(killed)]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not first.exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the first file never appeared"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
    assert first.exists() and not second.exists()
    first_mtime = first.stat().st_mtime_ns

    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    assert first.stat().st_mtime_ns == first_mtime  # kept, not redone
    assert sorted(p.name for p in killed.iterdir()) == [first.name, second.name]

    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-c", GENERATE, *generate_argv(whole)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    resumed, expected = delphes_content(killed), delphes_content(whole)
    assert sorted(resumed) == sorted(expected) == [first.name, second.name]
    for name, branches in expected.items():
        assert sorted(resumed[name]) == sorted(branches)
        for branch, values in branches.items():
            assert ak.array_equal(resumed[name][branch], values, equal_nan=True), (
                name,
                branch,
            )


# ---- item 4: training killed mid-way ---------------------------------------------

# `aejets train` in a child process that kills itself with SIGKILL as its third
# epoch begins, i.e. after the checkpoint of the second.
TRAIN_KILLED = """
import os, signal, sys
import keras
import models.training as training
from analysis import cli

class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = training._callbacks
training._callbacks = lambda *args: callbacks(*args) + [Kill()]
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_training_killed_mid_way_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import subprocess
    import sys

    import awkward as ak
    import keras

    from analysis import cli
    from models import training
    from models.toy import toy_images

    images = toy_images(256, "qcd", np.random.default_rng(3))  # (256, 37, 37)
    (tmp_path / "images" / "qcd").mkdir(parents=True)
    table = ak.zip(
        {
            "image": ak.from_numpy(images.astype(np.float32), regulararray=True),
            "event": np.arange(len(images), dtype=np.int64),
        },
        depth_limit=1,
    )
    ak.to_parquet(table, tmp_path / "images" / "qcd" / "part-0.parquet")
    out = tmp_path / "models"
    argv = ["train", "--model", "dense", "--dataset", "qcd", "--latent", "2"]
    argv += ["--epochs", "4", "--images", str(tmp_path / "images"), "--out", str(out)]

    child = subprocess.run(
        [sys.executable, "-c", TRAIN_KILLED, *argv], capture_output=True, timeout=300
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    partial = out / "dense.partial"
    state = json.loads((partial / "state.json").read_text())
    assert state["epochs_done"] == 2 and not (out / "dense").exists()
    saved = keras.models.load_model(partial / "model.keras").get_weights()

    seen = {}

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = self.model.get_weights()

        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("first_epoch", epoch)

    callbacks = training._callbacks
    monkeypatch.setattr(
        training, "_callbacks", lambda *args: callbacks(*args) + [Record()]
    )
    assert cli.main(argv) == 0

    assert seen["first_epoch"] == 2  # epochs 1 and 2 were not run again
    for got, expected in zip(seen["weights"], saved, strict=True):
        np.testing.assert_array_equal(got, expected)
    card = json.loads((out / "dense" / "card.json").read_text())
    assert card["epochs_run"] == 4
    assert card["resumed_after_epoch"] == 2  # not the same shuffles as one go
    assert card["history"]["loss"][:2] == state["history"]["loss"]
    assert not partial.exists()


# ---- item 3: the scoring server stops mid-run; a rerun computes what is missing ---


@pytest.mark.slow
def test_scoring_after_a_server_failure_resumes_with_only_what_is_missing(
    tmp_path, samples, pca_models, client, monkeypatch, undisturbed
):
    from analysis.errors import ServingError
    from processors import score_processor

    fileset = {
        process: {
            "files": {str(path): "Delphes" for path in samples[process].files},
            "metadata": samples[process].metadata,
        }
        for process in ("qcd", "top")
    }
    options = {"jet_config": LOOSE, "step_size": STEP, "scheduler": client}

    url = "triton+grpc://127.0.0.1:1"
    down = tmp_path / "server-down"
    down.touch()
    original = score_processor.ScoreProcessor
    monkeypatch.setattr(
        score_processor,
        "ScoreProcessor",
        lambda *args, **kwargs: faults.FailWhile(
            original(*args, **kwargs), down, "top", url
        ),
    )
    cache = tmp_path / "cache"
    options["out_dir"] = out = tmp_path / "scores"
    with pytest.raises(ServingError, match=f"dataset 'top': .*{re.escape(url)}"):
        score_processor.score_fileset(fileset, pca_models, cache_dir=cache, **options)
    qcd_files = list(fileset["qcd"]["files"])
    assert len(list(cache.glob("*.pkl"))) == len(qcd_files)
    # Parts of the failed files are gone: no dataset sits half written.
    assert list((out / "qcd").glob("part-*.parquet"))
    assert not list((out / "top").glob("part-*.parquet"))

    down.unlink()  # the server is back
    resumed, report = score_processor.score_fileset(
        fileset, pca_models, cache_dir=cache, **options
    )
    assert report["cached"] == qcd_files  # only top was computed again
    assert report["failures"] == []
    assert_same_histograms(resumed, undisturbed.output["histograms"])
    jets = pq.read_table(sorted((out / "top").glob("part-*.parquet"))).num_rows
    assert jets == report["jets"]["top"]["selected"]


def test_failed_scoring_removes_the_parts_of_files_it_did_not_complete(
    tmp_path, pca_models, monkeypatch
):
    # A server that dies while some chunks of a file are already written: those
    # parts must not stay under their final names beside nothing else.
    from analysis.errors import ServingError
    from processors import runner, score_processor

    out = tmp_path / "scores"
    written = out / "top" / "part-0123456789-00000.parquet"

    def run_writing_a_part_then_failing(fileset, processor, **options):
        written.parent.mkdir(parents=True)
        written.write_bytes(b"PAR1")
        reason = "ServingError: Triton server triton+grpc://127.0.0.1:1 unreachable"
        failure = {"dataset": "top", "file": "t.root", "entries": [0, 5]}
        return runner.RunResult(output={}, failures=[{**failure, "reason": reason}])

    monkeypatch.setattr(runner, "run", run_writing_a_part_then_failing)
    fileset = {"top": {"files": {"t.root": "Delphes"}, "metadata": {}}}
    with pytest.raises(ServingError, match="dataset 'top'"):
        score_processor.score_fileset(
            fileset, pca_models, out_dir=out, unit_weight=True
        )
    assert not written.exists()


def test_checkpoint_of_other_images_or_settings_is_ignored(tmp_path):
    from models.checkpoint import Checkpoint

    folder = tmp_path / "dense.partial"
    folder.mkdir()
    state = {"key": {"content_hash": "old"}, "epochs_done": 3, "history": {}}
    (folder / "state.json").write_text(json.dumps(state))
    assert Checkpoint(folder, {"content_hash": "new"}).load() is None
    (folder / "state.json").write_text("{not json")
    assert Checkpoint(folder, {"content_hash": "old"}).load() is None


def test_output_cache_entries_depend_on_key_metadata_and_chunks(tmp_path):
    from processors.cache import OutputCache

    spec = {"object_path": "Delphes", "steps": [[0, 50], [50, 100]], "uuid": "u"}
    meta = {"xsec_pb": 1.0}
    cache = OutputCache(tmp_path, {"models": {"pca": "abc"}})
    cache.store("qcd", "/a.root", spec, meta, {"n": 3})
    assert cache.load("qcd", "/a.root", spec, meta) == {"n": 3}
    assert cache.load("qcd", "/a.root", spec, {"xsec_pb": 2.0}) is None
    assert cache.load("qcd", "/a.root", {**spec, "steps": [[0, 100]]}, meta) is None
    assert cache.load("top", "/a.root", spec, meta) is None
    other = OutputCache(tmp_path, {"models": {"pca": "def"}})
    assert other.load("qcd", "/a.root", spec, meta) is None
    assert [p.suffix for p in tmp_path.iterdir()] == [".pkl"]  # no partial file
