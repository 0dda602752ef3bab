"""The anomaly score as a column: jet images in, reconstruction loss out.

Two ``coffea.ml_tools`` wrappers with one interface, ``scorer(images) -> loss``, on
awkward or dask-awkward images of shape (jets, 37, 37):

- :class:`LocalScorer` (``tf_wrapper``) runs the Keras scorer ``MODELS/<name>/model.keras``
  in the worker; TensorFlow takes a GPU when one is visible.
- :class:`TritonScorer` (``triton_wrapper``) sends the images to a Triton server
  (``aejets serve``) that serves the model under its folder name, version 1.

Both follow coffea's split: ``prepare_awkward`` (awkward) -> ``numpy_call`` (numpy,
batched so that memory stays bounded) -> ``postprocess_awkward``; the model or the
client is created on first use in the worker and never pickled. Building and
optimizing a dask graph already calls the model once on a one-jet stand-in (how
coffea learns the output type), so the model file or the server must be reachable
from the client then too.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from coffea.ml_tools import tf_wrapper, triton_wrapper
from coffea.ml_tools.helper import nonserializable_attribute

from analysis.errors import ConfigError, InputError, ServingError

__all__ = [
    "IMAGE_SHAPE",
    "LocalScorer",
    "TritonScorer",
    "check_served_models",
    "make_scorers",
    "triton_address",
]

log = logging.getLogger(__name__)

IMAGE_SHAPE = (37, 37)
TRITON_SCHEMES = ("triton+grpc", "triton+http")


def triton_address(url):
    """``(scheme, "HOST:PORT")`` of a Triton URL ``triton+grpc://HOST:PORT``.

    The scheme is one of :data:`TRITON_SCHEMES`, the host is present and the port
    is explicit and in 1..65535 (the client would otherwise take port 443, or a
    port number modulo 65536); anything else is a :class:`ConfigError`.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
        problem = _triton_url_problem(parts, parts.port)
    except ValueError as err:  # .port: not a number, or above 65535
        problem = f"the port must be a number from 1 to 65535 ({err})"
    if problem is not None:
        raise ConfigError(
            f"Triton URL {url!r}: {problem}; write it as triton+grpc://HOST:PORT "
            "(the URL 'aejets serve' logs)"
        )
    return parts.scheme, parts.netloc


def _triton_url_problem(parts, port):
    """What is wrong with a split Triton URL, or None."""
    if parts.scheme not in TRITON_SCHEMES:
        return f"the scheme must be one of {', '.join(TRITON_SCHEMES)}"
    if not parts.hostname:
        return "it names no host"
    if port is None or not 1 <= port <= 65535:
        return "the port must be given, from 1 to 65535"
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        return "it must hold only the host and the port"
    return None


def _as_model_batch(images):
    """float32 (jets, 37, 37, 1) from (jets, 37, 37) or (jets, 37, 37, 1)."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:] not in (IMAGE_SHAPE, (*IMAGE_SHAPE, 1)):
        raise InputError(
            f"jet images must have shape (jets, 37, 37), got {images.shape}; "
            "build them with processors.images (37 x 37 pixels)"
        )
    return images.reshape(len(images), *IMAGE_SHAPE, 1)  # (jets, 37, 37, 1)


def _grow_gpu_memory():
    """Let TensorFlow take GPU memory as needed, so that several dask workers can
    share one GPU (by default the first process takes nearly all of it)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TensorFlow already holds the GPU in this process
            log.debug("GPU memory growth not set: %s already initialized", gpu.name)


