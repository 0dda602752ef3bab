"""Models: PCA against numpy, save/load, shape errors, training on toy images.

The images here are toy stand-ins written with the exact column layout of
``aejets images`` (models/toy.py): a QCD-like jet is one central blob, a top-like jet
has two more prongs. They test the code paths, not the physics.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis.errors import ConfigError, InputError
from analysis.split import is_training
from models.data import images_from_table, iter_images, prepare_training_data
from models.io import load_card, load_scorer, save_model, score_images
from models.pca import build_pca, fit_pca
from models.scorer import make_scorer
from models.toy import toy_images, write_toy_parquet
from models.training import model_name, pca_losses, train, train_and_save
from tests.generated import session_samples


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_toy_parquet(folder, "qcd", 1200, "qcd", seed=1, files=2, row_group=200)
    write_toy_parquet(folder, "top", 600, "top", seed=2, row_group=200)
    return folder


@pytest.fixture(scope="module")
def held_out():
    rng = np.random.default_rng(99)
    qcd = toy_images(300, "qcd", rng)[..., None]  # (300, 37, 37, 1)
    top = toy_images(300, "top", rng)[..., None]
    return qcd, top


def test_pca_reconstruction_equals_numpy_projection(held_out):
    rng = np.random.default_rng(3)
    train_images = toy_images(400, "qcd", rng)  # (400, 37, 37)
    fit = fit_pca(np.array_split(train_images, 3))

    # Reference: eigenvectors of numpy's covariance, projection written out.
    flat = train_images.reshape(400, -1).astype(np.float64)
    mean = flat.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(flat, rowvar=False))
    top6 = vectors[:, np.argsort(values)[::-1][:6]]  # (1369, 6)
    test = held_out[0].reshape(300, -1)
    expected = (test - mean) @ top6 @ top6.T + mean  # (300, 1369)
    np.testing.assert_allclose(fit.mean, mean, atol=1e-12)
    np.testing.assert_allclose(
        np.sort(fit.eigenvalues[:6]), np.sort(values)[-6:], rtol=1e-8
    )

    scorer = make_scorer(build_pca(fit, latent=6))
    loss, reconstruction = score_images(scorer, held_out[0], batch_size=128)
    np.testing.assert_allclose(reconstruction.reshape(300, -1), expected, atol=2e-6)
    expected_loss = np.mean((test - expected) ** 2, axis=1)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-3, atol=1e-10)
    # The spectrum shortcut of the latent scan gives the same mean loss.
    shortcut = pca_losses(fit, [held_out[0]], [6])[6]
    assert shortcut == pytest.approx(expected_loss.mean(), rel=1e-6)


def test_save_load_gives_identical_scores(tmp_path, held_out):
    rng = np.random.default_rng(4)
    scorer = make_scorer(build_pca(fit_pca([toy_images(200, "qcd", rng)]), 4))
    images = np.concatenate(held_out)[:100]
    loss, reconstruction = score_images(scorer, images, batch_size=40)
    folder = save_model(scorer, tmp_path / "pca", {"architecture": "pca"})

    assert sorted(p.name for p in folder.iterdir()) == [
        "card.json",
        "model.keras",
        "saved_model",
    ]
    assert load_card(folder) == {"architecture": "pca"}
    for backend in ("keras", "saved_model"):
        loaded = load_scorer(folder, backend=backend)
        loss2, reconstruction2 = score_images(loaded, images, batch_size=40)
        np.testing.assert_array_equal(loss2, loss)
        np.testing.assert_array_equal(reconstruction2, reconstruction)


def test_keras_file_loads_without_custom_objects(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    scorer = make_scorer(build_pca(fit_pca([toy_images(50, "qcd", rng)]), 2))
    folder = save_model(scorer, tmp_path / "m", {})
    loaded = tf.keras.models.load_model(folder / "model.keras")
    outputs = loaded(np.zeros((2, 37, 37, 1), np.float32))
    assert outputs["loss"].shape == (2,)
    assert outputs["reconstruction"].shape == (2, 37, 37, 1)


def test_wrong_image_shape_names_both_shapes():
    rng = np.random.default_rng(6)
    scorer = make_scorer(build_pca(fit_pca([toy_images(50, "qcd", rng)]), 2))
    with pytest.raises(InputError, match=r"\(batch, 37, 37, 1\).*\(4, 40, 40, 1\)"):
        score_images(scorer, np.zeros((4, 40, 40, 1)))
    # (batch, 37, 37) gains the channel axis instead of failing.
    loss, _ = score_images(scorer, np.zeros((3, 37, 37)))
    assert loss.shape == (3,)


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="aejets train"):
        load_scorer(tmp_path / "nothing")


def test_training_reads_only_training_pool_and_splits_by_event(images_dir):
    data = prepare_training_data(images_dir, "qcd", validation_fraction=0.2)
    events = {"train": [], "validation": []}
    for side in events:
        for chunk in getattr(data, side):
            table = pq.ParquetFile(chunk.path).read_row_group(chunk.row_group)
            events[side] += table["event"].to_numpy()[chunk.rows].tolist()
    assert data.n_train + data.n_validation == 600  # the even events of 1200
    assert all(is_training(events["train"])) and all(is_training(events["validation"]))
    assert not set(events["train"]) & set(events["validation"])
    assert 0.1 < data.n_validation / 600 < 0.3
    # The plan is reproducible: same hash, same rows.
    again = prepare_training_data(images_dir, "qcd", validation_fraction=0.2)
    assert again.content_hash == data.content_hash


def test_contamination_records_signal_jets(images_dir):
    data = prepare_training_data(images_dir, "qcd", contamination=("top", 0.1), seed=7)
    record = data.contamination
    assert record["n_signal_jets"] == round(0.1 / 0.9 * 600)
    assert len(record["signal_events"]) == record["n_signal_jets"]
    assert all(is_training(record["signal_events"]))
    assert data.n_train + data.n_validation == 600 + record["n_signal_jets"]
    assert data.content_hash != prepare_training_data(images_dir, "qcd").content_hash
    assert model_name("cnn", ("top", 0.05)) == "cnn_top0.05"
    with pytest.raises(ConfigError, match="only 300 exist"):
        prepare_training_data(images_dir, "qcd", contamination=("top", 0.9))


def test_missing_dataset_lists_what_exists(images_dir):
    with pytest.raises(InputError, match="qcd, top.*aejets images --dataset gluino"):
        prepare_training_data(images_dir, "gluino")


def test_streamed_images_are_unit_sum(images_dir):
    data = prepare_training_data(images_dir, "top")
    batches = list(iter_images(data.train))
    assert all(b.shape[1:] == (37, 37, 1) for b in batches)
    sums = np.concatenate([b.sum(axis=(1, 2, 3)) for b in batches])
    np.testing.assert_allclose(sums, 1, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["pca", "dense", "cnn"])
def test_qcd_trained_model_reconstructs_qcd_better_than_top(
    architecture, images_dir, held_out, tmp_path
):
    folder, card = train_and_save(
        tmp_path,
        architecture,
        images_dir,
        "qcd",
        epochs=8 if architecture == "dense" else 3,
        preset="cpu",
        batch_size=32,
        seed=3,
    )
    qcd_loss, _ = score_images(load_scorer(folder), held_out[0])
    top_loss, _ = score_images(load_scorer(folder), held_out[1])
    assert qcd_loss.mean() < 0.5 * top_loss.mean()

    saved = json.loads((folder / "card.json").read_text())
    assert saved == card
    assert card["architecture"] == architecture and card["latent"] == 6
    assert card["training"]["datasets"] == ["qcd"]
    assert len(card["training"]["content_hash"]) == 64
    assert np.isfinite(card["final_validation_loss"])
    assert card["versions"]["tensorflow"]
    if architecture != "pca":
        assert len(card["history"]["loss"]) == card["epochs_run"] >= 1


def test_training_is_reproducible_with_a_seed(images_dir):
    kwargs = {"epochs": 1, "batch_size": 128, "seed": 11}
    _, first = train("dense", images_dir, "qcd", **kwargs)
    _, second = train("dense", images_dir, "qcd", **kwargs)
    assert first["history"] == second["history"]


def test_train_command_writes_model_folder_and_card(images_dir, tmp_path):
    from analysis.cli import main

    out = tmp_path / "models"
    argv = ["train", "--model", "pca", "--dataset", "qcd", "--images", str(images_dir)]
    code = main([*argv, "--contamination", "top:0.05", "--out", str(out)])
    assert code == 0
    card = load_card(out / "pca_top0.05")
    assert card["name"] == "pca_top0.05"
    assert card["contamination"]["signal"] == "top"
    assert card["contamination"]["n_signal_jets"] == round(0.05 / 0.95 * 600)
    assert card["training"]["datasets"] == ["qcd", "top"]

    assert main([*argv, "--contamination", "top", "--out", str(out)]) == 2
    assert main([*argv, "--latent-scan", "2,x", "--out", str(out)]) == 2


def test_latent_scan_writes_spectrum_and_losses(images_dir, tmp_path):
    from models.latent import latent_scan

    result = latent_scan(
        images_dir,
        "qcd",
        [1, 3],
        ("pca", "dense"),
        epochs=1,
        batch_size=128,
        out_dir=tmp_path,
    )
    assert (tmp_path / "latent_scan_pca_dense.png").stat().st_size > 0
    assert json.loads((tmp_path / "latent_scan_pca_dense.json").read_text()) == result
    eigenvalues = np.array(result["pca"]["eigenvalues"])
    assert np.all(np.diff(eigenvalues) <= 0)
    pca_loss = result["pca"]["validation_loss"]
    assert pca_loss[1] < pca_loss[0]  # more components, less loss
    assert len(result["dense"]["validation_loss"]) == 2


@pytest.fixture(scope="module")
def real_images_dir(tmp_path_factory):
    """Images of the shared generated samples (200 events each), built eagerly."""
    samples = session_samples(tmp_path_factory)
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    from processors.image_processor import ImageProcessor

    folder = tmp_path_factory.mktemp("real_images")
    for process in ("qcd", "top"):
        metadata = {"dataset": process, "process": process, "signal": process != "qcd"}
        for path in samples[process].files:
            events = NanoEventsFactory.from_root(
                {str(path): "Delphes"},
                schemaclass=DelphesSchema,
                mode="eager",
                metadata=metadata,
            ).events()
            ImageProcessor(out_dir=folder).process(events)
    return folder


def test_pca_on_real_qcd_jets_reconstructs_qcd_better_than_top(
    real_images_dir, tmp_path
):
    """Generated Pythia + detector jets: held-out (odd-event) QCD against top."""
    folder, card = train_and_save(tmp_path, "pca", real_images_dir, "qcd")
    assert card["training"]["n_train_jets"] >= 20
    scorer = load_scorer(folder)
    means = {}
    for dataset in ("qcd", "top"):
        table = pq.read_table(real_images_dir / dataset)
        held_out = ~is_training(table["event"].to_numpy())
        held_out &= table["truth_pass"].to_numpy()
        images = images_from_table(table["image"])[held_out]
        assert len(images) >= 10, dataset
        means[dataset] = score_images(scorer, images)[0].mean()
    assert means["qcd"] < 0.5 * means["top"]


def test_cnn_has_the_study_layout_and_counted_flops():
    from models.architectures import build_cnn, forward_flops

    cnn = build_cnn(latent=6, filters=128)
    shape = {layer.name: tuple(layer.output.shape[1:]) for layer in cnn.layers}
    assert shape["pad"] == (40, 40, 1)
    assert shape["encoder_pool2"] == (10, 10, 128)
    assert shape["latent"] == (6,)
    assert shape["decoder_expand"] == (12800,)
    assert shape["decoder_up2"] == (40, 40, 128)
    assert shape["crop"] == (37, 37, 1)
    assert shape["image"] == (37, 37, 1)
    # 2 x multiply-adds: convolutions at 40, 20, 10 (encoder) and 10, 20, 40
    # (decoder) pixels squared, the dense layers, and the mean-image offset.
    conv = 2 * 9 * (1600 * 128 + 400 * 128 * 128 + 100 * 128 * 128)
    dense = 2 * (12800 * 32 + 32 * 6 + 6 * 32 + 32 * 12800) + 2 * 1369
    assert forward_flops(cnn) == 2 * conv + dense
    sums = (
        cnn(np.random.default_rng(0).random((2, 37, 37, 1))).numpy().sum(axis=(1, 2, 3))
    )
    np.testing.assert_allclose(sums, 1, rtol=1e-5)
