"""Two real uvicorn processes sharing one real Redis: a change on A is enforced on B."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.http_servers import http_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def nodes(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {
        "SYNC_REDIS_URL": redis_url,
        "LIMITER_BACKEND": redis_url,  # the limiter shares Redis too
        "RATELIMIT_ADMIN_TOKEN": TOKEN,
    }
    argv = ["uvicorn", "tests.admin.sync_node:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning"]
    specs = [(argv, tmp_path / f"node-{name}.log", env) for name in "ab"]

    def ready(url: str) -> bool:
        return httpx.get(url + "/admin/health", headers=AUTH, timeout=0.5).status_code == 200

    with http_servers(specs, ready=ready) as (a, b):
        yield a.url, b.url


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
