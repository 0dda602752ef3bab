"""The ``aejets`` command line: one subcommand per stage of the chain.

Each subcommand lives in ``analysis.commands.<name>`` and provides
``register(subparsers)``, which adds its parser and sets ``func``; the module is
imported only when the command line is built, and heavy libraries (TensorFlow,
Pythia, dask) are imported inside ``func`` so that ``--help`` stays fast.
"""

import argparse
import importlib
import logging
import os
import sys

from analysis import __version__
from analysis.errors import AejetsError

log = logging.getLogger("aejets")

COMMANDS = (
    "generate",
    "images",
    "train",
    "score",
    "serve",
    "export_triton",
    "run",
    "report",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="aejets",
        description=(
            "Search for anomalous jets with autoencoders: generate Delphes samples, "
            "build jet images, train, score and write the results."
        ),
    )
    parser.add_argument("--version", action="version", version=f"aejets {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debugging messages"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"analysis.commands.{name}")
        module.register(subparsers)
    return parser


def configure_logging(verbose=False):
    # Set before TensorFlow and distributed are imported (here and in the dask
    # workers, which inherit the environment): their start-up chatter would bury
    # the progress bars.
    if not verbose:
        # 3: without a GPU, TensorFlow logs a failed CUDA initialization as an
        # error on every start; real failures still raise.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Third-party libraries are chatty at INFO; keep their warnings only.
    for name in ("distributed", "tensorflow", "absl", "h5py", "numba", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args) or 0
    except AejetsError as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; completed outputs are kept, partial ones removed")
        return 130


if __name__ == "__main__":
    sys.exit(main())
