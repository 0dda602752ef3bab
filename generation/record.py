"""Which part of the generator record goes into the ``Particle`` collection.

``all`` (the default) writes the whole Pythia record as Delphes does: about 80% of
the file. ``hard`` keeps the beams, the hard process with its resonance decays
(Pythia status 21-29) and every copy of a heavy resonance (top, W, Z, Higgs,
gluino), which is what truth matching to tops and gluinos needs, for about a
fifth of the file size. Mother and daughter indices are renumbered; a reference
to a dropped particle becomes -1, and a range of daughters (or mothers) shrinks to
its kept members.
"""

import numpy as np

from analysis.errors import ConfigError

__all__ = ["PARTICLE_RECORDS", "keep_mask", "select_particles"]

PARTICLE_RECORDS = ("all", "hard")
HEAVY = np.array([6, 23, 24, 25, 1_000_021])


def check_record(record):
    if record not in PARTICLE_RECORDS:
        raise ConfigError(
            f"unknown particle record {record!r}; choose one of "
            f"{', '.join(PARTICLE_RECORDS)}"
        )
    return record


def keep_mask(pid, pythia_status):
    """Particles of the ``hard`` record: (particles,) bool."""
    status = np.abs(pythia_status)
    return (
        (status == 12) | ((status >= 21) & (status <= 29)) | np.isin(np.abs(pid), HEAVY)
    )


def select_particles(counts, fields, keep):
    """Keep particles ``keep`` (flat, grouped by event with ``counts``) and
    renumber M1, M2, D1, D2. Returns (new counts, new fields)."""
    offsets = np.concatenate([[0], np.cumsum(counts)])  # (events + 1,)
    event = np.repeat(np.arange(len(counts)), counts)  # (particles,)
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # (particles + 1,)
    new_offsets = kept_before[offsets]  # (events + 1,)

    def locate(ref, rightward):
        """New local index of the kept particle at or after (before) ``ref``."""
        valid = ref >= 0
        position = offsets[event] + np.where(valid, ref, 0)  # global old index
        if rightward:
            new = kept_before[position]
            inside = new < new_offsets[event + 1]
        else:
            new = kept_before[position + 1] - 1
            inside = new >= new_offsets[event]
        return np.where(valid & inside, new - new_offsets[event], -1)

    def exact(ref):
        valid = ref >= 0
        position = offsets[event] + np.where(valid, ref, 0)
        return np.where(valid & keep[position], locate(ref, True), -1)

    out = dict(fields)
    for first, last in (("M1", "M2"), ("D1", "D2")):
        a, b = fields[first], fields[last]
        is_range = (a >= 0) & (b > a)
        lo, hi = locate(a, True), locate(b, False)
        empty = is_range & ((lo < 0) | (hi < 0) | (lo > hi))
        out[first] = np.where(is_range, np.where(empty, -1, lo), exact(a))
        out[last] = np.where(is_range, np.where(empty, -1, hi), exact(b))
    new_counts = np.diff(new_offsets)
    return new_counts, {name: values[keep] for name, values in out.items()}
