"""The histograms every result is made from, defined once.

``loss``       (dataset, model, loss)        the anomaly score of each jet
``mass_loss``  (dataset, model, mass, loss)  jet mass against the score
``mass``       (dataset, mass)               the jet-mass baseline, finely binned

Signal jets that fail the truth requirements (match and merge) fill the dataset
category ``<dataset>_failing_truth`` (:data:`FAILING_TRUTH`), never ``<dataset>``.

Weights are cross section over sum of generator weights (pb per jet); the results
multiply by a luminosity. Loss bins are log-spaced with 100 bins a decade, so that
efficiencies down to 1e-3 are resolved for losses anywhere in [1e-10, 1).
"""

import hist
import hist.dask

__all__ = [
    "FAILING_TRUTH",
    "LOSS_RANGE",
    "MASS_RANGE",
    "book",
]

FAILING_TRUTH = "_failing_truth"
LOSS_RANGE = (1e-10, 1.0)
LOSS_BINS_PER_DECADE = 100
MASS_RANGE = (0.0, 1000.0)  # GeV; fat jets of pT < 900 GeV and R = 1.5 stay below


def _axes():
    dataset = hist.axis.StrCategory([], growth=True, name="dataset", label="Dataset")
    model = hist.axis.StrCategory([], growth=True, name="model", label="Model")
    decades = 10
    loss_fine = hist.axis.Regular(
        decades * LOSS_BINS_PER_DECADE,
        *LOSS_RANGE,
        transform=hist.axis.transform.log,
        name="loss",
        label="Reconstruction loss (MSE)",
    )
    loss_coarse = hist.axis.Regular(
        decades * 10,
        *LOSS_RANGE,
        transform=hist.axis.transform.log,
        name="loss",
        label="Reconstruction loss (MSE)",
    )
    mass_fine = hist.axis.Regular(500, *MASS_RANGE, name="mass", label="Jet mass [GeV]")
    mass_coarse = hist.axis.Regular(
        100, *MASS_RANGE, name="mass", label="Jet mass [GeV]"
    )
    return dataset, model, loss_fine, loss_coarse, mass_fine, mass_coarse


def book(lazy=True):
    """Empty histograms, as ``hist.dask.Hist`` (``lazy``) or ``hist.Hist``."""
    cls = hist.dask.Hist if lazy else hist.Hist
    dataset, model, loss_fine, loss_coarse, mass_fine, mass_coarse = _axes()
    storage = hist.storage.Weight()
    return {
        "loss": cls(dataset, model, loss_fine, storage=storage),
        "mass_loss": cls(dataset, model, mass_coarse, loss_coarse, storage=storage),
        "mass": cls(dataset, mass_fine, storage=storage),
    }
