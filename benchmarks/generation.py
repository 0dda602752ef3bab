"""Generation throughput: Pythia alone against Pythia + detector simulation + writing.

For each process, one generator runs batches of events; every batch is timed in
CPU seconds of this process (so that other load on a shared machine does not
count) stage by stage: Pythia's ``nextBatch``, the conversion of its record to
flat arrays, the detector simulation, and writing to the Delphes file. Pythia
alone and the full chain thus come from the same events in the same run.

Figures (per process P; ``qcd_vincia`` for the alternative shower):
- ``generation.P.pythia_events_per_cpu_s``: Pythia alone
- ``generation.P.full_events_per_cpu_s``: Pythia + conversion + simulation + writing
- ``generation.P.overhead_vs_pythia``: (conversion + simulation + writing) / Pythia
  (target: at most 0.5)
- ``generation.P.{convert,simulate,write}_ms_per_event``
- ``generation.P.file_setup_s``: creating the tree (once per file of up to 20k events)
"""

import tempfile
import time
from pathlib import Path

import numpy as np

PROCESSES = ("qcd", "top", "gluino")


def _measure(process, n_events, batch_size, workdir, shower="pythia"):
    from generation.delphes_format import DelphesWriter, event_record
    from generation.detector.simulation import Detector, simulate
    from generation.pythia import Generator

    generator = Generator(process, 12345, shower, workdir=workdir)
    rng = np.random.default_rng(1)
    detector = Detector.cms()
    clock = time.process_time
    totals = dict.fromkeys(("pythia", "convert", "simulate", "write"), 0.0)

    name = process if shower == "pythia" else f"{process}_{shower}"
    with DelphesWriter(Path(workdir) / f"{name}.root") as writer:
        # The first batch creates the tree: timed apart, as a per-file cost.
        batch = generator.next_batch(10)
        collections = simulate(batch, rng, detector)
        collections["Event"] = event_record(batch.event_info, 0, (1.0, 0.1))
        setup = clock()
        writer.write(collections)
        file_setup = clock() - setup
        done = 0
        while done < n_events:
            n = min(batch_size, n_events - done)
            t0 = clock()
            raw = generator.raw_batch(n)
            t1 = clock()
            batch = generator.to_batch(raw)
            t2 = clock()
            collections = simulate(batch, rng, detector)
            collections["Event"] = event_record(
                batch.event_info, done, generator.cross_section_pb
            )
            t3 = clock()
            writer.write(collections)
            t4 = clock()
            for key, dt in zip(
                totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True
            ):
                totals[key] += dt
            done += n
    overhead = totals["convert"] + totals["simulate"] + totals["write"]
    prefix = f"generation.{name}"
    return {
        f"{prefix}.pythia_events_per_cpu_s": done / totals["pythia"],
        f"{prefix}.full_events_per_cpu_s": done / (totals["pythia"] + overhead),
        f"{prefix}.overhead_vs_pythia": overhead / totals["pythia"],
        f"{prefix}.convert_ms_per_event": 1e3 * totals["convert"] / done,
        f"{prefix}.simulate_ms_per_event": 1e3 * totals["simulate"] / done,
        f"{prefix}.write_ms_per_event": 1e3 * totals["write"] / done,
        f"{prefix}.file_setup_s": file_setup,
    }


def run(quick=False):
    from generation.production import BATCH_SIZE

    processes = ("qcd",) if quick else PROCESSES
    n_events = 60 if quick else 1000
    figures = {}
    with tempfile.TemporaryDirectory() as workdir:
        for process in processes:
            figures.update(_measure(process, n_events, BATCH_SIZE, workdir))
        if not quick:  # the alternative shower, on fewer events: it is slower
            figures.update(_measure("qcd", 200, BATCH_SIZE, workdir, "vincia"))
    return figures


if __name__ == "__main__":
    import sys

    for name, value in run(quick="--quick" in sys.argv).items():
        print(f"{name:<45} {value:10.4g}")
