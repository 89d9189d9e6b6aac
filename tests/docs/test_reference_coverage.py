"""Pages that list things the code defines list all of them: metrics, log events, public names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import ratelimit_mw
from ratelimit_mw import log
from ratelimit_mw.metrics import RateLimitMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
EVENTS = sorted(
    value for name, value in vars(log).items() if name.isupper() and name != "LOGGER_NAME" and isinstance(value, str)
)


def _table_names(page: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", (DOCS / page).read_text(encoding="utf-8"), re.M))


def test_every_log_event_has_a_row() -> None:
    assert len(EVENTS) >= 8
    missing = set(EVENTS) - _table_names("observability.md")
    assert not missing, f"log events missing from docs/observability.md: {sorted(missing)}"


def test_every_metric_has_a_row_and_every_row_a_metric() -> None:
    samples = RateLimitMetrics(CollectorRegistry()).names
    rows = {name for name in _table_names("observability.md") if name.startswith("ratelimit_")}
    bases = {re.sub(r"_total$", "", row) for row in rows}
    suffix = re.compile(r"_(total|created|bucket|count|sum)$")
    undocumented = {s for s in samples if s not in rows and suffix.sub("", s) not in bases}
    assert len(rows) >= 8 and not undocumented, f"metrics missing from docs/observability.md: {sorted(undocumented)}"
    phantom = {row for row in rows if not any(s == row or suffix.sub("", s) == re.sub(r"_total$", "", row)
                                              for s in samples)}
    assert not phantom, f"docs/observability.md lists metrics that do not exist: {sorted(phantom)}"


@pytest.mark.parametrize("name", [n for n in ratelimit_mw.__all__ if n != "__version__"])
def test_every_public_name_is_in_the_api_reference(name: str) -> None:
    assert f"::: ratelimit_mw.{name}\n" in (DOCS / "api.md").read_text(encoding="utf-8")
