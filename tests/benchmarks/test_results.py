"""benchmarks/RESULTS.md is rendered from a run's JSON: machine, command, every target and section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.results import main, render

SMOKE = Path(__file__).with_name("smoke_run.json")  # written by `benchmarks.run --smoke --json`


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SMOKE.read_text(encoding="utf-8"))
    return data


def test_the_page_names_machine_command_and_run(run: dict[str, Any]) -> None:
    page = render(run)
    meta = run["meta"]
    assert page.startswith("# Benchmark results\n")
    assert "`.venv/bin/python -m benchmarks.run --smoke --json run.json`" in page
    assert f"{meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}" in page
    assert meta["started"] in page and meta["git"] in page
    assert "Smoke run" in page  # a smoke run is never mistaken for figures


def test_every_target_and_section_is_on_the_page(run: dict[str, Any]) -> None:
    page = render(run)
    lines = page.splitlines()
    for target in run["targets"]:
        row = next(line for line in lines if f"| {target['text']} |" in line)
        expected = {True: "| pass", False: "| MISS", None: "| not measured"}[target["passed"]]
        assert expected in row, row
    for section in run["sections"].values():
        assert f"## {section['title']}" in lines
        for sample in section.get("samples", []):
            assert f"| {sample['subject'].replace('|', chr(92) + '|')} |" in page


def test_a_full_run_has_no_smoke_warning_and_a_failed_section_shows_its_error(run: dict[str, Any]) -> None:
    full = {**run, "meta": {**run["meta"], "mode": "full", "repeats": 7}}
    name = next(iter(full["sections"]))
    full["sections"] = {**full["sections"], name: {"title": "Broken", "status": "error", "error": "OSError: x"}}
    page = render(full)
    assert "Smoke run" not in page
    assert "`.venv/bin/python -m benchmarks.run --json run.json`" in page
    assert "## Broken\n\nFailed: `OSError: x`" in page


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SMOKE)]) == 0
    assert capsys.readouterr().out.startswith("# Benchmark results")
    assert main([]) == 1
