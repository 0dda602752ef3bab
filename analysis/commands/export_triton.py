"""`aejets export-triton`: a Triton model repository of the trained models."""

import logging
from pathlib import Path

from analysis.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "export-triton",
        help="write a Triton model repository (TensorFlow SavedModel backend)",
        description=(
            "Write REPO/<name>/config.pbtxt and REPO/<name>/1/model.savedmodel/ for "
            "every model under MODELS: a model repository for an existing Triton "
            "server (tritonserver --model-repository REPO), such as an analysis "
            "facility's, with the input and output names and shapes read from each "
            "SavedModel and dynamic batching."
        ),
    )
    parser.add_argument(
        "--models", required=True, type=Path, help="folder of trained models"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="repository folder (replaced)"
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=4096,
        help="max_batch_size of every model (default 4096)",
    )
    parser.set_defaults(func=run)


def run(args):
    from models.triton_repo import export_repository

    if args.max_batch_size < 1:
        raise ConfigError(
            f"--max-batch-size must be positive, got {args.max_batch_size}"
        )
    names = export_repository(args.models, args.out, args.max_batch_size)
    log.info("wrote %s with %s", args.out, ", ".join(names))
    log.info("serve it with: tritonserver --model-repository %s", args.out.resolve())
    return 0
