"""Writing the Delphes tree with uproot: branch layout and leaf types.

Layout of a real Delphes file: tree ``Delphes``; per collection ``X`` a counter
``X_size`` and leaves ``X/X.Field``. The leaf types below are those of Delphes'
classes (``classes/DelphesClasses.h``) as found in a real file: float32 for
kinematics, int32 for ids and counters, uint32 for the TObject fields, int64 for
``Event.Number``. Fields with fixed-size arrays (``Tower.Edges[4]``, ``Jet.Tau[5]``)
and TRef references (``Jet.Constituents``, ``Track.Particle``) are not written:
uproot cannot write the first under the Delphes name and has no TRef writer.
"""

import logging

import awkward as ak
import numpy as np

__all__ = ["COLLECTIONS", "DelphesWriter", "event_record"]

log = logging.getLogger(__name__)

F4, I4, I8, U4 = np.float32, np.int32, np.int64, np.uint32

_TOWER = {
    "ET": F4,
    "Eta": F4,
    "Phi": F4,
    "E": F4,
    "T": F4,
    "NTimeHits": I4,
    "Eem": F4,
    "Ehad": F4,
    "Etrk": F4,
}
_TRACK = {
    "PID": I4,
    "Charge": I4,
    "P": F4,
    "PT": F4,
    "Eta": F4,
    "Phi": F4,
    "CtgTheta": F4,
    "C": F4,
    "Mass": F4,
    "EtaOuter": F4,
    "PhiOuter": F4,
    "T": F4,
    "X": F4,
    "Y": F4,
    "Z": F4,
    "XOuter": F4,
    "YOuter": F4,
    "ZOuter": F4,
    "L": F4,
    "D0": F4,
    "DZ": F4,
    "ErrorP": F4,
    "ErrorPT": F4,
    "VertexIndex": I4,
}
_JET = {
    "PT": F4,
    "Eta": F4,
    "Phi": F4,
    "T": F4,
    "Mass": F4,
    "DeltaEta": F4,
    "DeltaPhi": F4,
    "Charge": I4,
    "EhadOverEem": F4,
    "NCharged": I4,
    "NNeutrals": I4,
    "NeutralEnergyFraction": F4,
    "ChargedEnergyFraction": F4,
    "MeanSqDeltaR": F4,
    "PTD": F4,
}
_GENJET = {k: v for k, v in _JET.items() if k not in ("EhadOverEem",)}

# Collection -> {field: dtype}; every collection also gets fUniqueID and fBits.
COLLECTIONS = {
    "Event": {
        "Number": I8,
        "ProcessID": I4,
        "MPI": I4,
        "Weight": F4,
        "CrossSection": F4,
        "CrossSectionError": F4,
        "Scale": F4,
        "AlphaQED": F4,
        "AlphaQCD": F4,
        "ID1": I4,
        "ID2": I4,
        "X1": F4,
        "X2": F4,
        "ScalePDF": F4,
        "PDF1": F4,
        "PDF2": F4,
    },
    "Particle": {
        "PID": I4,
        "Status": I4,
        "IsPU": I4,
        "M1": I4,
        "M2": I4,
        "D1": I4,
        "D2": I4,
        "Charge": I4,
        "Mass": F4,
        "E": F4,
        "Px": F4,
        "Py": F4,
        "Pz": F4,
        "P": F4,
        "PT": F4,
        "Eta": F4,
        "Phi": F4,
        "Rapidity": F4,
        "T": F4,
        "X": F4,
        "Y": F4,
        "Z": F4,
    },
    "Track": _TRACK,
    "Tower": _TOWER,
    "EFlowTrack": _TRACK,
    "EFlowPhoton": _TOWER,
    "EFlowNeutralHadron": _TOWER,
    "GenJet": _GENJET,
    "Jet": _JET,
    "FatJet": _JET,
    "MissingET": {"MET": F4, "Eta": F4, "Phi": F4},
    "ScalarHT": {"HT": F4},
}

# TObject bits of an object on the heap that is not deleted (kNotDeleted |
# kIsOnHeap), as in a real Delphes file.
_TOBJECT_BITS = 0x03000000


def event_record(info, first_number, cross_section):
    """The ``Event`` collection of a batch: one object per event.

    ``cross_section`` is Pythia's running estimate (pb) after the batch, written
    to every event of the batch, as Delphes' Pythia 8 reader writes the running
    ``sigmaGen`` of each event; the last event of a file holds the final value.
    """
    from generation.detector.simulation import FlatCollection

    n = len(info["weight"])
    xsec, xsec_err = cross_section
    fields = {
        "Number": first_number + np.arange(n, dtype=np.int64),
        "ProcessID": info["process_id"],
        "MPI": info["mpi"],
        "Weight": info["weight"],
        "CrossSection": np.full(n, xsec),
        "CrossSectionError": np.full(n, xsec_err),
        "Scale": info["scale"],
        "AlphaQED": info["alpha_qed"],
        "AlphaQCD": info["alpha_qcd"],
        "ID1": info["id1"],
        "ID2": info["id2"],
        "X1": info["x1"],
        "X2": info["x2"],
        "ScalePDF": info["scale_pdf"],
        "PDF1": info["pdf1"],
        "PDF2": info["pdf2"],
    }
    return FlatCollection(np.ones(n, np.int64), fields)


def _branch(name, collection):
    """(events, objects) records with Delphes leaf names and types.

    ``collection`` is a :class:`generation.detector.simulation.FlatCollection`;
    fields of the layout it lacks are written as zeros.
    """
    n = int(np.sum(collection.counts))
    leaves = {
        f"{name}.fUniqueID": np.zeros(n, U4),
        f"{name}.fBits": np.full(n, _TOBJECT_BITS, U4),
    }
    for field, dtype in COLLECTIONS[name].items():
        values = collection.fields.get(field)
        values = np.zeros(n, dtype) if values is None else values.astype(dtype)
        leaves[f"{name}.{field}"] = values
    return ak.unflatten(ak.zip(leaves), collection.counts)


class DelphesWriter:
    """Appends batches of collections to the ``Delphes`` tree of a new file."""

    def __init__(self, path, compression=None):
        import uproot

        self._file = uproot.recreate(path, compression=compression or uproot.LZ4(1))
        self._tree = None

    def write(self, collections):
        branches = {name: _branch(name, collections[name]) for name in COLLECTIONS}
        if self._tree is None:
            self._tree = self._file.mktree(
                "Delphes",
                {name: array.type.content for name, array in branches.items()},
                counter_name=lambda counter: counter + "_size",
                field_name=lambda outer, inner: outer + "/" + inner,
                title="Analysis tree",
            )
        self._tree.extend(branches)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
