"""Which jets train the models and which evaluate them.

The split is by event number, so that it is the same in every stage without storing
anything: training, contamination and evaluation all call :func:`is_training`. A
signal jet mixed into a training set (``--contamination``) therefore never appears in
the evaluation histograms.
"""

import numpy as np

__all__ = ["is_training"]


def is_training(event_number):
    """True for jets of even event numbers (training pool), False for odd (evaluation)."""
    return np.asarray(event_number) % 2 == 0
