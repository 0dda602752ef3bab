"""`aejets serve`: a Triton Inference Server for the trained models, until stopped."""

import logging
import signal
from pathlib import Path

from analysis.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "serve",
        help="serve the trained models on a local Triton Inference Server",
        description=(
            "Start a Triton Inference Server on 127.0.0.1 serving every model under "
            "MODELS (each <name>/saved_model) as <name>, version 1, with dynamic "
            "batching, on the GPU when one is visible. The server runs from its own "
            "Python environment (nvidia-pytriton needs numpy < 2), created on first "
            "use under $AEJETS_CACHE/triton-env (about a minute). Logs the URL to "
            "give 'aejets score --triton' once every model is ready; Ctrl-C or "
            "SIGTERM stops it."
        ),
    )
    parser.add_argument(
        "--models", required=True, type=Path, help="folder of trained models"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=8001, help="gRPC port (default 8001)"
    )
    parser.add_argument(
        "--http-port", type=int, default=8000, help="HTTP port (default 8000)"
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=4096,
        help="largest batch the server runs at once (default 4096)",
    )
    parser.add_argument(
        "--log", type=Path, help="server log file (default: a temporary file)"
    )
    parser.set_defaults(func=run)


def run(args):
    from models.serving import TritonServer

    for name in ("grpc_port", "http_port"):
        port = getattr(args, name)
        if not 0 < port < 65536:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be a TCP port in 1..65535, got {port}")
    if args.max_batch_size < 1:
        raise ConfigError(
            f"--max-batch-size must be positive, got {args.max_batch_size}"
        )
    server = TritonServer(
        args.models,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        max_batch_size=args.max_batch_size,
        log_path=args.log,
    )

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        server.start()
        log.info("serving %s at %s", ", ".join(server.names), server.url)
        log.info(
            "health: %s/v2/health/ready; log: %s", server.http_url, server.log_path
        )
        log.info("score with: aejets score ... --triton %s", server.url)
        code = server.wait()
        log.error("Triton server exited with code %d; log: %s", code, server.log_path)
        return 2
    except KeyboardInterrupt:
        log.info("stopping the Triton server")
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
