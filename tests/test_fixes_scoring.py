"""Fixes of scoring and image runs found by a new user.

1. a resumed ``score`` run replaces the part files of the interrupted run (same
   names for the same file and settings; stale ones removed), no duplicate jets;
2. a dataset whose every file fails is an error (exit status 2), naming each file;
3. a malformed ``--scheduler`` address is an InputError naming the expected form;
4. a malformed Triton URL is a ConfigError naming the expected form;
5. an unwritable ``--out`` prints the one-line error, no worker traceback.

The events are coffea's real Delphes file (25 events) on an in-process cluster.
"""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from models.io import save_model
from models.pca import build_pca, fit_pca
from models.scorer import make_scorer
from models.toy import toy_images
from processors.jets import JetConfig

LOOSE = JetConfig(pt_range=(50.0, 5000.0), eta_max=2.5, max_jets=None)
STEP = 10  # events per chunk: three chunks per file


@pytest.fixture(scope="module")
def pca_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    images = toy_images(200, "qcd", np.random.default_rng(5))  # (200, 37, 37)
    save_model(
        make_scorer(build_pca(fit_pca([images]), 4)),
        folder / "pca",
        {"architecture": "pca"},
    )
    return folder


def two_datasets(real_delphes_file, folder):
    """``qcd`` and ``top``, one copy of the real file each, unit metadata."""
    fileset = {}
    for name in ("qcd", "top"):
        copy = folder / f"{name}.root"
        shutil.copyfile(real_delphes_file, copy)
        fileset[name] = {"files": {str(copy): "Delphes"}, "metadata": {}}
    return fileset


def parquet_rows(out_dir, dataset):
    """Sorted (event, pt, score) rows of every part file of ``dataset``."""
    rows = []
    for part in sorted((out_dir / dataset).glob("part-*.parquet")):
        table = pq.read_table(part).to_pydict()
        rows += zip(table["event"], table["pt"], table["score_pca"], strict=True)
    return sorted(rows)


# ---- 1: a resumed score run leaves no duplicate jets ------------------------------


@pytest.mark.slow
def test_resumed_score_run_has_the_rows_of_an_undisturbed_run(
    tmp_path, real_delphes_file, pca_models, monkeypatch
):
    from analysis.errors import ServingError
    from processors import score_processor

    fileset = two_datasets(real_delphes_file, tmp_path)
    options = {
        "jet_config": LOOSE,
        "unit_weight": True,
        "step_size": STEP,
        "workers": 1,
        "processes": False,
    }
    reference = tmp_path / "undisturbed"
    score_processor.score_fileset(fileset, pca_models, out_dir=reference, **options)
    expected = {name: parquet_rows(reference, name) for name in fileset}
    assert all(len(rows) > 3 for rows in expected.values())

    # The interrupted run: chunk 1 of top is written, then its "server" fails.
    writer = score_processor.ChunkWriter
    original = writer.__call__
    down = tmp_path / "server-down"
    down.touch()

    def write_then_fail(self, table, chunk):
        written = original(self, table, chunk)
        index = chunk[0] if isinstance(chunk, tuple) else chunk
        if self.dataset == "top" and index == 1 and down.exists():
            raise ServingError("Triton server triton+grpc://127.0.0.1:1 unreachable")
        return written

    monkeypatch.setattr(writer, "__call__", write_then_fail)
    out, cache = tmp_path / "out", tmp_path / "out" / ".cache"
    with pytest.raises(ServingError, match="dataset 'top'"):
        score_processor.score_fileset(
            fileset, pca_models, out_dir=out, cache_dir=cache, **options
        )
    # Chunk 1 of top was written, but top did not complete: its parts are removed,
    # so that no dataset sits half written under final names.
    assert not list((out / "top").glob("part-*.parquet"))
    assert list((out / "qcd").glob("part-*.parquet"))  # completed: kept for resume

    down.unlink()  # the server is back: resume
    _, report = score_processor.score_fileset(
        fileset, pca_models, out_dir=out, cache_dir=cache, **options
    )
    assert report["cached"] == list(fileset["qcd"]["files"])
    for name in fileset:
        assert parquet_rows(out, name) == expected[name], name


def test_part_files_of_an_earlier_run_with_other_settings_are_removed(
    tmp_path, real_delphes_file, pca_models
):
    from processors.score_processor import score_fileset

    fileset = {"top": two_datasets(real_delphes_file, tmp_path)["top"]}
    options = {"unit_weight": True, "workers": 1, "processes": False}
    out = tmp_path / "out"
    loose = JetConfig(pt_range=(20.0, 5000.0), eta_max=2.5, max_jets=None)
    score_fileset(fileset, pca_models, out_dir=out, jet_config=loose, **options)
    before = parquet_rows(out, "top")
    _, report = score_fileset(
        fileset, pca_models, out_dir=out, jet_config=LOOSE, step_size=STEP, **options
    )
    after = parquet_rows(out, "top")
    assert len(after) == report["jets"]["top"]["selected"] < len(before)


# ---- 2: a dataset whose every file fails is an error -----------------------------


def broken_fileset(tmp_path, real_delphes_file):
    """``broken``: a garbage file and a file read with a wrong tree name;
    ``partial``: the same garbage file and a good one."""
    from tests import faults

    garbage = str(faults.garbage_file(tmp_path / "garbage.root"))
    copy = tmp_path / "events.root"
    shutil.copyfile(real_delphes_file, copy)
    fileset = {
        "broken": {"files": {garbage: "Delphes", str(copy): "Events"}},
        "partial": {"files": {garbage: "Delphes", str(copy): "Delphes"}},
    }
    target = tmp_path / "datasets.json"
    target.write_text(json.dumps(fileset))
    return target, garbage, str(copy)


