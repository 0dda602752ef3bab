"""Shared fixtures.

The real Delphes file used for compatibility checks ships in coffea's source
distribution (``tests/samples/delphes.root``). It is fetched once from the package
registry with pip and cached under ``$AEJETS_CACHE`` (default ``~/.cache/aejets``);
tests that need it are skipped, with the reason, where it cannot be had.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("AEJETS_CACHE", Path.home() / ".cache" / "aejets"))


def _fetch_coffea_sample(target):
    coffea_version = version("coffea")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--quiet",
                "-d",
                tmp,
                f"coffea=={coffea_version}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        (sdist,) = Path(tmp).glob("coffea-*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = next(
                m
                for m in archive.getmembers()
                if m.name.endswith("tests/samples/delphes.root")
            )
            data = archive.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


@pytest.fixture(scope="session")
def real_delphes_file():
    """Path to coffea's test Delphes file (25 events of ttbar, CMS card)."""
    target = CACHE / "test-data" / f"coffea-{version('coffea')}-delphes.root"
    if not target.exists():
        try:
            _fetch_coffea_sample(target)
        except (subprocess.SubprocessError, OSError, StopIteration, ValueError) as err:
            pytest.skip(
                f"cannot fetch coffea's sdist for tests/samples/delphes.root: {err}"
            )
    return target


@pytest.fixture(scope="module")
def scheduler():
    """The address of a one-worker, in-process dask cluster (one per test module)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address
