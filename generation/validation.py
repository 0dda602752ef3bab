"""Physics checks of generated samples: jet masses, pT response, eflow multiplicity.

Used by the tests on a few hundred events and, for larger samples, by
``python -m generation.validation DIR [-o validation.png]`` which plots the
figures for the qcd, top and gluino files it finds in DIR.
"""

import argparse
import glob
import logging
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = [
    "eflow_vectors",
    "fat_jets",
    "jet_response",
    "leading_fatjet_mass",
    "plot_validation",
    "eflow_multiplicity",
]

log = logging.getLogger(__name__)

_FIELDS = ("PT", "ET", "Eta", "Phi", "Mass")
_EFLOW = (("EFlowTrack", "PT"), ("EFlowPhoton", "ET"), ("EFlowNeutralHadron", "ET"))


def _read(files, collections):
    """{collection: (events, objects) records} for real or generated files.

    Real files expose ``Jet.PT`` under the ``Jet`` branch; ours name the leaf
    ``Jet/Jet.PT``; both read the same way here.
    """
    arrays = {name: [] for name in collections}
    for path in files:
        tree = uproot.open(path)["Delphes"]
        for name in collections:
            wanted = [f"{name}/{name}.{field}" for field in _FIELDS]
            branches = tree.arrays(filter_name=wanted)
            fields = {k.split(".")[-1]: branches[k] for k in branches.fields}
            arrays[name].append(ak.zip(fields))
    return {name: ak.concatenate(parts) for name, parts in arrays.items()}


def _vectors(pt, eta, phi, mass=0.0):
    return ak.zip(
        {
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "E": np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2),
        }
    )


def eflow_vectors(files):
    """Energy-flow objects of each event as (events, objects) px, py, pz, E."""
    data = _read(files, [name for name, _ in _EFLOW])
    parts = [
        _vectors(data[name][pt], data[name].Eta, data[name].Phi) for name, pt in _EFLOW
    ]
    return ak.concatenate(parts, axis=1)


def fat_jets(files, radius=1.5, pt_min=200.0):
    """Anti-kT jets of ``radius`` reclustered from eflow: (events, jets) pt, eta,
    mass, sorted by pT."""
    import fastjet

    from generation.detector.jets import quiet_fastjet

    quiet_fastjet()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    jets = fastjet.ClusterSequence(eflow_vectors(files), definition).inclusive_jets(
        min_pt=pt_min
    )
    pt = np.hypot(jets.px, jets.py)
    mass2 = jets.E**2 - jets.px**2 - jets.py**2 - jets.pz**2
    record = ak.zip(
        {
            "pt": pt,
            "eta": np.arcsinh(jets.pz / pt),
            "mass": np.sqrt(np.maximum(mass2, 0)),
        }
    )
    return record[ak.argsort(record.pt, axis=1, ascending=False)]


def leading_fatjet_mass(files, pt_range=(800.0, 900.0), eta_max=1.0):
    """Mass of the leading R = 0.8 ``FatJet`` of each event inside the window."""
    jets = _read(files, ["FatJet"])["FatJet"][:, :1]
    inside = (pt_range[0] < jets.PT) & (pt_range[1] > jets.PT)
    inside = inside & (np.abs(jets.Eta) < eta_max)
    return ak.to_numpy(ak.flatten(jets.Mass[inside]))


def _delta_r(a, b):
    d_phi = (a.Phi - b.Phi + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(a.Eta - b.Eta, d_phi)


def _gen_jets(data, pt_range, eta_max):
    gen = data["GenJet"]
    keep = (pt_range[0] < gen.PT) & (pt_range[1] > gen.PT) & (np.abs(gen.Eta) < eta_max)
    return gen[keep]


def jet_response(files, pt_range=(50.0, 300.0), eta_max=2.0, max_dr=0.2):
    """Jet.PT / GenJet.PT for generator jets in ``pt_range`` matched within
    ``max_dr`` to a reconstructed R = 0.5 jet: (matched jets,)."""
    data = _read(files, ["GenJet", "Jet"])
    gen = _gen_jets(data, pt_range, eta_max)
    pairs = ak.cartesian([gen, data["Jet"]], nested=True)  # (events, gen, reco)
    distance = _delta_r(pairs["0"], pairs["1"])
    best = ak.argmin(distance, axis=2, keepdims=True)
    matched_dr = ak.flatten(distance[best], axis=2)
    matched_pt = ak.flatten(pairs["1"].PT[best], axis=2)
    ratio = (matched_pt / gen.PT)[matched_dr < max_dr]
    return ak.to_numpy(ak.drop_none(ak.flatten(ratio)))


def eflow_multiplicity(files, pt_range=(50.0, 300.0), eta_max=2.0, radius=0.5):
    """Mean number of EFlowTrack, EFlowPhoton and EFlowNeutralHadron objects within
    ``radius`` of generator jets in ``pt_range``: {collection: mean}."""
    data = _read(files, ["GenJet", *(name for name, _ in _EFLOW)])
    gen = _gen_jets(data, pt_range, eta_max)
    means = {}
    for name, _ in _EFLOW:
        pairs = ak.cartesian([gen, data[name]], nested=True)
        inside = ak.sum(_delta_r(pairs["0"], pairs["1"]) < radius, axis=2)
        means[name] = float(ak.mean(inside)) if ak.count(inside) else float("nan")
    return means


def plot_validation(files_by_process, output):
    """Jet-mass figures of qcd, top and gluino samples, written to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    bins = np.linspace(0, 600, 49)
    for process, files in files_by_process.items():
        masses = leading_fatjet_mass(files)
        left.hist(masses, bins, histtype="step", density=True, label=process)
        jets = fat_jets(files)
        window = (jets.pt > 800) & (jets.pt < 900) & (np.abs(jets.eta) < 1)
        large = ak.to_numpy(ak.flatten(jets.mass[window]))
        right.hist(large, bins, histtype="step", density=True, label=process)
    left.set(xlabel="leading FatJet (R = 0.8) mass [GeV]", ylabel="density")
    right.set(xlabel="anti-kT R = 1.5 eflow jet mass [GeV]", ylabel="density")
    for axis in (left, right):
        axis.legend(title="800 < pT < 900 GeV, |eta| < 1")
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return Path(output)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with generated files")
    parser.add_argument("-o", "--output", type=Path, default=Path("validation.png"))
    args = parser.parse_args(argv)
    files = {
        process: sorted(glob.glob(str(args.folder / f"{process}_s*.root")))
        for process in ("qcd", "top", "gluino")
    }
    files = {k: v for k, v in files.items() if v}
    plot_validation(files, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
