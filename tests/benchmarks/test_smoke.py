"""The benchmark suite keeps working: its smoke mode runs every section once and exits 0.

Figures are never asserted (they depend on the machine); only that every section
ran and reported, in the JSON the suite writes. Peers that are not installed
(the ``bench`` extra) make their rows "skipped", not the section fail.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import SECTIONS

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_smoke_run_covers_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    data = json.loads(out.read_text())
    assert set(data["sections"]) == set(SECTIONS)
    for name, section in data["sections"].items():
        assert section["status"] == "ok", (name, section.get("error"))
        assert section["samples"], f"{name} reported no figures"
    assert {t["number"] for t in data["targets"]} == {*range(1, 11), 17}
    assert data["meta"]["mode"] == "smoke"


def test_locustfile_is_valid_python() -> None:
    source = (REPO / "examples" / "locustfile.py").read_text()
    tree = ast.parse(source)
    names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"ApiClient", "SeedShape"} <= names
