"""Jets and images: reference against columnar, eager against dask, bad input."""

import json
import math
import shutil

import awkward as ak
import numpy as np
import pytest

from analysis.errors import InputError
from processors.image_processor import jets_and_images
from processors.images import jet_images
from processors.jets import ConstituentSource, JetConfig, clean_constituents
from tests.generated import session_samples
from tests.reference_images import reference_image

LOOSE = JetConfig(pt_range=(100.0, 10000.0), eta_max=2.5, max_jets=None)


def open_events(path, mode="eager"):
    from coffea.nanoevents import DelphesSchema, NanoEventsFactory

    return NanoEventsFactory.from_root(
        {str(path): "Delphes"},
        schemaclass=DelphesSchema,
        mode=mode,
        metadata={"filename": str(path)},
    ).events()


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    return session_samples(tmp_path_factory)


@pytest.fixture(scope="module")
def real_events(real_delphes_file):
    return open_events(real_delphes_file)


# ---- the reference chain: loops, single-event fastjet --------------------------


def reference_jets(events, config):
    """[(event, pt, eta, phi, mass, n_constituents, image)] with loops."""
    import fastjet

    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)
    out = []
    for e in range(len(events)):
        constituents = _event_constituents(events, config, e)
        pseudojets = []
        for k, (pt, eta, phi, mass) in enumerate(constituents):
            px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
            energy = math.sqrt(px * px + py * py + pz * pz + mass * mass)
            jet = fastjet.PseudoJet(px, py, pz, energy)
            jet.set_user_index(k)
            pseudojets.append(jet)
        sequence = fastjet.ClusterSequence(pseudojets, definition)
        jets = sorted(sequence.inclusive_jets(), key=lambda j: -j.pt())
        for jet in jets[: config.max_jets]:
            if not config.pt_range[0] < jet.pt() < config.pt_range[1]:
                continue
            if abs(jet.eta()) >= config.eta_max:
                continue
            members = [constituents[c.user_index()] for c in jet.constituents()]
            pts, etas, phis, _ = zip(*members, strict=True)
            image = reference_image(jet.eta(), jet.phi_std(), pts, etas, phis)
            out.append(
                (e, jet.pt(), jet.eta(), jet.phi_std(), jet.m(), len(pts), image)
            )
    return out


def _event_constituents(events, config, e):
    kept = []
    for source in config.sources:
        collection = events[source.name]
        pts = collection[source.pt][e].to_list()
        etas = collection["Eta"][e].to_list()
        phis = collection["Phi"][e].to_list()
        masses = (
            collection[source.mass][e].to_list() if source.mass else [0.0] * len(pts)
        )
        for pt, eta, phi, mass in zip(pts, etas, phis, masses, strict=True):
            usable = all(map(math.isfinite, (pt, eta, phi, mass))) and pt > 0
            if usable and abs(eta) < 100:
                kept.append((pt, eta, phi, mass))
    return kept


