"""Serve every scorer under a models folder on a Triton Inference Server.

Run by :mod:`models.serving` with the Python of the server environment (pytriton,
numpy < 2, TensorFlow), never imported by the analysis: it imports nothing of this
project, so that nothing here needs numpy 2. Each ``MODELS/<name>/saved_model`` is
bound under ``<name>``, version 1, with dynamic batching::

    images (batch, 37, 37, 1) float32 -> loss (batch, 1), reconstruction (batch, 37, 37, 1)

``loss`` carries a trailing axis of one because a batched Triton tensor needs at
least one dimension besides the batch.
"""

import argparse
import ctypes
import logging
import signal
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy

log = logging.getLogger("aejets.triton")

IMAGE_SHAPE = (37, 37, 1)
READY_LINE = "aejets-triton-ready"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--names", nargs="+", required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=4096)
    parser.add_argument("--queue-delay-us", type=int, default=200)
    return parser.parse_args(argv)


def use_gpu_memory_on_demand():
    """Let TensorFlow grow GPU memory as needed instead of taking all of it."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    log.info("TensorFlow devices: %s", [d.name for d in gpus] or ["CPU"])


def make_infer(saved_model_dir):
    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures["serving_default"]

    @batch
    def infer(images):
        outputs = signature(images=tf.constant(images))  # (batch, 37, 37, 1)
        loss = outputs["loss"].numpy().reshape(-1, 1)  # (batch,) -> (batch, 1)
        return {"loss": loss, "reconstruction": outputs["reconstruction"].numpy()}

    infer.saved_model = loaded  # keep the variables alive with the function
    return infer


def bind_models(triton, models_dir, names, max_batch_size, queue_delay_us):
    config = ModelConfig(
        batching=True,
        max_batch_size=max_batch_size,
        batcher=DynamicBatcher(
            max_queue_delay_microseconds=queue_delay_us,
            preferred_batch_size=[max_batch_size],
        ),
    )
    for name in names:
        triton.bind(
            model_name=name,
            infer_func=make_infer(models_dir / name / "saved_model"),
            inputs=[Tensor(name="images", dtype=np.float32, shape=IMAGE_SHAPE)],
            outputs=[
                Tensor(name="loss", dtype=np.float32, shape=(1,)),
                Tensor(name="reconstruction", dtype=np.float32, shape=IMAGE_SHAPE),
            ],
            config=config,
            strict=True,
        )
        log.info("bound model %s (version 1)", name)


def stop_on_sigterm():
    """SIGTERM stops the server like Ctrl-C: pytriton unloads models and cleans up.

    The parent's death sends SIGTERM too (Linux), so that a killed ``aejets serve``
    or test run leaves no server behind.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop_on_sigterm()
    use_gpu_memory_on_demand()
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        allow_metrics=False,
        strict_readiness=True,
        exit_timeout_secs=5,
    )
    # Models are written to a local model store before the server starts, so that
    # /v2/health/ready answers only once every model is loaded.
    policy = TritonLifecyclePolicy(
        launch_triton_on_startup=False, local_model_store=True
    )
    with Triton(config=config, triton_lifecycle_policy=policy) as triton:
        bind_models(
            triton, args.models, args.names, args.max_batch_size, args.queue_delay_us
        )
        triton.run()  # starts the server; returns once every model is loaded
        print(READY_LINE, flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
