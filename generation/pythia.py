"""Pythia 8 event generation in batches, returned as flat numpy arrays.

``Pythia.nextBatch`` hands back a batch of events as awkward arrays; this module
turns them into the particle and event columns the detector simulation and the
Delphes writer use. The event record follows Delphes' Pythia 8 reader: entry 0
(the "system" line of Pythia's record) is dropped, mother and daughter indices
shift down by one so that they index into ``Particle`` (-1 for none), and the
status is the HepMC status (1 final, 2 decayed hadron or lepton, 4 beam, otherwise
the absolute Pythia status).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from analysis.errors import ConfigError
from generation.processes import check_shower, get_process, pythia_settings

__all__ = ["Generator", "ParticleBatch", "hard_process_code"]

log = logging.getLogger(__name__)

MB_TO_PB = 1e9


@dataclass
class ParticleBatch:
    """Flat particle columns of a batch of events, ``offsets`` delimiting events."""

    offsets: np.ndarray  # (events + 1,)
    pid: np.ndarray  # (particles,) int32
    status: np.ndarray  # HepMC-style status, int32
    pythia_status: np.ndarray  # Pythia's own signed status, int32
    m1: np.ndarray
    m2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    charge: np.ndarray  # float64, units of e (quarks fractional)
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    mass: np.ndarray
    x: np.ndarray  # production vertex, mm
    y: np.ndarray
    z: np.ndarray
    t: np.ndarray  # mm/c
    event_info: dict  # per-event columns: weight, scale, alpha_s, id1, ...

    @property
    def n_events(self):
        return len(self.offsets) - 1

    @property
    def event_index(self):
        """Event number within the batch of every particle, (particles,)."""
        return np.repeat(np.arange(self.n_events), np.diff(self.offsets))


class Generator:
    """One Pythia 8 instance for a process, seed and shower."""

    def __init__(self, process, seed, shower="pythia", workdir=None, mass=None):
        import pythia8mc

        self.process = get_process(process)
        self.shower = check_shower(shower)
        slha = None
        if self.process.needs_slha:
            from generation.processes import DEFAULT_GLUINO_MASS, write_slha

            workdir = Path(workdir or ".")
            slha = write_slha(
                workdir / f".{self.process.name}_{seed}.slha",
                DEFAULT_GLUINO_MASS if mass is None else mass,
            )
        self._pythia = pythia8mc.Pythia("", False)
        try:
            self._configure(pythia_settings(self.process, seed, shower, slha))
        finally:
            if slha is not None:
                slha.unlink(missing_ok=True)
        self._charge_cache = {}
        self.version = f"Pythia {self._pythia.parm('Pythia:versionNumber'):.3f}"

    def _configure(self, lines):
        for line in lines:
            if not self._pythia.readString(line):
                raise ConfigError(f"Pythia rejected the setting {line!r}")
        if not self._pythia.init():
            raise ConfigError(
                f"Pythia failed to initialize process {self.process.name!r} with "
                f"shower {self.shower!r}; run with -v to see its messages"
            )

    @property
    def cross_section_pb(self):
        """Running estimate of the generated cross section and its error, in pb."""
        info = self._pythia.infoPython()
        return info.sigmaGen() * MB_TO_PB, info.sigmaErr() * MB_TO_PB

    @property
    def sum_weights(self):
        return self._pythia.infoPython().weightSum()

    def next_batch(self, n_events):
        """Generate ``n_events`` events and return their :class:`ParticleBatch`."""
        return self.to_batch(self.raw_batch(n_events))

    def raw_batch(self, n_events):
        """Pythia's own awkward record of ``n_events`` events (``nextBatch``)."""
        return self._pythia.nextBatch(n_events)

    def _charges(self, pid):
        unique = np.unique(pid)
        missing = [int(i) for i in unique if int(i) not in self._charge_cache]
        data = self._pythia.particleData
        for code in missing:
            self._charge_cache[code] = data.charge(code)
        table = np.array([self._charge_cache[int(i)] for i in unique])
        return table[np.searchsorted(unique, pid)]

    def to_batch(self, events):
        """Flat particle columns of a ``raw_batch``."""
        prt = events.prt[:, 1:]  # drop the "system" entry 0
        counts = ak.to_numpy(ak.num(prt))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = ak.flatten(prt)

        def col(array, dtype):
            return ak.to_numpy(array).astype(dtype, copy=False)

        pid = col(flat.id, np.int32)
        pythia_status = col(flat.status, np.int32)
        p = flat.p
        vertex = ak.fill_none(flat.vProd, {"px": 0.0, "py": 0.0, "pz": 0.0, "e": 0.0})
        batch = ParticleBatch(
            offsets=offsets,
            pid=pid,
            status=hepmc_status(pid, pythia_status),
            pythia_status=pythia_status,
            m1=col(flat.mother1, np.int32) - 1,
            m2=col(flat.mother2, np.int32) - 1,
            d1=col(flat.daughter1, np.int32) - 1,
            d2=col(flat.daughter2, np.int32) - 1,
            charge=self._charges(pid),
            px=col(p.px, np.float64),
            py=col(p.py, np.float64),
            pz=col(p.pz, np.float64),
            e=col(p.e, np.float64),
            mass=col(flat.m, np.float64),
            x=col(vertex.px, np.float64),
            y=col(vertex.py, np.float64),
            z=col(vertex.pz, np.float64),
            t=col(vertex.e, np.float64),
            event_info={},
        )
        batch.event_info = _event_info(events.info, batch)
        return batch


