"""The outbound benchmark script keeps working (figures are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.http_servers import ROOT

pytestmark = pytest.mark.slow


def test_outbound_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "outbound.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.outbound", "--smoke", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    subjects = json.loads(out.read_text())["subjects"]
    assert {"bare", "ratelimit_mw"} <= set(subjects)
    assert all(len(s["values"]) == 2 and s["median"] > 0 for s in subjects.values())
    assert "target: ratelimit_mw adds at most 5%" in proc.stdout
