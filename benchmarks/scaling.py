"""Scaling of the image processor on a LocalCluster, and worker memory.

``scaling.speedup_2_vs_1_workers``: events per second with two single-threaded
workers over one, on the same fileset in the same run (target 1.7 or more on two
cores). ``scaling.peak_worker_rss_mb_chunk<N>``: the largest peak resident memory
of any worker for chunks of N events, from fresh workers each time, with each
worker's high-water mark reset once its imports are done (a spawned worker starts
with its parent's ``ru_maxrss``, so that figure cannot tell chunk sizes apart).
"""

import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "aejets-benchmarks"


def _sample(events):
    from generation import generate_sample

    result = generate_sample("qcd", events, CACHE / f"qcd_{events}", seed=11, jobs=2)
    files = {str(f): "Delphes" for f in result.files}
    return {"qcd": {"files": files, "metadata": result.metadata}}


def _reset_peak_rss():
    # Linux: writing 5 to clear_refs resets the process's VmHWM (peak RSS).
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB -> MB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _timed_run(fileset, workers, step_size):
    from processors.image_processor import ImageProcessor
    from processors.runner import client_for, run

    with client_for(None, workers=workers) as client:
        # Warm the workers (imports) before the clock starts.
        client.run(lambda: __import__("processors.image_processor"))
        client.run(_reset_peak_rss)
        start = time.perf_counter()
        result = run(fileset, ImageProcessor(), scheduler=client, step_size=step_size)
        seconds = time.perf_counter() - start
        peak = max(client.run(_peak_rss_mb).values())
    events = int(result.output["qcd"]["events"])
    return events / seconds, peak


def run(quick=False):
    # 16 chunks of 750 events: each run lasts seconds, so that start-up and the
    # last, unpaired chunk weigh little in the two-worker figure.
    events = 800 if quick else 12000
    fileset = _sample(events)
    step = events // 16
    rate_1, _ = _timed_run(fileset, 1, step)
    rate_2, _ = _timed_run(fileset, 2, step)
    figures = {
        "scaling.events_per_second_1_worker": rate_1,
        "scaling.events_per_second_2_workers": rate_2,
        "scaling.speedup_2_vs_1_workers": rate_2 / rate_1,
    }
    for chunk in (events // 8, events // 2) if quick else (250, 1000, 4000, 12000):
        _, peak = _timed_run(fileset, 1, chunk)
        figures[f"scaling.peak_worker_rss_mb_chunk{chunk}"] = peak
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.4g}")
