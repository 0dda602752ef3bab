"""Small generated Delphes samples shared by the tests.

:func:`session_samples` runs ``generate_sample`` once per test session for qcd,
top and gluino (200 events each, seed 1) and returns ``{process: SampleResult}``;
later calls in the same session (from any test module) get the same samples. A
module uses it through its own session fixture::

    @pytest.fixture(scope="session")
    def samples(tmp_path_factory):
        return session_samples(tmp_path_factory)
"""

SAMPLE_EVENTS = 200
PROCESSES = ("qcd", "top", "gluino")

_CACHE = {}


def make_samples(out_dir, events=SAMPLE_EVENTS, processes=PROCESSES, seed=1):
    from generation import generate_sample

    return {
        process: generate_sample(process, events, out_dir, seed=seed, jobs=1)
        for process in processes
    }


def session_samples(tmp_path_factory):
    """{process: SampleResult} of 200-event samples, generated once per session."""
    if "samples" not in _CACHE:
        _CACHE["samples"] = make_samples(tmp_path_factory.mktemp("generated"))
    return _CACHE["samples"]
