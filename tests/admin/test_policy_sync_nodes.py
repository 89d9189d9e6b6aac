"""Two real uvicorn processes sharing one real Redis: a change on A is enforced on B."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.redis_servers import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start_node(redis_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port(bus_offset=None)
    has_redis_backend = importlib.util.find_spec("ratelimit_mw.backends.redis") is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SYNC_REDIS_URL": redis_url,
        # the limiter shares Redis too once the Redis backend exists; policy sync does not need it
        "LIMITER_BACKEND": redis_url if has_redis_backend else "memory://",
        "RATELIMIT_ADMIN_TOKEN": TOKEN,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.admin.sync_node:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, deadline: float) -> None:
    while True:  # bounded readiness poll
        try:
            if httpx.get(url + "/admin/health", headers=AUTH, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"node {url} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture
def nodes(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    started = [_start_node(redis_url, tmp_path / f"node-{name}.log") for name in "ab"]
    try:
        deadline = time.monotonic() + 20
        for (proc, url), name in zip(started, "ab"):
            _wait_ready(proc, url, tmp_path / f"node-{name}.log", deadline)
        yield started[0][1], started[1][1]
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _limit_on(http: httpx.Client, url: str) -> str:
    # a fresh key each time, so the answer shows the policy, not an exhausted bucket
    response = http.get(url + "/resource", headers={"X-API-Key": uuid.uuid4().hex})
    return response.headers["X-RateLimit-Limit"]


def _within(seconds: float, condition: Callable[[], bool]) -> float:
    """Poll ``condition`` until true; fail after ``seconds``. Returns the time it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not true within {seconds}s")
    return time.monotonic() - start


def test_a_change_on_node_a_is_enforced_on_node_b_within_a_second(nodes: tuple[str, str], redis_url: str) -> None:
    a, b = nodes
    with httpx.Client(timeout=5) as http:
        assert _limit_on(http, a) == _limit_on(http, b) == "100"

        response = http.patch(
            a + "/admin/policies", headers=AUTH, json={"policies": {"free": {"limits": ["2/minute"]}}}
        )
        assert response.status_code == 200, response.text
        assert response.json()["revision"] == 1
        assert _limit_on(http, a) == "2"  # applied on A before the answer
        _within(1.0, lambda: _limit_on(http, b) == "2")

        key = {"X-API-Key": "same-client"}
        assert [http.get(b + "/resource", headers=key).status_code for _ in range(3)] == [200, 200, 429]
        assert http.get(b + "/admin/health", headers=AUTH).json()["sync"]["revision"] == 1

        # A node that missed the message (stored without PUBLISH) catches up by the periodic check.
        client = redis.Redis.from_url(redis_url)
        document = http.get(a + "/admin/policies", headers=AUTH).json()
        document["policies"]["free"]["limits"] = ["3/minute"]
        client.hset("synctest:policies", mapping={"version": 2, "document": json.dumps(document)})
        client.close()
        _within(2.5, lambda: _limit_on(http, a) == "3" and _limit_on(http, b) == "3")
