"""Two uvicorn processes share one real Redis: together they let a key have exactly its
in-flight limit of requests running, and the slots come back when the responses end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.http_servers import http_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POLICIES = """
version: 1
defaults: {key: [header:X-API-Key, ip]}
routes:
  - match: "/health"
    exempt: true
  - match: "GET /slow"
    limits: ["2 concurrent; lease=5s"]
"""


@pytest.fixture
def nodes(redis_url: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"RATELIMIT_POLICIES": str(policies), "REDIS_URL": redis_url, "INFLIGHT_GATE": str(gate)}
    argv = ["uvicorn", "tests.inflight.slow_app:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning"]
    with http_servers([(argv, tmp_path / f"node-{n}.log", env) for n in "ab"], ready_path="/health") as (a, b):
        yield gate, a.url, b.url


def test_two_nodes_admit_exactly_the_in_flight_limit(nodes: tuple[Path, str, str]) -> None:
    gate, a, b = nodes
    key = {"X-API-Key": "shared-client"}
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(client.get, (a if i % 2 else b) + "/slow", headers=key) for i in range(4)]
        deadline = time.monotonic() + 20
        while len(list(gate.glob("entered-*"))) < 2 or sum(c.done() for c in calls) < 2:
            assert time.monotonic() < deadline, "two requests should run and two be refused"
            time.sleep(0.05)
        refused = [c.result() for c in calls if c.done()]
        assert [r.status_code for r in refused] == [429, 429]
        assert all('qu="concurrent-requests"' in r.headers["RateLimit-Policy"] for r in refused)
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        assert len(list(gate.glob("entered-*"))) == 2  # the refused ones never reached the app
        (gate / "release").touch()
        assert sorted(c.result(timeout=30).status_code for c in calls) == [200, 200, 429, 429]
        # the slots came back when the responses ended (released in the background: poll)
        deadline = time.monotonic() + 5
        while True:
            statuses = [client.get(url + "/slow", headers=key).status_code for url in (a, b)]
            if statuses == [200, 200]:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