class LocalScorer(tf_wrapper):
    """Loss of each jet from the Keras scorer in ``model_dir``, in this process.

    ``batch_size`` jets go through the model at a time, which bounds the memory
    TensorFlow takes (CPU or GPU) whatever the size of a partition.
    """

    def __init__(self, model_dir, batch_size=1024):
        model_dir = Path(model_dir)
        model_file = model_dir / "model.keras"
        if not model_file.is_file():
            raise InputError(
                f"model folder {model_dir} has no model.keras; train it with "
                "'aejets train --out DIR' and pass that DIR with --models"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        super().__init__(str(model_file.resolve()))
        # "predict" joins "model" among the attributes made on first use, not pickled.
        nonserializable_attribute.__init__(self, ["model", "predict"])
        self.name = model_dir.name
        self.batch_size = batch_size

    def _create_model(self):
        _grow_gpu_memory()
        return super()._create_model()

    def _create_predict(self):
        """The loss of one batch, traced once for any batch size."""
        import tensorflow as tf

        model = self.model
        spec = tf.TensorSpec((None, *IMAGE_SHAPE, 1), tf.float32)

        @tf.function(input_signature=[spec], autograph=False)
        def predict(images):  # (batch, 37, 37, 1) -> (batch,)
            return model(images, training=False)["loss"]

        return predict

    def prepare_awkward(self, images):
        return (images,), {}

    def validate_numpy_input(self, images):
        _as_model_batch(images)

    def numpy_call(self, images):
        images = _as_model_batch(images)  # (jets, 37, 37, 1)
        losses = [np.zeros(0, np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]  # (batch, 37, 37, 1)
            losses.append(self.predict(batch).numpy())  # (batch,)
        return np.concatenate(losses)  # (jets,)


class TritonScorer(triton_wrapper):
    """Loss of each jet from ``model`` (version ``version``) on a Triton server.

    ``server_url`` is ``triton+grpc://HOST:PORT`` (or ``triton+http://``), checked
    by :func:`triton_address`. Requests
    carry ``batch_size`` jets, ``concurrency`` of them in flight at once; the
    server's dynamic batcher may merge them. An
    unreachable server is retried ``retries`` times with growing waits (about
    6 s in all by default), then :class:`ServingError` names the URL: no jet ever
    gets a made-up score.
    """

    def __init__(
        self,
        server_url,
        model,
        version=1,
        batch_size=1024,
        concurrency=2,
        retries=5,
        timeout_s=120,
    ):
        scheme, address = triton_address(server_url)
        if batch_size < 1 or concurrency < 1:
            raise ValueError(
                f"batch_size and concurrency must be positive, got {batch_size} "
                f"and {concurrency}"
            )
        client_args = {"ssl": False} if scheme == "triton+grpc" else None
        model_url = f"{scheme}://{address}/{model}/{version}"
        super().__init__(model_url, client_args=client_args, batch_size=batch_size)
        self.name = model
        self.server_url = server_url
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s

    def _with_retries(self, what, call):
        """``call()``, retried on connection errors; ServingError when they persist.

        The errors are raised ``from None``: the message carries the client's error,
        whose gRPC objects cannot be pickled, and dask pickles an error with its
        cause, which would turn a ServingError into an anonymous Exception.
        """
        from tritonclient.utils import InferenceServerException

        wait = 0.1
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (InferenceServerException, OSError) as err:
                status = getattr(err, "status", lambda: None)()
                if status and "UNAVAILABLE" not in status and "DEADLINE" not in status:
                    raise ServingError(
                        f"Triton server {self.server_url} refused {what} of model "
                        f"{self.model!r} version {self.version}: {err}; check that "
                        "the server serves this model ('aejets serve --models DIR')"
                    ) from None
                last = err
            if attempt < self.retries:
                time.sleep(wait)
                wait *= 2
        raise ServingError(
            f"Triton server {self.server_url} unreachable for {what} of model "
            f"{self.model!r} after {self.retries + 1} attempts: {last}; start it with "
            "'aejets serve --models DIR' or pass the URL it logs with --triton"
        ) from None

    def _create_model_metadata(self):
        return self._with_retries(
            "metadata",
            lambda: self.client.get_model_metadata(
                self.model, self.version, as_json=True
            ),
        )

    def run_infer(self, inputs, outputs, attempt=0):
        return self._with_retries(
            "inference",
            lambda: self.client.infer(
                self.model,
                model_version=self.version,
                inputs=inputs,
                outputs=outputs,
                client_timeout=self.timeout_s,
            ),
        )

    def __call__(self, images):
        if self.get_awkward_lib(images) is None:  # numpy in, numpy out
            outputs = self._call_numpy(["loss"], {"images": np.asarray(images)})
            return outputs["loss"]
        return super().__call__(images)

    def prepare_awkward(self, images):
        return (), {"output_list": ["loss"], "input_dict": {"images": images}}

    def validate_numpy_input(self, output_list, input_dict):
        images = _as_model_batch(input_dict["images"])  # (jets, 37, 37, 1)
        super().validate_numpy_input(output_list, {"images": images})

    def numpy_call(self, output_list, input_dict):
        images = _as_model_batch(input_dict["images"])  # (jets, 37, 37, 1)
        # Unlike the base class, the last batch is sent as it is, not padded: the
        # server batches dynamically.
        batches = [
            images[start : start + self.batch_size]  # (batch, 37, 37, 1)
            for start in range(0, len(images), self.batch_size)
        ]
        if self.concurrency > 1 and len(batches) > 1:
            with ThreadPoolExecutor(self.concurrency) as pool:
                losses = list(pool.map(self._infer_loss, batches))
        else:
            losses = [self._infer_loss(batch) for batch in batches]
        return {"loss": np.concatenate([np.zeros(0, np.float32), *losses])}  # (jets,)

    def _infer_loss(self, batch):
        """(batch,) loss of one request of (batch, 37, 37, 1) images."""
        request = self.pmod.InferInput("images", list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        requested = [self.pmod.InferRequestedOutput("loss")]
        result = self.run_infer([request], requested)
        return result.as_numpy("loss").reshape(-1)  # (batch, 1) -> (batch,)

    def postprocess_awkward(self, return_array, images):
        return return_array["loss"]


def make_scorers(models_dir, names=None, triton_url=None, batch_size=1024):
    """One scorer per model under ``models_dir`` (or per name in ``names``).

    With ``triton_url`` the scorers query that server, else they run locally.
    """
    models_dir = Path(models_dir)
    if names is None:
        names = _model_names(models_dir)
    if triton_url is not None:
        return {
            name: TritonScorer(triton_url, name, batch_size=batch_size)
            for name in names
        }
    return {
        name: LocalScorer(models_dir / name, batch_size=batch_size) for name in names
    }


def check_served_models(models_dir, served, rtol=1e-4):
    """Each served model scores probe images as the model of that name under
    ``models_dir`` does; else a ServingError: a server started on another models
    folder would otherwise score with other models under the same names."""
    rng = np.random.default_rng(7)
    probe = rng.random((8, *IMAGE_SHAPE, 1), dtype=np.float32) ** 8
    probe /= probe.sum(axis=(1, 2, 3), keepdims=True)  # (8, 37, 37, 1), like jets
    for name, scorer in served.items():
        local = np.asarray(LocalScorer(Path(models_dir) / name)(probe))  # (8,)
        remote = np.asarray(scorer(probe), dtype=np.float64)  # (8,)
        worst = float(np.max(np.abs(remote - local) / np.maximum(np.abs(local), 1e-30)))
        if not worst <= rtol:
            raise ServingError(
                f"Triton server {scorer.server_url} serves a model {name!r} that is not "
                f"the one in {Path(models_dir) / name} (scores of probe images differ "
                f"by {worst:.1e} relative); serve this folder with 'aejets serve "
                "--models DIR', or pass the folder the server was started on with "
                "--models"
            )


def _model_names(models_dir):
    if not models_dir.is_dir():
        raise InputError(
            f"models folder {models_dir} does not exist; pass the --out folder of "
            "'aejets train' with --models"
        )
    names = sorted(
        p.name for p in models_dir.iterdir() if (p / "model.keras").is_file()
    )
    if not names:
        raise InputError(
            f"models folder {models_dir} has no <name>/model.keras; pass the --out "
            "folder of 'aejets train' with --models"
        )
    return names
