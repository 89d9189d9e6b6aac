"""The demo app in a real uvicorn process, driven over loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.http_servers import http_server

ADMIN_TOKEN = "e2e-admin-token-0123456789"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("uvicorn") / "server.log"
    argv = ["uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning"]
    env = {"RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": "memory://"}
    with http_server(argv, log_path, env, ready_path="/health") as url:
        yield url


@pytest.mark.slow
def test_demo_answers_200_then_429_over_http(demo_url: str) -> None:
    with httpx.Client(base_url=demo_url, timeout=5) as client:
        key = {"X-API-Key": "e2e-client"}
        first = client.get("/resource", headers=key)
        assert first.status_code == 200
        assert first.headers["X-RateLimit-Limit"] == "40"
        assert "RateLimit-Policy" in first.headers
        start = time.monotonic()
        allowed = 1
        for _ in range(500):  # bounded: the bucket runs dry long before this
            if client.get("/resource", headers=key).status_code == 429:
                break
            allowed += 1
        elapsed = time.monotonic() - start
        # a 40-token bucket refilled at 10/s: at least 40 pass, and no more than refill allows
        assert 40 <= allowed <= 40 + int(10 * elapsed) + 1
        denied = [r for r in (client.get("/resource", headers=key) for _ in range(5)) if r.status_code == 429]
        assert denied and int(denied[0].headers["Retry-After"]) >= 1
        assert client.get("/resource", headers={"X-API-Key": "someone-else"}).status_code == 200
        health = [client.get("/health").status_code for _ in range(100)]
        assert set(health) == {200}


@pytest.mark.slow
def test_demo_serves_metrics_and_admin_api(demo_url: str) -> None:
    with httpx.Client(base_url=demo_url, timeout=5) as client:
        for _ in range(3):
            client.get("/resource", headers={"X-API-Key": "metrics-client"})
        scrape = client.get("/metrics")
        assert scrape.status_code == 200
        allowed = [
            line for line in scrape.text.splitlines()
            if line.startswith("ratelimit_decisions_total{") and 'outcome="allowed"' in line
            and 'route="GET /resource"' in line
        ]
        assert allowed and float(allowed[0].rsplit(" ", 1)[1]) >= 3
        assert client.get("/admin/policies").status_code == 401
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        document = client.get("/admin/policies", headers=auth)
        assert document.status_code == 200 and document.json()["version"] == 1
        patch = client.patch(
            "/admin/policies", headers={**auth, "Content-Type": "application/merge-patch+json"},
            json={"policies": {"free": {"limits": ["2/minute"]}}},
        )
        assert patch.status_code == 200, patch.text
        key = {"X-API-Key": "after-patch"}
        statuses = [client.get("/resource", headers=key).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
