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
from models.serving import TritonServer, free_port, triton_server
from models.toy import toy_images
from processors.inference import LocalScorer, TritonScorer
from processors.score_processor import score_fileset
from tests.test_scores import LOOSE, real_fileset, tiny_models

pytestmark = [pytest.mark.triton, pytest.mark.slow]


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


def test_served_scores_equal_local_scores(server_url, models_dir, images):
    for name in ("pca", "dense"):
        local = ak.to_numpy(LocalScorer(models_dir / name)(ak.Array(images)))
        served = TritonScorer(server_url, name, batch_size=32)(ak.Array(images))
        np.testing.assert_allclose(ak.to_numpy(served), local, rtol=1e-5, atol=0)
        assert ak.to_numpy(TritonScorer(server_url, name)(images[:0])).shape == (0,)


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


def test_unreachable_server_is_an_error_naming_the_url(models_dir, images):
    url = f"triton+grpc://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(
        ServingError, match=rf"{re.escape(url)} unreachable .* after 4 attempts"
    ):
        TritonScorer(url, "pca", retries=3)(ak.Array(images))
    assert time.monotonic() - started < 10  # bounded retries, no hang


def test_server_stopped_mid_run_is_an_error_not_zeros(models_dir, images):
    server = TritonServer(models_dir)
    server.start()
    try:
        scorer = TritonScorer(server.url, "pca", batch_size=20, retries=2)
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
