"""Served inference: a real Triton server (pytriton, its own environment) against the
local scorers, jet by jet; an unreachable or stopped server; ``aejets serve``.

The server environment is created on first use (about a minute from the package
registry) and kept under ``$AEJETS_CACHE``; every test here needs it.
"""

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis import cli
from analysis.errors import ServingError
from models import serving
from models.serving import TritonServer, free_port, triton_server
from models.toy import toy_images
from processors.inference import LocalScorer, TritonScorer
from processors.score_processor import score_fileset
from tests.test_scores import (
    LOOSE,
    check_partitions_without_jets,
    real_fileset,
    tiny_models,
)


def served(test):
    """Mark a test that starts or queries a Triton server (so needs its environment)."""
    return pytest.mark.triton(pytest.mark.slow(test))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server_url(models_dir):
    with triton_server(models_dir, max_batch_size=256) as url:
        yield url


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(11)
    return np.concatenate([toy_images(60, "qcd", rng), toy_images(40, "top", rng)])


@served
def test_served_scores_equal_local_scores(server_url, models_dir, images):
    for name in ("pca", "dense"):
        local = ak.to_numpy(LocalScorer(models_dir / name)(ak.Array(images)))
        served = TritonScorer(server_url, name, batch_size=32, concurrency=3)(
            ak.Array(images)
        )
        np.testing.assert_allclose(ak.to_numpy(served), local, rtol=1e-5, atol=0)
        assert ak.to_numpy(TritonScorer(server_url, name)(images[:0])).shape == (0,)


@served
def test_served_and_local_fileset_agree_jet_by_jet(
    server_url, models_dir, real_delphes_file, tmp_path
):
    fileset = real_fileset(real_delphes_file)
    outputs = {}
    for where, url in (("local", None), ("served", server_url)):
        histograms, report = score_fileset(
            fileset,
            models_dir,
            triton_url=url,
            jet_config=LOOSE,
            out_dir=tmp_path / where,
            step_size=9,
            workers=1,
            processes=False,
        )
        assert report["failures"] == []
        rows = pq.read_table(tmp_path / where / "ttbar").to_pylist()
        outputs[where] = histograms, {(r["event"], r["pt"]): r for r in rows}

    (local_hists, local_rows), (served_hists, served_rows) = outputs.values()
    assert served_rows.keys() == local_rows.keys() and len(local_rows) > 20
    for key, row in local_rows.items():
        for name in ("pca", "dense"):
            assert served_rows[key][f"score_{name}"] == pytest.approx(
                row[f"score_{name}"], rel=1e-5, abs=0
            )
    for name, hist in local_hists.items():
        np.testing.assert_allclose(
            served_hists[name].values(flow=True), hist.values(flow=True), rtol=1e-9
        )


@served
def test_served_partitions_without_jets(
    server_url, models_dir, real_delphes_file, tmp_path
):
    check_partitions_without_jets(real_delphes_file, models_dir, tmp_path, server_url)


@served
def test_unreachable_server_is_an_error_naming_the_url(models_dir, images):
    url = f"triton+grpc://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(
        ServingError, match=rf"{re.escape(url)} unreachable .* after 4 attempts"
    ):
        TritonScorer(url, "pca", retries=3)(ak.Array(images))
    assert time.monotonic() - started < 10  # bounded retries, no hang


@served
def test_server_stopped_mid_run_is_an_error_not_zeros(models_dir, images):
    server = TritonServer(models_dir)
    server.start()
    try:
        scorer = TritonScorer(
            server.url, "pca", batch_size=20, concurrency=1, retries=2
        )
        requests = []
        send = scorer.run_infer

        def stop_after_first_batch(inputs, outputs, attempt=0):
            result = send(inputs, outputs)
            if not requests:
                server.stop()
            requests.append(1)
            return result

        scorer.run_infer = stop_after_first_batch
        with pytest.raises(ServingError, match=f"{re.escape(server.url)} unreachable"):
            scorer(ak.Array(images))
        assert len(requests) == 1
    finally:
        server.stop()


