"""Run every stage benchmark and collect its figures.

``python -m benchmarks [--quick] [--out FILE] [--only STAGE ...]``

Each ``benchmarks/<stage>.py`` exposes ``run(quick=False) -> dict[str, float]`` and
measures each figure side by side with its reference in the same run, so that the
ratios hold on a shared, noisy machine. Timings are never asserted; the test suite
runs ``--quick`` and checks only that every figure is present and finite.
"""

import argparse
import importlib
import json
import math
import platform
import sys
import time
from pathlib import Path

STAGES = ("hardware", "generation", "images", "models", "inference", "scaling")


def collect(stages, quick):
    figures, failures = {}, {}
    for stage in stages:
        try:
            module = importlib.import_module(f"benchmarks.{stage}")
        except ModuleNotFoundError as err:
            if err.name == f"benchmarks.{stage}":
                continue  # that stage has no benchmark in this checkout
            raise
        start = time.perf_counter()
        try:
            result = module.run(quick=quick)
        except Exception as err:  # one stage failing must not hide the others
            failures[stage] = f"{type(err).__name__}: {err}"
            continue
        figures.update({k: float(v) for k, v in result.items()})
        figures[f"{stage}.benchmark_seconds"] = time.perf_counter() - start
    return figures, failures


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="run these stages")
    args = parser.parse_args(argv)

    figures, failures = collect(args.only or STAGES, args.quick)
    width = max((len(name) for name in figures), default=10)
    for name, value in sorted(figures.items()):
        print(f"{name:<{width}}  {value:>14.6g}")
    for stage, reason in failures.items():
        print(f"{stage}: FAILED {reason}", file=sys.stderr)
    if args.out:
        payload = {
            "machine": {
                "platform": platform.platform(),
                "python": sys.version.split()[0],
            },
            "quick": args.quick,
            "figures": {
                k: (v if math.isfinite(v) else None) for k, v in figures.items()
            },
            "failures": failures,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
