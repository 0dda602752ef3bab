"""Fixes of scoring and image runs found by a new user.

1. a resumed ``score`` run replaces the part files of the interrupted run (same
   names for the same file and settings; stale ones removed), no duplicate jets;
2. a dataset whose every file fails is an error (exit status 2), naming each file;
3. a malformed ``--scheduler`` address is an InputError naming the expected form;
4. a malformed Triton URL is a ConfigError naming the expected form;
5. an unwritable ``--out`` prints the one-line error, no worker traceback.

The events are coffea's real Delphes file (25 events) on an in-process cluster.
"""

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
    writer = score_processor._PartitionWriter
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
    assert list((out / "top").glob("part-*-00001.parquet"))  # left by the failure

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
