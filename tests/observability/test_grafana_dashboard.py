"""The example Grafana dashboard queries exactly the metrics RateLimitMetrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ratelimit_mw.engine import build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.metrics import RateLimitMetrics
from ratelimit_mw.testing import FakeClock, FakeRequest
from tests.observability.helpers import POLICIES, FlakyBackend

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana_dashboard.json"
METRIC = re.compile(r"\bratelimit_[a-z_]+")


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def _exported_samples() -> set[str]:
    """Every sample name a busy registry exports: decisions, backend calls and errors, fallback."""
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    clock = FakeClock()
    backend = FlakyBackend()
    limiter = Limiter(backend, clock=clock, on_backend_error="memory", breaker_threshold=1)
    engine = metrics.attach(build_engine(POLICIES, limiter=limiter))
    engine.decide(FakeRequest("GET", "/resource"))
    backend.failing = True
    engine.decide(FakeRequest("GET", "/resource"))  # backend error, breaker opens
    limiter.check("k", "1/second")  # the memory fallback answers
    memory = metrics.attach(Limiter("memory://?max_keys=1", clock=clock))  # held: metrics keep weak refs
    memory.check("a", "1/second")
    memory.check("b", "1/second")  # evicts "a"
    return {sample.name for family in registry.collect() for sample in family.samples}


def test_the_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 9
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "state-timeline", "stat"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_metric_in_the_dashboard_is_exported_and_every_family_is_shown() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in _expressions(dashboard) for name in METRIC.findall(expr)}
    exported = _exported_samples()
    assert used, "no metric found in the dashboard"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in used}
    assert families <= shown, f"exported but not on the dashboard: {sorted(families - shown)}"
