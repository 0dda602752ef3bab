"""The physics processes: Pythia 8 settings for QCD, hadronic ttbar and RPV gluinos.

Each process is a declarative list of Pythia settings. The hard-process pT window
(``PhaseSpace:pTHatMin/Max``) is chosen so that most events hold a fat jet with
800 < pT < 900 GeV; see ``PT_HAT_WINDOW``. The gluino sample needs an SLHA
spectrum, written here from code for the requested mass (:func:`write_slha`).
"""

from dataclasses import dataclass
from pathlib import Path

from analysis.errors import ConfigError

__all__ = [
    "PROCESSES",
    "SHOWERS",
    "GLUINO_MASS_RANGE",
    "Process",
    "check_gluino_mass",
    "check_shower",
    "get_process",
    "pythia_settings",
    "write_slha",
]

# Hard-process pT window (GeV). Anti-kT R = 1.5 jets collect initial-state
# radiation and underlying event and come out ~5% above the parton pT, so the
# window sits a little below 800-900: then 52-59% of the events hold such a jet
# with abs(eta) < 1 (measured on 400 events of each process).
PT_HAT_WINDOW = (780.0, 880.0)

# Gluino masses the SLHA writer accepts (GeV): below 100 GeV the spectrum is long
# excluded and above 3 TeV the pair cannot be boosted into the 800-900 GeV window.
GLUINO_MASS_RANGE = (100.0, 3000.0)
DEFAULT_GLUINO_MASS = 400.0

COMMON_SETTINGS = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 13000.",
    "Print:quiet = on",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowInfo = 0",
    "Check:event = on",
    "Random:setSeed = on",
)

# Parton-shower models inside Pythia 8. "pythia" is the default simple shower;
# Vincia stands in for the study's Herwig robustness sample. Dire does not
# initialize with default settings in this Pythia build, so it is not offered.
SHOWERS = {
    "pythia": ("PartonShowers:model = 1",),
    "vincia": ("PartonShowers:model = 2", "Print:verbosity = 0"),
}


@dataclass(frozen=True)
class Process:
    name: str
    signal: bool
    settings: tuple[str, ...]
    description: str
    needs_slha: bool = False


def _window():
    low, high = PT_HAT_WINDOW
    return (f"PhaseSpace:pTHatMin = {low:g}", f"PhaseSpace:pTHatMax = {high:g}")


PROCESSES = {
    "qcd": Process(
        "qcd",
        signal=False,
        settings=("HardQCD:all = on", *_window()),
        description="QCD 2->2 scattering (HardQCD:all)",
    ),
    "top": Process(
        "top",
        signal=True,
        settings=(
            "Top:gg2ttbar = on",
            "Top:qqbar2ttbar = on",
            # W -> q q' only (onMode 1-5 are the quark channels), so t -> b q q'.
            "24:onMode = off",
            "24:onIfAny = 1 2 3 4 5",
            *_window(),
        ),
        description="ttbar, both tops decaying hadronically",
    ),
    "gluino": Process(
        "gluino",
        signal=True,
        settings=(
            "SUSY:gg2gluinogluino = on",
            "SUSY:qqbar2gluinogluino = on",
            "SLHA:useDecayTable = on",
            "SLHA:minMassSM = 1000.",
            "SLHA:verbose = 0",
            *_window(),
        ),
        description="gluino pairs, each decaying to u d s through an RPV UDD coupling",
        needs_slha=True,
    ),
}


def get_process(name):
    try:
        return PROCESSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown process {name!r}; choose one of {', '.join(sorted(PROCESSES))}"
        ) from None


def check_shower(shower):
    if shower not in SHOWERS:
        raise ConfigError(
            f"unknown shower {shower!r}; choose one of {', '.join(sorted(SHOWERS))}"
        )
    return shower


def check_gluino_mass(mass):
    low, high = GLUINO_MASS_RANGE
    try:
        mass = float(mass)
    except (TypeError, ValueError):
        raise ConfigError(f"gluino mass {mass!r} is not a number") from None
    if not low <= mass <= high:
        raise ConfigError(
            f"gluino mass {mass:g} GeV is out of range; choose {low:g}-{high:g} GeV"
        )
    return mass