def test_images_of_a_dataset_whose_every_file_fails_exit_2(
    tmp_path, real_delphes_file, scheduler, caplog
):
    from analysis import cli

    fileset, garbage, copy = broken_fileset(tmp_path, real_delphes_file)
    common = ["images", "--fileset", str(fileset), "--out", str(tmp_path / "out")]
    common += ["--scheduler", scheduler]
    assert cli.main([*common, "--dataset", "broken"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "dataset 'broken'" in errors[0]
    assert f"{garbage}: " in errors[0] and f"{copy}: " in errors[0]
    assert "Events" in errors[0]  # the tree that is not in the file
    report = json.loads((tmp_path / "out" / "broken" / "report.json").read_text())
    assert len(report["failures"]) == 2

    caplog.clear()
    assert cli.main([*common, "--dataset", "partial"]) == 0  # a warning only
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_score_of_a_dataset_whose_every_file_fails_exits_2(
    tmp_path, real_delphes_file, pca_models, scheduler, caplog
):
    from analysis import cli

    fileset, garbage, copy = broken_fileset(tmp_path, real_delphes_file)
    argv = ["score", "--fileset", str(fileset), "--models", str(pca_models)]
    argv += ["--out", str(tmp_path / "out"), "--scheduler", scheduler]
    argv += ["--unit-weight", "--dataset", "broken", "--dataset", "partial"]
    assert cli.main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "dataset 'broken'" in errors[0] and "partial" not in errors[0]
    assert f"{garbage}: " in errors[0] and f"{copy}: " in errors[0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["unreadable"] == ["broken"]
    assert "partial" in report["jets"]  # scored, with a warning for the garbage
    partial = [f["file"] for f in report["failures"] if f["dataset"] == "partial"]
    assert partial == [garbage]


# ---- 3: a malformed scheduler address ---------------------------------------------


@pytest.mark.parametrize("address", ["notaurl", "foo://127.0.0.1:1", "tcp://:"])
def test_malformed_scheduler_address_is_an_input_error(address):
    from analysis.errors import InputError
    from processors.runner import client_for

    with pytest.raises(InputError) as caught, client_for(address):
        pass
    assert repr(address) in str(caught.value)
    assert "tcp://HOST:PORT" in str(caught.value)


def test_images_with_a_malformed_scheduler_exits_2(tmp_path, real_delphes_file, caplog):
    from analysis import cli

    fileset, _, _ = broken_fileset(tmp_path, real_delphes_file)
    argv = ["images", "--fileset", str(fileset), "--dataset", "partial"]
    argv += ["--out", str(tmp_path / "out"), "--scheduler", "notaurl"]
    assert cli.main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "'notaurl'" in errors[0]
    assert "tcp://HOST:PORT" in errors[0]


# ---- 4: a malformed Triton URL ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "triton+grpc://127.0.0.1:99999",  # the client took it modulo 65536
        "triton+grpc://127.0.0.1",  # the client took port 443
        "triton+grpc://127.0.0.1:0",
        "triton+grpc://:8001",
        "triton+grpc://127.0.0.1:port",
        "grpc://127.0.0.1:8001",
        "triton+grpc://127.0.0.1:8001/pca/1",
    ],
)
def test_malformed_triton_url_is_a_config_error(url, pca_models):
    from analysis.errors import ConfigError
    from processors.inference import make_scorers

    with pytest.raises(ConfigError) as caught:
        make_scorers(pca_models, triton_url=url)
    assert repr(url) in str(caught.value)
    assert "triton+grpc://HOST:PORT" in str(caught.value)


def test_triton_url_keeps_its_host_and_port(pca_models):
    from processors.inference import make_scorers

    for url, address in [
        ("triton+grpc://127.0.0.1:65535", "127.0.0.1:65535"),
        ("triton+grpc://localhost:8001/", "localhost:8001"),
        ("triton+http://[::1]:8000", "[::1]:8000"),
    ]:
        scorer = make_scorers(pca_models, triton_url=url)["pca"]
        assert (scorer.address, scorer.model, scorer.version) == (address, "pca", "1")


# ---- 5: an unwritable --out: one line, no worker traceback --------------------------


def test_unwritable_out_prints_no_worker_traceback(
    tmp_path, real_delphes_file, capfd, caplog
):
    from analysis import cli

    fileset = tmp_path / "datasets.json"
    entry = {"files": {str(real_delphes_file): "Delphes"}, "metadata": {}}
    fileset.write_text(json.dumps({"top": entry}))
    (tmp_path / "file").touch()
    out = tmp_path / "file" / "out"  # below a file: cannot be made
    argv = ["images", "--fileset", str(fileset), "--dataset", "top"]
    argv += ["--out", str(out), "--workers", "1", "--pt-range", "50", "5000"]
    assert cli.main(argv) == 2  # a local cluster of one worker process
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Not a directory" in errors[0]
    assert str(out) in errors[0]
    printed = capfd.readouterr()
    assert "Compute Failed" not in printed.err + printed.out
    assert "Traceback" not in printed.err + printed.out


def test_worker_logs_other_task_errors_as_before(caplog):
    import logging

    from processors.runner import client_for

    with client_for(workers=1, processes=False):
        logger = logging.getLogger("distributed.worker")
        logger.error("Compute Failed\nException: \"OutputError('cannot write')\"")
        logger.error("Compute Failed\nException: \"InputError('no such branch')\"")
    failed = [r.getMessage() for r in caplog.records if "Compute Failed" in r.msg]
    assert len(failed) == 1 and "InputError" in failed[0]
