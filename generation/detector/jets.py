"""Anti-kT jets with fastjet over a whole batch of events at once.

fastjet clusters every event of the batch in one call and returns, per jet, the
indices of its constituents; the jet properties Delphes writes are then summed
over the flat constituent arrays with ``np.add.reduceat``, one segment per jet.
"""

import os
import sys

import awkward as ak
import numpy as np

__all__ = ["cluster"]

_BANNER_SHOWN = False


def quiet_fastjet():
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


def cluster(inputs, counts, radius, pt_min):
    """Cluster the constituents of every event with anti-kT.

    ``inputs``: flat arrays px, py, pz, E (and optionally charge, eem, ehad for the
    jet composition) of all constituents, grouped by event with ``counts``
    (events,). Returns (jet counts (events,), {Delphes jet field: (jets,)}) with
    the jets of each event sorted by decreasing pT.
    """
    fastjet = quiet_fastjet()
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    momenta = ak.unflatten(
        ak.zip({name: inputs[name] for name in ("px", "py", "pz", "E")}), counts
    )
    sequence = fastjet.ClusterSequence(momenta, definition)
    jets = sequence.inclusive_jets(min_pt=pt_min)  # (events, jets)
    index = sequence.constituent_index(min_pt=pt_min)  # (events, jets, members)

    jet_counts = ak.to_numpy(ak.num(jets))  # (events,)
    jet_event = np.repeat(np.arange(len(counts)), jet_counts)  # (jets,)
    members = ak.to_numpy(ak.flatten(ak.num(index, axis=2)))  # (jets,)
    # Flat constituent positions in ``inputs``: local index + event offset.
    event_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    local = ak.to_numpy(ak.flatten(index, axis=None)).astype(np.int64)
    position = local + np.repeat(event_start[jet_event], members)  # (members,)

    jet_p = [ak.to_numpy(ak.flatten(jets[name])) for name in ("px", "py", "pz", "E")]
    with np.errstate(divide="ignore", invalid="ignore"):
        fields = _jet_fields(jet_p, inputs, position, members)
    order = np.lexsort((-fields["PT"], jet_event))
    return jet_counts, {name: values[order] for name, values in fields.items()}


def kinematics(px, py, pz, e):
    """(pt, eta, phi, mass) of four-vectors."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / pt), np.sign(pz) * 999.9)
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - pt**2 - pz**2, 0.0))
    return pt, eta, phi, mass


def _jet_fields(jet_p, inputs, position, members):
    pt, eta, phi, mass = kinematics(*jet_p)
    starts = np.concatenate([[0], np.cumsum(members)[:-1]])  # (jets,)

    def per_jet(values, reduce=np.add):
        if len(members) == 0:
            return np.zeros(0)
        return reduce.reduceat(values, starts)

    c = {name: inputs[name][position] for name in inputs}  # (members,)
    c_pt, c_eta, c_phi, _ = kinematics(c["px"], c["py"], c["pz"], c["E"])
    d_eta = c_eta - np.repeat(eta, members)
    d_phi = (c_phi - np.repeat(phi, members) + np.pi) % (2 * np.pi) - np.pi
    sum_pt = per_jet(c_pt)
    sum_pt2 = per_jet(c_pt**2)
    fields = {
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "Mass": mass,
        "DeltaEta": per_jet(np.abs(d_eta), np.maximum),
        "DeltaPhi": per_jet(np.abs(d_phi), np.maximum),
        "PTD": np.sqrt(sum_pt2) / sum_pt,
        "MeanSqDeltaR": per_jet(c_pt**2 * (d_eta**2 + d_phi**2)) / sum_pt2,
    }
    if "charge" in inputs:
        charged = c["charge"] != 0
        energy = per_jet(c["E"])
        charged_energy = per_jet(np.where(charged, c["E"], 0.0))
        eem, ehad = per_jet(c["eem"]), per_jet(c["ehad"])
        fields.update(
            {
                "Charge": per_jet(c["charge"]),
                "NCharged": per_jet(charged.astype(np.int64)),
                "NNeutrals": per_jet((~charged).astype(np.int64)),
                "ChargedEnergyFraction": charged_energy / energy,
                "NeutralEnergyFraction": (energy - charged_energy) / energy,
                "EhadOverEem": np.where(eem > 0, ehad / eem, 999.9),
            }
        )
    return fields