def pythia_settings(process, seed, shower="pythia", slha_path=None):
    """All ``readString`` lines for one generator instance."""
    process = get_process(process) if isinstance(process, str) else process
    lines = [*COMMON_SETTINGS, f"Random:seed = {int(seed)}", *SHOWERS[shower]]
    lines += process.settings
    if process.needs_slha:
        if slha_path is None:
            raise ConfigError(f"process {process.name!r} needs an SLHA file")
        lines.append(f"SLHA:file = {slha_path}")
    return lines


# Sparticles decoupled at 5 TeV; the gluino alone is light. PDG code -> name.
_HEAVY_SPARTICLES = {
    1000001: "~d_L",
    2000001: "~d_R",
    1000002: "~u_L",
    2000002: "~u_R",
    1000003: "~s_L",
    2000003: "~s_R",
    1000004: "~c_L",
    2000004: "~c_R",
    1000005: "~b_1",
    2000005: "~b_2",
    1000006: "~t_1",
    2000006: "~t_2",
    1000011: "~e_L",
    2000011: "~e_R",
    1000012: "~nu_eL",
    1000013: "~mu_L",
    2000013: "~mu_R",
    1000014: "~nu_muL",
    1000015: "~tau_1",
    2000015: "~tau_2",
    1000016: "~nu_tauL",
    1000022: "~chi_10",
    1000023: "~chi_20",
    1000025: "~chi_30",
    1000035: "~chi_40",
    1000024: "~chi_1+",
    1000037: "~chi_2+",
}
_HIGGS = {25: 125.0, 35: 5000.0, 36: 5000.0, 37: 5000.0}
_GLUINO_WIDTH = 0.01  # GeV: prompt decay, narrow compared with the mass resolution


def _identity_block(name, size):
    rows = [f"BLOCK {name}"]
    rows += [
        f"  {i} {j} {1.0 if i == j else 0.0:.6e}"
        for i in range(1, size + 1)
        for j in range(1, size + 1)
    ]
    return rows


def slha_text(mass=DEFAULT_GLUINO_MASS):
    """An SLHA spectrum: gluino of ``mass`` GeV decaying to u d s, rest decoupled.

    Pythia treats SUSY as active only when the spectrum is complete (all masses and
    the mixing blocks); otherwise it uses the masses only and switches SUSY off.
    """
    mass = check_gluino_mass(mass)
    rows = [
        "# written by aejets: RPV UDD gluino, all other sparticles decoupled",
        "BLOCK SPINFO",
        "  1 aejets",
        "  2 1.0",
        "BLOCK MODSEL",
        "  1 0",
        "  4 1",
        "BLOCK SMINPUTS",
        "  1 1.27934e+02",
        "  2 1.16637e-05",
        "  3 1.18000e-01",
        "  4 9.11876e+01",
        "  5 4.18000e+00",
        "  6 1.73000e+02",
        "  7 1.77700e+00",
        "BLOCK MASS",
        f"  1000021 {mass:.6e}",
    ]
    rows += [f"  {pdg} {5000.0:.6e}" for pdg in _HEAVY_SPARTICLES]
    rows += [f"  {pdg} {value:.6e}" for pdg, value in _HIGGS.items()]
    rows += _identity_block("NMIX", 4)
    rows += _identity_block("UMIX", 2)
    rows += _identity_block("VMIX", 2)
    rows += _identity_block("STOPMIX", 2)
    rows += _identity_block("SBOTMIX", 2)
    rows += _identity_block("STAUMIX", 2)
    rows += [
        "BLOCK ALPHA",
        "  -1.0e-01",
        "BLOCK HMIX Q= 1.0e+03",
        "  1 1.0e+03",
        "  2 1.0e+01",
        "  3 2.4e+02",
        "  4 2.5e+07",
        # The UDD coupling lambda''_112 (u d s); the decay table below fixes the
        # branching, the coupling only documents where it comes from.
        "BLOCK RVLAMUDD",
        "  1 1 2 1.0e-01",
        f"DECAY 1000021 {_GLUINO_WIDTH:.6e}",
        "  5.0e-01 3 2 1 3",
        "  5.0e-01 3 -2 -1 -3",
    ]
    rows += [f"DECAY {pdg} 1.0e+00" for pdg in _HEAVY_SPARTICLES]
    return "\n".join(rows) + "\n"


def write_slha(path, mass=DEFAULT_GLUINO_MASS):
    path = Path(path)
    path.write_text(slha_text(mass))
    return path
