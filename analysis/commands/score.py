"""`aejets score`: the anomaly score of every selected jet, as Parquet and histograms."""

import logging
import pickle
from pathlib import Path

from analysis.commands.images import add_cluster_options, add_jet_options
from analysis.errors import ConfigError, InputError, OutputError

log = logging.getLogger(__name__)

# Per-file outputs of completed files, for --resume (processors.cache).
CACHE_DIR = ".cache"


def register(subparsers):
    parser = subparsers.add_parser(
        "score",
        help="score every selected jet with the trained models (locally or on Triton)",
        description=(
            "Cluster and select the fat jets of each DATASET like 'aejets images', "
            "compute the reconstruction loss of every model under MODELS as a column "
            "(in the dask workers, or on the Triton server given with --triton), and "
            "write OUT/<dataset>/part-*.parquet (one row per jet: the jet fields of "
            "'aejets images' without the image, score_<model> per model and "
            "'training'), OUT/histograms.pkl (filled with evaluation jets only, "
            "weighted xsec/sum of weights) and OUT/report.json."
        ),
    )
    parser.add_argument("--fileset", required=True, type=Path, help="datasets.json")
    parser.add_argument(
        "--dataset",
        required=True,
        action="append",
        help="dataset name in the fileset (repeat for several)",
    )
    parser.add_argument(
        "--models", required=True, type=Path, help="folder of trained models"
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="model_names",
        help="score with this model only (repeat; default: every model in --models)",
    )
    parser.add_argument(
        "--triton",
        metavar="URL",
        help="Triton server serving the models by name, version 1, as "
        "triton+grpc://HOST:PORT (the URL 'aejets serve' logs)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--max-events", type=int, help="first N events of each dataset only"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="jets per model call or request (default 1024)",
    )
    parser.add_argument(
        "--unit-weight",
        action="store_true",
        help="fill histograms with weight 1 instead of xsec_pb/sum_weights",
    )
    add_jet_options(parser)
    add_cluster_options(parser, "events per chunk")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="after a failed run (a server or workers gone): keep the outputs of "
        "the files it completed (OUT/.cache, OUT/<dataset>/part-*) and compute "
        "only the files still missing",
    )
    parser.set_defaults(func=run)


def run(args):
    from tqdm import tqdm

    from analysis.commands.images import jet_config
    from analysis.fileset import load_fileset, write_json_atomic
    from processors.cache import OutputCache
    from processors.image_processor import clear_parts
    from processors.score_processor import score_fileset

    if args.step_size < 1 or args.workers < 1 or args.batch_size < 1:
        raise ConfigError("--step-size, --workers and --batch-size must be at least 1")
    if args.max_events is not None and args.max_events < 1:
        raise ConfigError(f"--max-events must be at least 1, got {args.max_events}")
    config = jet_config(args)
    fileset = load_fileset(args.fileset, args.dataset)
    cache_dir = args.out / CACHE_DIR
    if not args.resume:  # a fresh run; the part files keep their chunk names
        OutputCache(cache_dir, None).clear()
        for dataset in fileset:
            clear_parts(args.out / dataset)

    with tqdm(desc="score", unit="file") as bar:

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        histograms, report = score_fileset(
            fileset,
            args.models,
            triton_url=args.triton,
            names=args.model_names,
            jet_config=config,
            unit_weight=args.unit_weight,
            out_dir=args.out,
            batch_size=args.batch_size,
            max_events=args.max_events,
            step_size=args.step_size,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=progress,
            cache_dir=cache_dir,
        )
    if report["cached"]:
        log.info("%d file(s) taken from %s", len(report["cached"]), cache_dir)
    _write_histograms(args.out / "histograms.pkl", histograms)
    write_json_atomic(args.out / "report.json", report)
    for dataset, counts in sorted(report["jets"].items()):
        log.info(
            "%s: %d jets scored, %d evaluation jets in the histograms",
            dataset,
            counts["selected"],
            counts["evaluation"],
        )
    for failure in report["failures"]:
        log.warning("failed: %s: %s", failure["file"], failure["reason"])
    log.info("wrote %s", args.out)
    _refuse_unreadable(report)
    return 0


def _refuse_unreadable(report):
    """An error (exit status 2) when a dataset gave no event: every file failed."""
    from processors.runner import unreadable_message

    messages = [
        unreadable_message(
            dataset, [f for f in report["failures"] if f["dataset"] == dataset]
        )
        for dataset in report["unreadable"]
    ]
    if messages:
        raise InputError("\n".join(messages))


def _write_histograms(path, histograms):
    partial = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            pickle.dump(histograms, out)
        partial.replace(path)
    except OSError as err:
        raise OutputError(
            f"cannot write {path}: {err.strerror or err}; choose a writable --out"
        ) from err