def _event_info(info, batch):
    weights = info.weights
    weight = ak.to_numpy(ak.fill_none(ak.firsts(weights), 1.0)).astype(np.float64)
    # Each multiparton interaction beyond the hard one adds two incoming
    # partons of status -31. (events,)
    incoming = (batch.pythia_status == -31).astype(np.int64)
    n_mpi = 1 + np.add.reduceat(incoming, batch.offsets[:-1]) // 2
    return {
        "weight": weight,
        "process_id": hard_process_code(batch),
        "mpi": n_mpi.astype(np.int32),
        "scale": np.sqrt(ak.to_numpy(info.Q2Ren)),
        "scale_pdf": np.sqrt(ak.to_numpy(info.Q2Fac)),
        "alpha_qcd": ak.to_numpy(info.alphaS),
        "alpha_qed": ak.to_numpy(info.alphaEM),
        "id1": ak.to_numpy(info.id1).astype(np.int32),
        "id2": ak.to_numpy(info.id2).astype(np.int32),
        "x1": ak.to_numpy(info.x1),
        "x2": ak.to_numpy(info.x2),
        "pdf1": ak.to_numpy(info.pdf1),
        "pdf2": ak.to_numpy(info.pdf2),
    }


def _is_hadron(abs_pid):
    # PDG: mesons and baryons have a non-zero third digit; diquarks (xy0z) do not.
    return (abs_pid > 100) & (abs_pid < 1_000_000) & ((abs_pid // 10) % 10 != 0)


def hepmc_status(pid, status):
    """Pythia status -> HepMC status, as Pythia's ``Particle::statusHepMC``."""
    abs_pid = np.abs(pid)
    decayed = _is_hadron(abs_pid) | (abs_pid == 13) | (abs_pid == 15)
    out = np.abs(status)
    out = np.where(status < 0, np.where(decayed, 2, out), 1)
    out = np.where(status == -12, 4, out)
    return out.astype(np.int32)


# Pythia process codes for the hard 2 -> 2 processes this project generates.
def hard_process_code(batch):
    """Pythia's process code of each event from the hard-process partons.

    Entries 2-5 of the record (after dropping entry 0) are the incoming and
    outgoing partons of the hard process: (events,) int32.
    """
    first = batch.offsets[:-1]
    has = np.diff(batch.offsets) > 5
    idx = np.where(has, first, 0)
    a, b = batch.pid[idx + 2], batch.pid[idx + 3]
    c, d = batch.pid[idx + 4], batch.pid[idx + 5]
    gluon_in = (a == 21).astype(int) + (b == 21)
    gluon_out = (c == 21).astype(int) + (d == 21)
    code = np.zeros(len(first), dtype=np.int32)
    heavy = np.abs(c)
    tops = heavy == 6
    gluinos = heavy == 1_000_021
    code = np.where(tops, np.where(gluon_in == 2, 601, 602), code)
    code = np.where(gluinos, np.where(gluon_in == 2, 1201, 1202), code)
    qcd = ~(tops | gluinos) & (heavy <= 21)
    qcd_code = np.select(
        [
            (gluon_in == 2) & (gluon_out == 2),
            (gluon_in == 2) & (gluon_out == 0),
            gluon_in == 1,
            (gluon_in == 0) & (gluon_out == 2),
            (gluon_in == 0) & (a == -b) & (np.abs(c) != np.abs(a)),
        ],
        [111, 112, 113, 115, 116],
        default=114,
    )
    code = np.where(qcd, qcd_code, code)
    return np.where(has, code, 0).astype(np.int32)
