"""Multiprocess metrics for real: gunicorn with two sync workers sharing a metrics dir."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http_servers import http_server

WORK, TIGHT = 120, 30


@pytest.fixture
def gunicorn_url(tmp_path: Path) -> Iterator[str]:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    config = tmp_path / "gunicorn_conf.py"
    config.write_text("from ratelimit_mw.metrics import gunicorn_child_exit as child_exit\n")
    argv = ["gunicorn", "-c", str(config), "--workers", "2", "--worker-class", "sync",
            "--bind", "127.0.0.1:{port}", "--log-level", "warning", "tests.observability.gunicorn_app:app"]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with http_server(argv, tmp_path / "gunicorn.log", env, ready_path="/metrics") as url:
        yield url


@pytest.mark.slow
def test_counters_sum_over_gunicorn_workers(gunicorn_url: str) -> None:
    # No keep-alive: every request opens a new connection, so concurrent requests
    # spread over both workers' accept() calls. One client, shared by the threads.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=5, limits=no_keepalive) as client, ThreadPoolExecutor(8) as pool:
        work = list(pool.map(client.get, [gunicorn_url + "/work"] * WORK))
        tight = list(pool.map(client.get, [gunicorn_url + "/tight"] * TIGHT))
        scraped = client.get(gunicorn_url + "/metrics").text
    assert {r.status_code for r in work} == {200}
    assert {r.status_code for r in tight} == {200, 429}
    pids = {r.text for r in work}
    assert len(pids) == 2, f"both workers should have served requests, got {pids}"

    decisions: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            if sample.name == "ratelimit_decisions_total":
                key = (sample.labels["route"], sample.labels["outcome"])
                decisions[key] = decisions.get(key, 0.0) + sample.value
    assert decisions[("GET /work", "allowed")] == WORK
    assert decisions[("GET /tight", "allowed")] + decisions[("GET /tight", "limited")] == TIGHT
    # each worker has its own memory backend: 2 per worker pass, the rest is limited
    assert decisions[("GET /tight", "allowed")] <= 4
