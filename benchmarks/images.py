"""Jet images: columnar code against the per-jet reference, processor against fastjet.

Both figures are measured side by side in the same run, on one core, on the same
generated QCD events (made once with ``generation.generate_sample`` and kept under
``$AEJETS_CACHE/bench``; ``AEJETS_BENCH_FILE`` points at another Delphes file):

``images.columnar_jets_per_s`` / ``images.reference_jets_per_s``
    images of the selected jets by :func:`processors.images.jet_images` and by the
    loop reference of ``tests/reference_images.py``; ``images.speedup_vs_reference``
    is their ratio (target >= 50);
``images.processor_events_per_s`` / ``images.clustering_events_per_s``
    the whole chunk work of :class:`ImageProcessor` on dask's synchronous scheduler
    (open the file, read the branches, clean, cluster, select, image, count;
    building and optimizing the graph, once per run, are not timed), and anti-kT
    clustering alone (``ClusterSequence(...).inclusive_jets()``) on the constituents
    already in memory; ``images.processor_over_clustering`` is their ratio
    (target >= 0.7).

``images.reading_events_per_s`` / ``images.reading_clustering_events_per_s``
    reading the processor's branches alone, and reading then clustering, eagerly;
``images.columnar_fraction_of_bandwidth``
    the bytes the columnar image code streams (constituents in, images out) per
    second, over the memory bandwidth measured in the same run.

``quick=True`` (200 events, 100 jets) only checks that everything runs: fixed
per-chunk costs (first uproot class generation in the process, file opening)
dominate there, so its ratios say nothing about the targets.
"""

import os
import time
from pathlib import Path

import awkward as ak

CACHE = Path(os.environ.get("AEJETS_CACHE", Path.home() / ".cache" / "aejets"))


def sample(events):
    """A Delphes file with ``events`` QCD events (generated once, then reused)."""
    if os.environ.get("AEJETS_BENCH_FILE"):
        return Path(os.environ["AEJETS_BENCH_FILE"])
    from generation import generate_sample

    result = generate_sample("qcd", events, CACHE / "bench" / f"qcd{events}", seed=7)
    return Path(result.files[0])


def _best(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _events(path, mode):
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    return NanoEventsFactory.from_root(
        {str(path): "Delphes"},
        schemaclass=DelphesSchema,
        mode=mode,
        metadata={"dataset": "bench", "filename": str(path)},
    ).events()


def image_speed(path, max_jets):
    """(columnar jets/s, reference jets/s) on the selected jets of ``path``."""
    from processors.image_processor import input_columns
    from processors.images import jet_images
    from processors.jets import JetConfig
    from tests.reference_images import reference_image

    config = JetConfig(pt_range=(300.0, 2000.0), max_jets=None)
    jets = _jet_constituents(
        input_columns(_events(path, "eager"), config, False), config
    )
    jets = {k: v[:max_jets] for k, v in jets.items()}
    n_jets = len(jets["eta"])

    def columnar():
        jet_images(jets["eta"], jets["phi"], jets["pt_c"], jets["eta_c"], jets["phi_c"])

    rows = [ak.to_list(jets[k]) for k in ("pt_c", "eta_c", "phi_c")]

    def reference():
        for k in range(n_jets):
            reference_image(jets["eta"][k], jets["phi"][k], *(r[k] for r in rows))

    columnar_best = reference_best = float("inf")
    for _ in range(3):  # interleaved, so that both see the same load
        columnar_best = min(columnar_best, _best(columnar, 5))
        reference_best = min(reference_best, _best(reference, 1))
    # Bytes the columnar code must stream at least once: three float64 values a
    # constituent in, one float32 image a jet out.
    n_constituents = int(ak.sum(ak.num(jets["pt_c"], axis=1)))
    streamed = n_constituents * 3 * 8 + n_jets * 37 * 37 * 4
    return n_jets / columnar_best, n_jets / reference_best, streamed / columnar_best


def _jet_constituents(columns, config):
    from processors.image_processor import _constituents
    from processors.jets import (
        clean_flat,
        cluster_momenta,
        four_momenta_flat,
        jet_constituents_flat,
    )

    counts, flat = _constituents(columns, config)
    sizes, flat, _ = clean_flat(counts, *flat)
    jets = cluster_momenta(four_momenta_flat(sizes, *flat), config)
    pt_c, eta_c, phi_c = jet_constituents_flat(jets["index"], sizes, *flat[:3])
    return {
        "eta": ak.to_numpy(ak.flatten(jets["eta"])),
        "phi": ak.to_numpy(ak.flatten(jets["phi"])),
        "pt_c": pt_c,  # (jets, constituents)
        "eta_c": eta_c,
        "phi_c": phi_c,
    }


def reading_speed(path, repeats):
    """(reading events/s, reading + clustering events/s), one core each.

    Reading: the processor's input branches of every event, with uproot through
    coffea's eager NanoEvents; clustering: the same, then anti-kT on the cleaned
    constituents.
    """
    import fastjet

    from processors.image_processor import _constituents, input_columns
    from processors.jets import JetConfig, clean_flat, four_momenta_flat

    config = JetConfig()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)

    def read():
        columns = input_columns(_events(path, "eager"), config, False)
        return _constituents(columns, config)

    def read_and_cluster():
        counts, flat = read()
        sizes, flat, _ = clean_flat(counts, *flat)
        momenta = four_momenta_flat(sizes, *flat)
        fastjet.ClusterSequence(momenta, definition).inclusive_jets()

    n_events = len(_events(path, "eager"))
    read_and_cluster()  # loads the fastjet library and uproot's classes
    return (
        n_events / _best(read, repeats),
        n_events / _best(read_and_cluster, repeats),
    )


