import json
import math
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_benchmarks_give_every_figure_finite(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert payload["failures"] == {}
    assert {"hardware.matmul_gflops", "hardware.memory_bandwidth_gbs"} <= set(figures)
    for name, value in figures.items():
        assert value is not None and math.isfinite(value), name
