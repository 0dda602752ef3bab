"""`aejets generate`: Pythia 8 events through the detector simulation, as Delphes files."""

import logging
import tempfile
from pathlib import Path

from analysis.errors import OutputError

log = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="generate a sample: Pythia 8 -> CMS-like detector -> Delphes files",
        description=(
            "Generate PROCESS events with Pythia 8 (pp, 13 TeV), simulate a CMS-like "
            "detector as Delphes' CMS card does, and write Delphes ROOT files "
            "OUT/<process>[_<shower>]_s<seed>_<file>.root. Complete files are kept "
            "on a rerun."
        ),
    )
    parser.add_argument("--process", required=True, help="qcd, top or gluino")
    parser.add_argument("--events", required=True, type=int, help="number of events")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=1, help="sample seed (default 1)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (default 1)"
    )
    parser.add_argument(
        "--shower",
        default="pythia",
        help="parton shower: pythia (default) or vincia (the robustness sample)",
    )
    parser.add_argument(
        "--mass",
        type=float,
        help="gluino mass in GeV for --process gluino (default 400)",
    )
    parser.add_argument(
        "--particles",
        choices=("all", "hard"),
        default="all",
        help=(
            "generator record written as Particle: all (as Delphes, about 80%% of "
            "the file) or hard (beams, hard process, resonance decays and copies "
            "of heavy resonances: enough for truth matching, ~4x smaller files)"
        ),
    )
    parser.add_argument(
        "--register",
        type=Path,
        metavar="DATASETS_JSON",
        help="add or update the dataset in this fileset (e.g. datasets.json)",
    )
    parser.add_argument(
        "--name",
        help="dataset name for --register (default: process, or process_shower)",
    )
    parser.set_defaults(func=run)


def check_output_folder(folder, option):
    """Create ``folder`` and write a probe in it, before any long work.

    Raises :class:`OutputError` naming the folder, the option and the reason.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(
            f"cannot write into {folder} ({option}): {_reason(folder, err)}; "
            f"choose another {option}"
        ) from err
    return folder


def _reason(folder, err):
    # mkdir says "File exists" or "Not a directory": name the file in the way.
    blocker = next(
        (p for p in reversed([folder, *folder.parents]) if p.is_file()), None
    )
    if blocker == folder:
        return "it is a file, not a folder"
    if blocker is not None:
        return f"a parent, {blocker}, is a file, not a folder"
    return err.strerror or str(err)


def _check_fileset(path):
    """Before generating: the fileset must be valid JSON, its folder writable."""
    if path is None:
        return
    if path.exists():
        from analysis.fileset import load_fileset

        load_fileset(path)
    check_output_folder(path.parent, "--register")


def _dataset_name(args):
    if args.name:
        return args.name
    return args.process if args.shower == "pythia" else f"{args.process}_{args.shower}"


def _register(path, name, files, metadata):
    from analysis.fileset import load_fileset, register_dataset

    old = load_fileset(path).get(name) if path.exists() else None
    new = {str(Path(f).resolve()): "Delphes" for f in files}
    if old is not None and old["files"] != new:
        log.warning(
            "dataset %r in %s already existed: its %d file(s) are replaced by "
            "the %d new one(s)",
            name,
            path,
            len(old["files"]),
            len(new),
        )
    register_dataset(path, name, new, metadata)


def run(args):
    from tqdm import tqdm

    from generation import generate_sample
    from generation.processes import DEFAULT_GLUINO_MASS
    from generation.production import check_request

    _check_fileset(args.register)
    if args.register is not None:
        from analysis.fileset import check_dataset_name

        check_dataset_name(_dataset_name(args), "--name")
    if args.mass is not None and args.process != "gluino":
        log.warning(
            "--mass applies to --process gluino only; ignored for %s", args.process
        )
    mass = DEFAULT_GLUINO_MASS if args.mass is None else args.mass
    # Settings checked before the progress bar is drawn.
    check_request(args.process, args.events, args.jobs, args.shower, args.seed, mass)
    with tqdm(total=args.events, unit="events", desc=args.process) as bar:
        result = generate_sample(
            args.process,
            args.events,
            args.out,
            seed=args.seed,
            jobs=args.jobs,
            shower=args.shower,
            progress=bar.update,
            mass=mass,
            particles=args.particles,
        )
    meta = result.metadata
    print(
        f"{meta['n_events']} {args.process} events in {len(result.files)} file(s) "
        f"under {args.out}; cross section {meta['xsec_pb']:.4g} "
        f"+- {meta['xsec_err_pb']:.2g} pb"
    )
    if args.register is not None:
        name = _dataset_name(args)
        _register(args.register, name, result.files, meta)
        print(f"registered dataset {name!r} in {args.register}")
    return 0
