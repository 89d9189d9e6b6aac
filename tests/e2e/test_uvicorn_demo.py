"""The demo app in a real uvicorn process, driven over loopback HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("uvicorn") / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below; a file, not a pipe: a chatty server can never block on it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                httpx.get(url + "/health", timeout=0.5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = log_path.read_text(errors="replace")
                    pytest.fail(f"uvicorn did not start: {out[-2000:]}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
