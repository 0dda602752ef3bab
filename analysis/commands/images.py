"""`aejets images`: fat jets and preprocessed 37x37 jet images of one dataset."""

import logging
from pathlib import Path

from analysis.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "images",
        help="recluster fat jets and write their jet images as Parquet",
        description=(
            "Read the Delphes files of DATASET, cluster anti-kT fat jets from the "
            "energy-flow objects (or towers), select them, flag signal truth, and "
            "write one row per jet with its preprocessed 37x37 image to "
            "OUT/<dataset>/part-*.parquet (one file per chunk), plus "
            "OUT/<dataset>/report.json with the counts and every failed file or "
            "chunk. Part files of an earlier run of the dataset are replaced. Runs "
            "on a local dask cluster, or on --scheduler."
        ),
    )
    parser.add_argument("--fileset", required=True, type=Path, help="datasets.json")
    parser.add_argument("--dataset", required=True, help="dataset name in the fileset")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_jet_options(parser)
    add_cluster_options(parser, "events per chunk, i.e. per Parquet file")
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first unreadable file or chunk (exit status 2)",
    )
    parser.set_defaults(func=run)


def add_jet_options(parser):
    """The fat-jet options, shared by 'aejets images' and 'aejets score'."""
    parser.add_argument(
        "--pt-range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        default=(800.0, 900.0),
        help="jet pT window in GeV (default 800 900)",
    )
    parser.add_argument(
        "--eta-max", type=float, default=1.0, help="max abs(jet eta) (default 1)"
    )
    parser.add_argument(
        "--radius", type=float, default=1.5, help="anti-kT radius (default 1.5)"
    )
    parser.add_argument(
        "--max-jets",
        type=int,
        default=1,
        help="leading jets per event to consider (default 1; 0: all)",
    )
    parser.add_argument(
        "--constituents",
        choices=("eflow", "towers"),
        default="eflow",
        help="energy-flow objects (default) or calorimeter towers",
    )


def add_cluster_options(parser, step_help):
    """Chunking and the dask cluster, shared by 'aejets images' and 'aejets score'."""
    parser.add_argument(
        "--step-size", type=int, default=5000, help=f"{step_help} (default 5000)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="local dask workers (default 2)"
    )
    parser.add_argument(
        "--scheduler", help="address of a running dask scheduler (default: local)"
    )


def jet_config(args):
    """The validated jet configuration from the command-line options."""
    from pydantic import ValidationError

    from processors.jets import JetConfig

    try:
        return JetConfig(
            constituents=args.constituents,
            radius=args.radius,
            pt_range=tuple(args.pt_range),
            eta_max=args.eta_max,
            max_jets=args.max_jets or None,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid jet settings: {problems}") from err


def run(args):
    from tqdm import tqdm

    from analysis.fileset import load_fileset
    from processors.image_processor import ImageProcessor, clear_parts, write_report
    from processors.runner import run as run_processor
    from processors.runner import unreadable_datasets, unreadable_message

    if args.step_size < 1 or args.workers < 1:
        raise ConfigError("--step-size and --workers must be at least 1")
    config = jet_config(args)
    fileset = load_fileset(args.fileset, [args.dataset])
    folder = args.out / args.dataset
    clear_parts(folder)

    with tqdm(desc=f"images {args.dataset}", unit="file") as bar:

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        result = run_processor(
            fileset,
            ImageProcessor(config, out_dir=args.out),
            scheduler=args.scheduler,
            workers=args.workers,
            step_size=args.step_size,
            fail_fast=args.fail_fast,
            progress=progress,
        )
    report = write_report(folder, args.dataset, result, config)
    counts = report["counts"]
    log.info(
        "%s: %d events, %d jets selected (%d failing truth), %d constituents dropped",
        args.dataset,
        counts["events"],
        counts["jets_selected"],
        counts["jets_failing_truth"],
        counts["constituents_dropped"],
    )
    for failure in report["failures"]:
        log.warning("failed: %s: %s", failure["file"], failure["reason"])
    log.info("wrote %s", folder)
    unreadable = unreadable_datasets(fileset, result)
    if args.dataset in unreadable:  # the report above keeps every reason too
        raise InputError(unreadable_message(args.dataset, unreadable[args.dataset]))
    return 0
