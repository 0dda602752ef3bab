"""Anti-kT jets with fastjet over a whole batch of events at once.

The input is a jagged set of constituents (one list per event); fastjet clusters
every event in one call and returns the jets and, per jet, the indices of its
constituents, from which the jet properties Delphes writes are summed.
"""

import os
import sys

import awkward as ak
import numpy as np

__all__ = ["cluster"]


_BANNER_SHOWN = False


def _quiet_fastjet():
    """Import fastjet and spend its one-time C++ banner on /dev/null.

    The banner goes straight to file descriptor 1 on the first clustering, so it is
    redirected at that level once per process; library code must not print.
    """
    global _BANNER_SHOWN
    import fastjet

    if not _BANNER_SHOWN:
        probe = ak.Array([[{"px": 1.0, "py": 0.0, "pz": 0.0, "E": 1.0}]])
        definition = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as sink:
                os.dup2(sink.fileno(), 1)
                fastjet.ClusterSequence(probe, definition).inclusive_jets()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    return fastjet


def cluster(constituents, radius, pt_min):
    """Cluster ``constituents`` (events, objects) with anti-kT.

    ``constituents`` is an awkward record array with fields px, py, pz, E, and
    optionally charge, eem, ehad (used for the jet composition). Returns an awkward
    record array (events, jets) with the Delphes jet fields, sorted by pT.
    """
    fastjet = _quiet_fastjet()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    momenta = ak.zip(
        {name: constituents[name] for name in ("px", "py", "pz", "E")},
        with_name="Momentum4D",
    )
    sequence = fastjet.ClusterSequence(momenta, definition)
    jets = sequence.inclusive_jets(min_pt=pt_min)  # (events, jets)
    index = sequence.constituent_index(min_pt=pt_min)  # (events, jets, members)

    # Constituents of every jet: (events, jets, members)
    per_event = ak.num(index, axis=2)
    flat_index = ak.flatten(index, axis=2)
    members = ak.unflatten(constituents[flat_index], ak.flatten(per_event), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        record = _jet_fields(jets, members)
    order = ak.argsort(record["PT"], axis=1, ascending=False)
    return record[order]


def _kinematics(px, py, pz, e):
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / pt, np.sign(pz) * 1e10))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - p**2, 0.0))
    return pt, eta, phi, mass


def _jet_fields(jets, members):
    pt, eta, phi, mass = _kinematics(jets.px, jets.py, jets.pz, jets.E)
    c_pt, c_eta, c_phi, _ = _kinematics(members.px, members.py, members.pz, members.E)
    d_eta = c_eta - eta
    d_phi = (c_phi - phi + np.pi) % (2 * np.pi) - np.pi
    d_r2 = d_eta**2 + d_phi**2
    sum_pt = ak.sum(c_pt, axis=2)
    sum_pt2 = ak.sum(c_pt**2, axis=2)
    fields = {
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "Mass": mass,
        "DeltaEta": ak.fill_none(ak.max(np.abs(d_eta), axis=2), 0.0),
        "DeltaPhi": ak.fill_none(ak.max(np.abs(d_phi), axis=2), 0.0),
        "PTD": np.sqrt(sum_pt2) / sum_pt,
        "MeanSqDeltaR": ak.sum(c_pt**2 * d_r2, axis=2) / sum_pt2,
    }
    if "charge" in ak.fields(members):
        charged = members.charge != 0
        energy = ak.sum(members.E, axis=2)
        charged_energy = ak.sum(ak.where(charged, members.E, 0.0), axis=2)
        eem = ak.sum(members.eem, axis=2)
        ehad = ak.sum(members.ehad, axis=2)
        fields.update(
            {
                "Charge": ak.sum(members.charge, axis=2),
                "NCharged": ak.sum(charged, axis=2),
                "NNeutrals": ak.sum(~charged, axis=2),
                "ChargedEnergyFraction": charged_energy / energy,
                "NeutralEnergyFraction": (energy - charged_energy) / energy,
                "EhadOverEem": ak.where(eem > 0, ehad / eem, 999.9),
            }
        )
    return ak.zip(fields)
