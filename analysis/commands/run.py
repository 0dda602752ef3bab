"""`aejets run`: the whole chain, from datasets.json to the results folder."""

import contextlib
import logging
import time
from pathlib import Path

from analysis.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "run",
        help="the whole chain: samples, images, training, scores, results",
        description=(
            "Run the whole chain on the datasets of a fileset (datasets.json): "
            "generate missing samples, build jet images, train the models that are "
            "not trained yet, score every dataset and write the results folder. "
            "Completed steps are reused, so a rerun after an interruption computes "
            "only what is missing."
        ),
    )
    parser.add_argument(
        "--profile",
        default="quick",
        help="quick (default; minutes on a laptop), paper (the study) or tiny",
    )
    parser.add_argument("--config", type=Path, help="YAML/JSON overriding the profile")
    parser.add_argument(
        "--fileset",
        type=Path,
        help="the coffea fileset to run on (default: the configuration's, datasets.json)",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler",
        help="address of an existing dask scheduler, e.g. tls://localhost:8786; "
        "nothing is started locally",
    )
    cluster.add_argument(
        "--workers", type=int, default=2, help="local dask workers (default 2)"
    )
    parser.add_argument(
        "--triton",
        metavar="URL",
        help="score through a Triton server, triton+grpc://HOST:PORT serving the "
        "trained models by name; 'local' starts one on 127.0.0.1 for the scoring step",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("aejets-output"),
        help="output folder (default aejets-output)",
    )
    parser.add_argument(
        "--unit-weight",
        action="store_true",
        default=None,
        help="fill histograms with weight 1, for files without xsec_pb and "
        "sum_weights (S/B then compares jet counts, not cross sections)",
    )
    parser.set_defaults(func=run)


class _Bars:
    """tqdm bars for the stages; each accepts an increment or (done, total)."""

    def __init__(self):
        self._open = []

    def __call__(self, stage, total):
        from tqdm import tqdm

        bar = tqdm(total=total, desc=stage, unit="", leave=False, dynamic_ncols=True)
        self._open.append(bar)

        def update(*args):
            if len(args) == 1:
                bar.update(args[0])
            else:
                done, total = args
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

        return update

    def close(self):
        for bar in self._open:
            bar.close()
        self._open.clear()


@contextlib.contextmanager
def _step(name, bars):
    start = time.perf_counter()
    log.info("%s ...", name)
    try:
        yield
    finally:
        bars.close()
    log.info("%s done in %.0f s", name, time.perf_counter() - start)


def run(args):
    from analysis import pipeline
    from analysis.commands.report import summary_table
    from analysis.config import load_config
    from analysis.results import write_results
    from processors.runner import client_for
    from processors.score_processor import check_weights

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    config = load_config(
        args.profile, args.config, fileset=args.fileset, unit_weight=args.unit_weight
    )
    if not config.fileset.exists():
        raise ConfigError(
            f"fileset {config.fileset} does not exist; run from the repository root "
            "(where datasets.json is) or pass --fileset PATH"
        )
    paths = pipeline.RunPaths(args.out)
    bars = _Bars()
    start = time.perf_counter()
    log.info("profile %s, output in %s", config.profile, paths.out.resolve())

    with _step("samples", bars):
        fileset = pipeline.prepare_fileset(config, paths, bars)
    check_weights(fileset, config.unit_weight)  # before images and training
    with client_for(args.scheduler, workers=args.workers) as client:
        log.info("dask: %s", client.dashboard_link or client.scheduler.address)
        with _step("images", bars):
            image_reports = pipeline.build_images(config, fileset, paths, client, bars)
        with _step("training", bars):
            cards = pipeline.train_models(config, paths, bars)
            scan = pipeline.latent_scan(config, paths, bars)
        with _step("scores", bars), _triton(args.triton, paths) as url:
            histograms, score_report = pipeline.score(
                config, fileset, paths, client, url, bars
            )
    for failure in score_report["failures"]:
        log.warning("failed: %s: %s", failure.get("file"), failure.get("reason"))
    info = pipeline.run_info(config, fileset, cards, scan, score_report, image_reports)
    with _step("results", bars):
        results = write_results(paths.results, histograms, info)

    print(summary_table(results))
    print(f"results in {paths.results} ({time.perf_counter() - start:.0f} s)")
    return 0


@contextlib.contextmanager
def _triton(url, paths):
    if url != "local":
        yield url
        return
    from models.serving import triton_server

    with triton_server(paths.models) as local_url:
        log.info("scoring through the Triton server at %s", local_url)
        yield local_url
