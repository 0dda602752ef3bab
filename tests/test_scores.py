"""Scores as a column: the local scorer against its Keras model, the score processor
against a per-jet reference built from its own Parquet output, and the Triton export.

The models are tiny (a PCA of toy images and an untrained dense autoencoder), saved
with the agreed layout by ``models.io.save_model``; the events are coffea's real
Delphes file with a loose jet selection, so that every step sees a few dozen jets.
"""

import json
import pickle

import awkward as ak
import dask_awkward as dak
import keras
import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis import cli
from analysis.errors import ConfigError, InputError
from models.io import save_model
from models.pca import build_pca, fit_pca
from models.scorer import make_scorer
from models.toy import toy_images
from processors.histograms import book
from processors.image_processor import jets_and_images
from processors.inference import LocalScorer, make_scorers
from processors.jets import JetConfig
from processors.score_processor import dataset_weight, score_fileset

LOOSE = JetConfig(pt_range=(50.0, 5000.0), eta_max=2.5, max_jets=None)
XSEC_PB, SUM_WEIGHTS = 3.0, 1.5e7


def tiny_models(folder):
    """Write ``folder/pca`` and ``folder/dense``: small scorers, agreed layout."""
    rng = np.random.default_rng(7)
    pca = build_pca(fit_pca([toy_images(200, "qcd", rng)]), 4)
    save_model(make_scorer(pca), folder / "pca", {"architecture": "pca"})
    keras.utils.set_random_seed(3)
    dense = keras.Sequential(
        [
            keras.Input((37, 37, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(37 * 37, activation="softmax"),
            keras.layers.Reshape((37, 37, 1)),
        ],
        name="dense_ae",
    )
    save_model(make_scorer(dense), folder / "dense", {"architecture": "dense"})
    return folder


def real_fileset(path, **metadata):
    metadata = {"xsec_pb": XSEC_PB, "sum_weights": SUM_WEIGHTS, **metadata}
    return {"ttbar": {"files": {str(path): "Delphes"}, "metadata": metadata}}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def images():
    return toy_images(70, "top", np.random.default_rng(5))  # (70, 37, 37)


def test_local_scorer_equals_keras_on_awkward_and_dask(models_dir, images):
    model = keras.models.load_model(models_dir / "dense" / "model.keras")
    expected = model.predict(images[..., None], verbose=0)["loss"]  # (70,)
    scorer = LocalScorer(models_dir / "dense", batch_size=16)

    eager = scorer(ak.Array(images))
    lazy = scorer(dak.from_awkward(ak.Array(images), npartitions=3)).compute()

    np.testing.assert_allclose(ak.to_numpy(eager), expected, rtol=1e-6)
    np.testing.assert_allclose(ak.to_numpy(lazy), expected, rtol=1e-6)
    assert ak.to_numpy(scorer(ak.Array(images[:0]))).shape == (0,)
    # The model stays out of pickles: a worker loads it again.
    assert b"model.keras" in pickle.dumps(scorer)
    assert pickle.loads(pickle.dumps(scorer))._model is None


def test_local_scorer_rejects_wrong_shapes_and_missing_models(models_dir, tmp_path):
    scorer = LocalScorer(models_dir / "pca")
    with pytest.raises(InputError, match=r"\(jets, 37, 37\), got \(4, 36, 37\)"):
        scorer(np.zeros((4, 36, 37), np.float32))
    with pytest.raises(InputError, match="has no model.keras"):
        LocalScorer(tmp_path)
    with pytest.raises(InputError, match="no <name>/model.keras"):
        make_scorers(tmp_path)


def test_dataset_weight_from_metadata_or_unit():
    meta = {"dataset": "qcd", "xsec_pb": 2.0, "sum_weights": 4.0}
    assert dataset_weight(meta) == 0.5
    assert dataset_weight({"dataset": "qcd"}, unit_weight=True) == 1.0
    with pytest.raises(ConfigError, match="'qcd' has no sum_weights.*--unit-weight"):
        dataset_weight({"dataset": "qcd", "xsec_pb": 1.0})
    with pytest.raises(ConfigError, match="sum_weights is 0"):
        dataset_weight({**meta, "sum_weights": 0})


def reference_histograms(rows, dataset, models, scale):
    """Histograms filled jet by jet from Parquet rows: evaluation jets only."""
    expected = book(lazy=False)
    for row in rows:
        if row["training"]:
            continue
        weight = row["weight"] * scale
        expected["mass"].fill(dataset=dataset, mass=row["mass"], weight=weight)
        for model in models:
            loss = row[f"score_{model}"]
            expected["loss"].fill(
                dataset=dataset, model=model, loss=loss, weight=weight
            )
            expected["mass_loss"].fill(
                dataset=dataset, model=model, mass=row["mass"], loss=loss, weight=weight
            )
    return expected


def assert_same_histograms(actual, expected):
    for name in expected:
        assert list(actual[name].axes[0]) == list(expected[name].axes[0]), name
        np.testing.assert_allclose(
            actual[name].values(flow=True), expected[name].values(flow=True), rtol=1e-9
        )
        np.testing.assert_allclose(
            actual[name].variances(flow=True),
            expected[name].variances(flow=True),
            rtol=1e-9,
        )


@pytest.fixture(scope="module")
def scored(real_delphes_file, models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores")
    fileset = real_fileset(real_delphes_file)
    histograms, report = score_fileset(
        fileset,
        models_dir,
        jet_config=LOOSE,
        out_dir=out,
        step_size=7,  # 4 chunks of the 25 events
        workers=1,
        processes=False,
    )
    rows = pq.read_table(out / "ttbar").to_pylist()
    return histograms, report, rows, out


def test_score_columns_equal_a_per_jet_reference(scored, real_delphes_file, models_dir):
    histograms, report, rows, _ = scored
    assert report["failures"] == []
    assert report["jets"]["ttbar"]["selected"] == len(rows) > 20

    # Reference: the same jets built eagerly, scored one jet at a time.
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    events = NanoEventsFactory.from_root(
        {str(real_delphes_file): "Delphes"}, schemaclass=DelphesSchema, mode="eager"
    ).events()
    reference = jets_and_images(events, LOOSE)
    losses = {  # (jets,) per model, straight from the Keras model
        name: keras.models.load_model(models_dir / name / "model.keras").predict(
            ak.to_numpy(reference.images)[..., None], verbose=0
        )["loss"]
        for name in ("dense", "pca")
    }
    by_jet = {(r["event"], round(r["pt"], 6)): r for r in rows}
    assert len(by_jet) == len(rows) == len(reference.jets)
    for i, jet in enumerate(reference.jets.to_list()):
        row = by_jet[(jet["event"], round(jet["pt"], 6))]
        assert row["training"] == (jet["event"] % 2 == 0)
        assert row["dataset"] == "ttbar"
        assert row["mass"] == pytest.approx(jet["mass"], rel=1e-12)
        for name, loss in losses.items():
            assert row[f"score_{name}"] == pytest.approx(loss[i], rel=1e-5)


def test_histograms_hold_weighted_evaluation_jets_only(scored):
    histograms, report, rows, _ = scored
    expected = reference_histograms(
        rows, "ttbar", ["dense", "pca"], XSEC_PB / SUM_WEIGHTS
    )
    assert_same_histograms(histograms, expected)
    evaluation = sum(not r["training"] for r in rows)
    assert report["jets"]["ttbar"]["evaluation"] == evaluation > 0
    assert histograms["mass"].sum(flow=True).value == pytest.approx(
        sum(r["weight"] for r in rows if not r["training"]) * XSEC_PB / SUM_WEIGHTS
    )


def check_partitions_without_jets(path, models_dir, out, triton_url=None):
    """Score the real file in 5 chunks of which most hold no jet in 800-900 GeV
    (locally, or through ``triton_url``): no failure, every jet once."""
    histograms, report = score_fileset(
        real_fileset(path),
        models_dir,
        triton_url=triton_url,
        names=["pca"],
        jet_config=JetConfig(pt_range=(800.0, 900.0)),
        unit_weight=True,
        out_dir=out,
        step_size=5,
        workers=1,
        processes=False,
    )
    parts = sorted((out / "ttbar").glob("part-*.parquet"))
    rows = pq.read_table(parts).to_pylist() if parts else []
    assert report["failures"] == []
    assert report["chunks"] == 5
    assert len(parts) < 5
    assert report["jets"]["ttbar"]["selected"] == len(rows)
    assert_same_histograms(
        histograms, reference_histograms(rows, "ttbar", ["pca"], 1.0)
    )


def test_partitions_without_jets(real_delphes_file, models_dir, tmp_path):
    check_partitions_without_jets(real_delphes_file, models_dir, tmp_path)


def test_score_command_writes_parquet_histograms_and_report(
    real_delphes_file, models_dir, tmp_path
):
    fileset = tmp_path / "datasets.json"
    entry = {"files": {str(real_delphes_file): "Delphes"}, "metadata": {}}
    fileset.write_text(json.dumps({"ttbar": entry}))
    out = tmp_path / "out"
    argv = ["score", "--fileset", str(fileset), "--dataset", "ttbar"]
    argv += ["--models", str(models_dir), "--model", "pca", "--out", str(out)]
    argv += ["--pt-range", "50", "5000", "--eta-max", "2.5", "--max-jets", "0"]
    argv += ["--max-events", "10", "--step-size", "4", "--workers", "1"]

    # The fileset has no cross section: refused, with the option that helps.
    assert cli.main(argv) == 2
    assert cli.main([*argv, "--unit-weight"]) == 0

    rows = pq.read_table(out / "ttbar").to_pylist()
    assert rows and max(r["event"] for r in rows) <= 10  # Event.Number starts at 1
    assert {"score_pca", "training", "pt", "mass", "event"} <= set(rows[0])
    assert "image" not in rows[0] and "score_dense" not in rows[0]
    with open(out / "histograms.pkl", "rb") as handle:
        histograms = pickle.load(handle)
    assert_same_histograms(
        histograms, reference_histograms(rows, "ttbar", ["pca"], 1.0)
    )
    assert (out / "report.json").is_file()


def test_export_triton_repository_matches_the_saved_models(models_dir, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from models.triton_repo import signature_tensors

    repo = tmp_path / "repo"
    argv = ["export-triton", "--models", str(models_dir), "--out", str(repo)]
    assert cli.main([*argv, "--max-batch-size", "512"]) == 0

    assert sorted(p.name for p in repo.iterdir()) == ["dense", "pca"]
    for name in ("dense", "pca"):
        config = text_format.Parse(
            (repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        saved_model = repo / name / "1" / "model.savedmodel"
        inputs, outputs = signature_tensors(saved_model)  # the copy loads
        assert inputs == {"images": ("float32", (None, 37, 37, 1))}
        assert outputs == {
            "loss": ("float32", (None,)),
            "reconstruction": ("float32", (None, 37, 37, 1)),
        }
        assert config.name == name
        assert config.platform == "tensorflow_savedmodel"
        assert config.max_batch_size == 512
        assert config.dynamic_batching.preferred_batch_size == [512]
        (images,) = config.input
        assert (images.name, list(images.dims)) == ("images", [37, 37, 1])
        assert images.data_type == model_config_pb2.TYPE_FP32
        declared = {o.name: o for o in config.output}
        assert list(declared["reconstruction"].dims) == [37, 37, 1]
        # loss is (batch,): one element per jet, reshaped to a scalar.
        assert list(declared["loss"].dims) == [1]
        assert declared["loss"].HasField("reshape")
        assert list(declared["loss"].reshape.shape) == []


def test_signal_jets_failing_truth_are_kept_apart(real_delphes_file, models_dir):
    # coffea's file holds no top quark: as a top signal, every jet fails the truth
    # requirements and must land in the failing-truth category, none in the signal.
    from processors.histograms import FAILING_TRUTH

    fileset = real_fileset(real_delphes_file, signal=True, process="top")
    histograms, report = score_fileset(
        fileset, models_dir, jet_config=LOOSE, workers=1, processes=False
    )
    mass = histograms["mass"]
    assert "ttbar" not in mass.axes["dataset"]
    failing = mass[{"dataset": "ttbar" + FAILING_TRUTH}].sum(flow=True).value
    assert report["jets"]["ttbar"]["evaluation"] > 0
    assert failing > 0


def test_export_triton_replaces_only_an_earlier_repository(models_dir, tmp_path):
    repo = tmp_path / "repo"
    argv = ["export-triton", "--models", str(models_dir), "--out", str(repo)]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0  # an earlier repository is replaced
    assert sorted(p.name for p in repo.iterdir()) == ["dense", "pca"]

    (repo / "notes.txt").write_text("mine")
    assert cli.main(argv) == 2  # a folder holding anything else is refused
    assert (repo / "notes.txt").read_text() == "mine"

    # Nor may the repository replace the folder holding the models.
    parent = models_dir.parent
    argv = ["export-triton", "--models", str(models_dir), "--out", str(parent)]
    assert cli.main(argv) == 2
    assert (models_dir / "pca" / "card.json").exists()
