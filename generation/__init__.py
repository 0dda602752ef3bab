"""Samples: Pythia 8 events through a CMS-like detector simulation, as Delphes files.

``generate_sample`` is the entry point (used by ``aejets generate`` and
``aejets run``); the pieces are ``processes`` (Pythia settings, SLHA spectrum),
``pythia`` (batched generation), ``detector`` (the simulation) and
``delphes_format`` (the tree writer).
"""

from generation.processes import PROCESSES, SHOWERS
from generation.production import SampleResult, generate_sample

__all__ = ["PROCESSES", "SHOWERS", "SampleResult", "generate_sample"]