@served
def test_server_stopped_before_compute_fails_the_whole_fileset(
    models_dir, real_delphes_file, tmp_path, monkeypatch
):
    """Graphs are built and optimized while the server answers; it is gone when the
    workers run them: the run fails, it does not skip the file or fill zeros."""
    import dask

    server = TritonServer(models_dir)
    server.start()
    optimize = dask.optimize

    def optimize_then_stop(*args, **kwargs):
        optimized = optimize(*args, **kwargs)
        server.stop()
        return optimized

    monkeypatch.setattr(dask, "optimize", optimize_then_stop)
    try:
        with pytest.raises(
            ServingError, match=f"'ttbar'.*{re.escape(server.url)} unreachable"
        ):
            score_fileset(
                real_fileset(real_delphes_file),
                models_dir,
                names=["pca"],
                triton_url=server.url,
                jet_config=LOOSE,
                out_dir=tmp_path,
                workers=1,
                processes=False,
            )
    finally:
        server.stop()
    assert not list(tmp_path.glob("ttbar/part-*.parquet"))


@served
def test_serve_command_answers_health_and_stops_on_sigterm(models_dir, tmp_path):
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "analysis.cli", "serve", "--models"]
    command += [str(models_dir), "--grpc-port", str(grpc_port)]
    command += ["--http-port", str(http_port), "--log", str(tmp_path / "triton.log")]
    with open(log, "w") as out:
        serve = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"triton+grpc://127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 240
        while f"--triton {url}" not in log.read_text():
            assert serve.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        health = f"http://127.0.0.1:{http_port}/v2/health/ready"
        with urllib.request.urlopen(health, timeout=5) as response:
            assert response.status == 200

        # A second server on the same port is refused before it starts.
        argv = ["serve", "--models", str(models_dir), "--grpc-port", str(grpc_port)]
        assert cli.main([*argv, "--http-port", str(free_port())]) == 2

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
    finally:
        if serve.poll() is None:  # a failed check: stop the server all the same
            serve.terminate()
            serve.wait(60)
    assert "stopped" in log.read_text()
    with socket.socket() as sock:  # the server released its port
        sock.bind(("127.0.0.1", grpc_port))


@served
def test_a_server_with_other_models_under_the_same_names_is_refused(
    server_url, models_dir, tmp_path, real_delphes_file
):
    # The server serves models_dir; the user points --models at another folder
    # whose "pca" was fitted on other jets: its scores would be silently wrong.
    from models.io import save_model
    from models.pca import build_pca, fit_pca
    from models.scorer import make_scorer

    other = tmp_path / "other"
    rng = np.random.default_rng(99)
    pca = build_pca(fit_pca([toy_images(200, "top", rng)]), 4)
    save_model(make_scorer(pca), other / "pca", {"architecture": "pca"})
    with pytest.raises(ServingError, match=r"serves a model 'pca' that is not the one"):
        score_fileset(
            real_fileset(real_delphes_file),
            other,
            names=["pca"],
            triton_url=server_url,
            jet_config=LOOSE,
            workers=1,
            processes=False,
        )


@served
def test_unknown_model_is_refused_at_once(server_url, images):
    started = time.monotonic()
    with pytest.raises(ServingError, match="refused metadata of model 'cnn'"):
        TritonScorer(server_url, "cnn")(images)
    assert time.monotonic() - started < 2  # not retried: the server answered


def test_port_in_use_is_refused_before_anything_starts(models_dir, monkeypatch):
    monkeypatch.setattr(serving, "ensure_server_env", pytest.fail)  # never reached
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            ServingError, match=f"grpc port {port} on 127.0.0.1 is in use"
        ):
            TritonServer(models_dir, grpc_port=port).start()
        with pytest.raises(ServingError, match=f"http port {port} .* --http-port"):
            TritonServer(models_dir, http_port=port).start()


def test_server_env_is_made_once_and_remade_when_requirements_change(
    tmp_path, monkeypatch
):
    """Parallel callers wait on the lock; the marker file records what is installed."""
    import threading

    made = []

    def fake_create(env_dir, requirements, progress):
        made.append(requirements)
        time.sleep(0.2)  # a slow creation: the other threads must wait, not redo it
        env_dir.mkdir(parents=True, exist_ok=True)
        python = env_dir / "bin" / "python"
        return {"python": str(python), "libdir": "/lib", "requirements": requirements}

    monkeypatch.setenv("AEJETS_TRITON_ENV", str(tmp_path / "env"))
    monkeypatch.setattr(serving, "_create_env", fake_create)
    monkeypatch.setattr(serving, "server_requirements", lambda: ["a==1"])
    threads = [threading.Thread(target=serving.ensure_server_env) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == [["a==1"]]
    assert serving.ensure_server_env() == (tmp_path / "env" / "bin" / "python", "/lib")

    monkeypatch.setattr(serving, "server_requirements", lambda: ["a==2"])
    serving.ensure_server_env()
    assert made == [["a==1"], ["a==2"]]
