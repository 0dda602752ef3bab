"""Scaling of the image processor on a LocalCluster, and worker memory.

``scaling.speedup_2_vs_1_workers``: events per second with two single-threaded
workers over one, on the same fileset in the same run (target 1.7 or more on two
cores). ``scaling.peak_worker_rss_mb_chunk<N>``: the largest peak resident memory
of any worker for chunks of N events, from fresh workers each time.
"""

import resource
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "aejets-benchmarks"


def _sample(events):
    from generation import generate_sample

    result = generate_sample("qcd", events, CACHE / f"qcd_{events}", seed=11)
    files = {str(f): "Delphes" for f in result.files}
    return {"qcd": {"files": files, "metadata": result.metadata}}


def _peak_rss_mb():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_run(fileset, workers, step_size):
    from processors.image_processor import ImageProcessor
    from processors.runner import client_for, run

    with client_for(None, workers=workers) as client:
        # Warm the workers (imports) before the clock starts.
        client.run(lambda: __import__("processors.image_processor"))
        start = time.perf_counter()
        result = run(fileset, ImageProcessor(), scheduler=client, step_size=step_size)
        seconds = time.perf_counter() - start
        peak = max(client.run(_peak_rss_mb).values())
    events = int(result.output["qcd"]["events"])
    return events / seconds, peak


def run(quick=False):
    events = 800 if quick else 4000
    fileset = _sample(events)
    step = events // 8
    rate_1, _ = _timed_run(fileset, 1, step)
    rate_2, _ = _timed_run(fileset, 2, step)
    figures = {
        "scaling.events_per_second_1_worker": rate_1,
        "scaling.events_per_second_2_workers": rate_2,
        "scaling.speedup_2_vs_1_workers": rate_2 / rate_1,
    }
    for chunk in (events // 8, events // 2) if quick else (250, 1000, 4000):
        _, peak = _timed_run(fileset, 1, chunk)
        figures[f"scaling.peak_worker_rss_mb_chunk{chunk}"] = peak
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.4g}")