def assert_matches_reference(events, config, process=None):
    result = jets_and_images(events, config, process)
    expected = reference_jets(events, config)
    jets, images = result.jets, ak.to_numpy(result.images)
    assert len(jets) == len(expected) > 0
    assert images.dtype == np.float32 and images.shape == (len(jets), 37, 37)
    for k, (e, pt, eta, phi, mass, n, image) in enumerate(expected):
        assert jets.event[k] == events.Event.Number[e]
        assert jets.n_constituents[k] == n
        np.testing.assert_allclose(
            [jets.pt[k], jets.eta[k], jets.phi[k], jets.mass[k]],
            [pt, eta, phi, mass],
            rtol=1e-9,
            atol=1e-9,
        )
        np.testing.assert_allclose(images[k], image, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    return result


def test_images_match_reference_on_real_file(real_events):
    result = assert_matches_reference(real_events, LOOSE)
    assert set(np.unique(ak.to_numpy(result.jets.truth_pass))) == {True}


def test_images_match_reference_with_towers(real_events):
    config = LOOSE.model_copy(update={"constituents": "towers", "max_jets": 1})
    assert_matches_reference(real_events, config)


@pytest.mark.slow
@pytest.mark.parametrize("process", ["qcd", "top", "gluino"])
def test_images_match_reference_on_generated(samples, process):
    (path,) = samples[process].files
    events = open_events(path)
    signal = None if process == "qcd" else process
    config = JetConfig(pt_range=(500.0, 1200.0))
    result = assert_matches_reference(events, config, signal)
    if signal == "top":
        # Tops at pT ~ 850 GeV are mostly merged inside R = 1.5.
        assert np.mean(ak.to_numpy(result.jets.truth_pass)) > 0.4


# ---- known answers of the image definition --------------------------------------


def one_jet(points, jet_eta=0.0, jet_phi=0.0):
    pts, etas, phis = (ak.Array([list(column)]) for column in zip(*points, strict=True))
    return jet_images(np.array([jet_eta]), np.array([jet_phi]), pts, etas, phis)[0]


@pytest.mark.parametrize(
    "points",
    [
        [(3.0, 0.3, 0.0), (1.0, -0.9, 0.0)],  # major axis along eta already
        [(3.0, 0.0, 0.3), (1.0, 0.0, -0.9)],  # along phi: rotated onto the rows
        [(1.0, 0.9, 0.0), (3.0, -0.3, 0.0)],  # heavier side negative: flipped
    ],
)
def test_two_constituents_land_in_known_pixels(points):
    image = one_jet(points)
    expected = np.zeros((37, 37), np.float32)
    # centroid at 0: u = +0.3 (pT 3) -> row floor(1.9 / (3.2/37)) = 21,
    # u = -0.9 (pT 1) -> row 8; v = 0 -> column floor(1.6 / (3.2/37)) = 18.
    expected[21, 18], expected[8, 18] = 0.75, 0.25
    np.testing.assert_allclose(image, expected, atol=1e-7)


def test_jet_across_phi_pi_equals_jet_at_zero():
    rng = np.random.default_rng(3)
    pts = rng.exponential(20.0, 60)
    deta, dphi = rng.normal(0, 0.4, 60), rng.normal(0, 0.4, 60)
    at_zero = one_jet(list(zip(pts, 0.2 + deta, dphi, strict=True)), 0.2, 0.0)
    wrapped = (math.pi - 0.05 + dphi + math.pi) % (2 * math.pi) - math.pi
    at_pi = one_jet(
        list(zip(pts, 0.2 + deta, wrapped, strict=True)), 0.2, math.pi - 0.05
    )
    assert np.abs(wrapped).max() > 3  # constituents on both sides of +-pi
    np.testing.assert_allclose(at_pi, at_zero, atol=1e-6)
    np.testing.assert_allclose(
        at_pi,
        reference_image(
            0.2, math.pi - 0.05, pts, 0.2 + deta, np.asarray(wrapped).tolist()
        ),
        atol=1e-6,
    )


def test_image_is_invariant_under_rotation_and_reflection():
    rng = np.random.default_rng(7)
    pts = rng.exponential(10.0, 80)
    x, y = rng.normal(0, [0.5, 0.2], (80, 2)).T
    angle = 0.7
    xr = x * math.cos(angle) - y * math.sin(angle)
    yr = x * math.sin(angle) + y * math.cos(angle)
    base = one_jet(list(zip(pts, x, y, strict=True)))
    turned = one_jet(list(zip(pts, -xr, yr, strict=True)))
    np.testing.assert_allclose(turned, base, atol=1e-6)


# ---- eager against dask; only the needed branches ------------------------------


def test_dask_equals_eager_and_reads_only_needed_branches(real_delphes_file):
    import dask
    import dask_awkward as dak

    eager = jets_and_images(open_events(real_delphes_file), LOOSE, "top")
    lazy = jets_and_images(open_events(real_delphes_file, "dask"), LOOSE, "top")
    jets, images, dropped, rejected = dask.compute(*lazy, scheduler="sync")
    assert jets.to_list() == eager.jets.to_list()
    assert np.array_equal(ak.to_numpy(images), ak.to_numpy(eager.images))
    assert dropped.to_list() == eager.constituents_dropped.to_list()
    assert rejected.to_list() == eager.jets_rejected.to_list()

    (columns,) = dak.necessary_columns(*lazy).values()
    branches = {c for c in columns if not c.endswith("_size")}
    expected = {
        f"{name}/{name}.{field}"
        for name, fields in {
            "EFlowTrack": ("PT", "Eta", "Phi", "Mass"),
            "EFlowPhoton": ("ET", "Eta", "Phi"),
            "EFlowNeutralHadron": ("ET", "Eta", "Phi"),
            "Event": ("Number", "Weight"),
            "Particle": ("PID", "D1", "D2", "Eta", "Phi"),
        }.items()
        for field in fields
    }
    assert branches == expected


# ---- cleaning, empty events, truth ---------------------------------------------


def synthetic_events():
    """Three events: no constituents; bad ones around a hard jet; only bad ones."""
    nan, inf = float("nan"), float("inf")
    hard = [(300.0, 0.1, 0.2), (280.0, 0.3, 0.1), (270.0, -0.2, 0.3)]
    bad = [(nan, 0.0, 0.0), (50.0, inf, 0.0), (-5.0, 0.0, 0.0), (0.0, 0.1, 0.1)]
    events = [[], hard + bad, bad[:2]]
    tracks = ak.Array(
        [[{"PT": p, "Eta": e, "Phi": f} for p, e, f in event] for event in events]
    )
    header = ak.Array([{"Number": n, "Weight": 1.5} for n in (10, 11, 12)])
    return ak.zip({"Event": header, "EFlowTrack": tracks}, depth_limit=1)


TRACKS_ONLY = JetConfig(eflow_collections=(ConstituentSource(name="EFlowTrack"),))


def test_bad_constituents_are_dropped_and_counted():
    result = jets_and_images(synthetic_events(), TRACKS_ONLY)
    assert result.constituents_dropped.to_list() == [0, 4, 2]
    assert result.jets.event.to_list() == [11]
    assert result.jets.n_constituents.to_list() == [3]
    assert 800 < result.jets.pt[0] < 900
    image = ak.to_numpy(result.images)[0]
    assert np.isfinite(image).all() and image.sum() == pytest.approx(1.0, rel=1e-6)


def test_clean_constituents_keeps_only_usable_ones():
    pt = ak.Array([[1.0, float("nan"), 2.0], []])
    eta = ak.Array([[0.0, 0.0, 1e6], []])  # eta 1e6: sinh overflows -> dropped
    phi = ak.Array([[0.0, 0.0, 0.0], []])
    cleaned_pt, *_, dropped = clean_constituents(pt, eta, phi, pt * 0)
    assert cleaned_pt.to_list() == [[1.0], []]
    assert dropped.to_list() == [2, 0]


def test_missing_collection_names_file_branch_and_collections(real_events):
    config = JetConfig(tower_collections=(ConstituentSource(name="Calo", pt="ET"),))
    with pytest.raises(InputError) as error:
        jets_and_images(
            real_events, config.model_copy(update={"constituents": "towers"})
        )
    message = str(error.value)
    assert "delphes.root" in message and "Calo/Calo.ET" in message
    assert "EFlowTrack" in message and "--constituents eflow" in message


def particle_record():
    """One top event: t (copy) -> t -> W (-> W -> u dbar) b; tbar -> W- (-> e nu) bbar;
    and one gluino event whose quarks straddle phi = +-pi."""
    top = [
        (2212, -1, -1, 5.0, 0.0),
        (6, 2, 2, 0.1, 0.1),
        (6, 3, 4, 0.1, 0.1),
        (24, 5, 5, 0.2, 0.3),
        (5, -1, -1, 0.0, -0.2),
        (24, 6, 7, 0.25, 0.3),
        (2, -1, -1, 0.3, 0.4),
        (-1, -1, -1, 0.4, 0.2),
        (-6, 9, 10, -1.5, 3.0),
        (-24, 11, 12, -1.4, 3.1),
        (-5, -1, -1, -1.6, 2.9),
        (11, -1, -1, -1.4, 3.1),
        (-12, -1, -1, -1.3, 3.0),
    ]
    gluino = [
        (1000021, 1, 1, 0.0, 3.1),
        (1000021, 2, 4, 0.0, 3.1),
        (2, -1, -1, 0.2, -3.0),
        (1, -1, -1, -0.3, 3.0),
        (3, -1, -1, 0.5, 3.1),
    ]
    keys = ("PID", "D1", "D2", "Eta", "Phi")
    return ak.Array(
        [[dict(zip(keys, p, strict=True)) for p in event] for event in (top, gluino)]
    )


def test_truth_flags_known_answers():
    from processors.jets import truth_flags

    particles = particle_record()
    top_jets = ak.Array([[0.1, -1.5, 2.0], []])
    top_phis = ak.Array([[0.1, 3.0, -2.0], []])
    matched, merged = truth_flags(top_jets, top_phis, particles, 6, 3, 0.6)
    assert matched.to_list() == [[True, True, False], []]
    assert merged.to_list() == [[True, False, False], []]  # tbar decays leptonically

    gluino_eta = ak.Array([[], [0.0, 0.0, -0.5]])
    gluino_phi = ak.Array([[], [3.1, -3.0, 3.1]])
    matched, merged = truth_flags(gluino_eta, gluino_phi, particles, 1000021, 3, 0.6)
    assert matched.to_list() == [[], [True, True, True]]
    assert merged.to_list() == [[], [True, True, False]]  # (0.5, 3.1) at dR 1.0


# ---- the command: runner, Parquet, report, failures -----------------------------


def corrupt_copy(source, target):
    """A copy whose EFlowTrack.PT basket is garbage: every chunk fails to read."""
    import uproot

    with uproot.open(source) as handle:
        branch = handle["Delphes"]["EFlowTrack/EFlowTrack.PT"]
        seek = int(branch.member("fBasketSeek")[0])
        size = int(branch.member("fBasketBytes")[0])
    data = bytearray(source.read_bytes())
    data[seek + size // 2 : seek + size] = b"\xff" * (size - size // 2)
    target.write_bytes(data)


def make_fileset(tmp_path, real_delphes_file):
    corrupt_copy(real_delphes_file, tmp_path / "corrupt.root")
    (tmp_path / "text.root").write_text("not a ROOT file")
    files = {str(real_delphes_file): "Delphes"}
    files.update({str(tmp_path / n): "Delphes" for n in ("corrupt.root", "text.root")})
    fileset = {"top": {"files": files, "metadata": {"process": "top", "signal": True}}}
    path = tmp_path / "datasets.json"
    path.write_text(json.dumps(fileset))
    return path


@pytest.mark.slow
def test_command_writes_parquet_and_report(
    tmp_path, real_delphes_file, real_events, scheduler
):
    from analysis import cli

    fileset = make_fileset(tmp_path, real_delphes_file)
    common = ["images", "--fileset", str(fileset), "--dataset", "top"]
    options = ["--pt-range", "100", "10000", "--eta-max", "2.5", "--max-jets", "0"]
    options += ["--step-size", "13", "--scheduler", scheduler]
    out = tmp_path / "images"
    assert cli.main([*common, "--out", str(out), *options]) == 0

    report = json.loads((out / "top" / "report.json").read_text())
    eager = jets_and_images(real_events, LOOSE, "top")
    assert report["counts"]["events"] == 25
    assert report["counts"]["jets_selected"] == len(eager.jets)
    assert report["counts"]["jets_failing_truth"] == len(eager.jets)  # no top inside
    assert report["counts"]["constituents_dropped"] == ak.sum(
        eager.constituents_dropped
    )
    failed = {f["file"].rsplit("/", 1)[-1]: f for f in report["failures"]}
    assert set(failed) == {"corrupt.root", "text.root"}
    assert "decompressing" in failed["corrupt.root"]["reason"]  # chunk by chunk
    assert failed["corrupt.root"]["entries"] in ([0, 13], [13, 25])

    table = ak.from_parquet(sorted((out / "top").glob("part-*.parquet")))
    order = np.lexsort((-ak.to_numpy(table.pt), ak.to_numpy(table.event)))
    table = table[order]
    assert table.event.to_list() == eager.jets.event.to_list()
    assert set(table.dataset.to_list()) == {"top"}
    np.testing.assert_array_equal(ak.to_numpy(table.image), ak.to_numpy(eager.images))

    assert cli.main([*common, "--out", str(tmp_path / "ff"), *options, "--fail-fast"])


def test_part_names_do_not_depend_on_where_the_sample_lives(
    tmp_path, real_delphes_file, scheduler
):
    # Same files elsewhere (a moved sample, another checkout): same part names, so
    # training reads the files in the same order and trains the same models.
    from analysis import cli

    names = []
    for place in ("here", "elsewhere/deeper"):
        folder = tmp_path / place / "top"
        folder.mkdir(parents=True)
        shutil.copy(real_delphes_file, folder / "events.root")
        fileset = tmp_path / place / "datasets.json"
        entry = {"files": {"top/events.root": "Delphes"}, "metadata": {}}
        fileset.write_text(json.dumps({"top": entry}))
        out = tmp_path / place / "images"
        argv = ["images", "--fileset", str(fileset), "--dataset", "top"]
        argv += ["--out", str(out), "--pt-range", "100", "10000", "--eta-max", "2.5"]
        argv += ["--step-size", "13", "--scheduler", scheduler]
        assert cli.main(argv) == 0
        names.append(sorted(p.name for p in (out / "top").glob("part-*.parquet")))
    assert len(names[0]) == 2
    assert names[0] == names[1]