def processor_speed(path, repeats):
    """(processor events/s, clustering-alone events/s), one core each."""
    import dask
    import fastjet

    from processors.image_processor import ImageProcessor, _constituents, input_columns
    from processors.jets import JetConfig, clean_flat, four_momenta_flat

    config = JetConfig()
    eager = _events(path, "eager")
    n_events = len(eager)
    counts, flat = _constituents(input_columns(eager, config, False), config)
    sizes, flat, _ = clean_flat(counts, *flat)
    momenta = four_momenta_flat(sizes, *flat)
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)

    def clustering():
        fastjet.ClusterSequence(momenta, definition).inclusive_jets()

    def whole():
        # Building and optimizing the graph happen once per run, however many
        # chunks it has; everything done per chunk is timed.
        output = ImageProcessor(config).process(_events(path, "dask"))
        (output,) = dask.optimize(output)
        start = time.perf_counter()
        dask.compute(output, scheduler="sync", optimize_graph=False)
        return time.perf_counter() - start

    clustering()  # first call loads the fastjet library
    whole_best = cluster_best = float("inf")
    for _ in range(repeats):  # interleaved, so that both see the same load
        whole_best = min(whole_best, whole())
        cluster_best = min(cluster_best, _best(clustering, 1))
    return n_events / whole_best, n_events / cluster_best


def run(quick=False):
    path = sample(200 if quick else 5000)  # 5000: the default chunk size
    columnar, reference, streamed = image_speed(path, 100 if quick else 4000)
    processor, clustering = processor_speed(path, 1 if quick else 5)
    reading, reading_clustering = reading_speed(path, 1 if quick else 3)
    from benchmarks.hardware import memory_bandwidth_gbs

    bandwidth = memory_bandwidth_gbs(64 if quick else 512)
    return {
        "images.reading_events_per_s": reading,
        "images.reading_clustering_events_per_s": reading_clustering,
        "images.columnar_bytes_per_s": streamed,
        "images.columnar_fraction_of_bandwidth": streamed / (bandwidth * 1e9),
        "images.columnar_jets_per_s": columnar,
        "images.reference_jets_per_s": reference,
        "images.speedup_vs_reference": columnar / reference,
        "images.processor_events_per_s": processor,
        "images.clustering_events_per_s": clustering,
        "images.processor_over_clustering": processor / clustering,
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.4g}")
