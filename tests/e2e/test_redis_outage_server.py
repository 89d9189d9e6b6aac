"""A Redis outage seen through a real uvicorn server, for each failure policy.

The failure matrix (``tests/redis/test_failure_matrix.py``) measures faults at the
limiter; this test checks what a client of the server sees while Redis is killed
and after it comes back empty on the same port: never a 500, no response slower
than the budget, the documented decisions while Redis is out (``allow`` admits,
``deny`` refuses, ``memory`` limits per process), the breaker gauge on ``/metrics``
open during the outage and closed after, one log line per breaker state change in
the server's log, and exact limits from Redis again after recovery.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http_servers import ServerProcess, http_servers
from tests.support.redis_servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BUDGET = 1.0  # no response may take longer (the socket timeout is 50 ms)
RECOVER_BOUND = 10.0
DEGRADED = {  # statuses of 4 requests of one new client while Redis is out
    "allow": [200, 200, 200, 200],
    "deny": [429, 429, 429, 429],
    "memory": [200, 200, 200, 429],
}


@pytest.fixture(params=list(DEGRADED))
def served(request: pytest.FixtureRequest, fresh_redis_server: RedisServer,
           tmp_path: Path) -> Iterator[tuple[str, ServerProcess, RedisServer]]:
    mode = request.param
    argv = ["uvicorn", "tests.e2e.outage_app:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning", "--no-access-log"]
    env = {"REDIS_URL": fresh_redis_server.url, "RATELIMIT_ON_BACKEND_ERROR": mode}
    with http_servers([(argv, tmp_path / "server.log", env)], ready_path="/metrics") as (server,):
        yield mode, server, fresh_redis_server


def _get(client: httpx.Client, url: str, who: str) -> httpx.Response:
    start = time.monotonic()
    response = client.get(url + "/r", headers={"X-Client": who})
    elapsed = time.monotonic() - start
    assert elapsed <= BUDGET, f"a request took {elapsed:.3f}s"
    assert response.status_code in (200, 429), response.status_code
    return response


def _breaker_gauge(client: httpx.Client, url: str) -> float:
    text = client.get(url + "/metrics").text
    match = re.search(r"^ratelimit_breaker_state (\S+)$", text, re.M)
    assert match, text[:500]
    return float(match.group(1))


def _from_redis(response: httpx.Response) -> bool:
    """Decided by Redis: degraded allowed requests carry no rate-limit headers (docs/failures.md),
    and a degraded denial's Retry-After is the breaker's, not the limit's (tens of seconds here)."""
    return "x-ratelimit-limit" in response.headers


def test_outage_through_a_real_server(served: tuple[str, ServerProcess, RedisServer]) -> None:
    mode, server, redis_server = served
    with httpx.Client(timeout=5) as client:
        before = [_get(client, server.url, "a") for _ in range(4)]
        assert [r.status_code for r in before] == [200, 200, 200, 429]
        assert all(_from_redis(r) for r in before)

        redis_server.kill()
        outage = [_get(client, server.url, "b") for _ in range(4)]
        assert [r.status_code for r in outage] == DEGRADED[mode]
        assert not any(_from_redis(r) for r in outage if r.status_code == 200)
        assert _breaker_gauge(client, server.url) > 0

        redis_server.restart(empty=True)  # same port, no keys
        deadline = time.monotonic() + RECOVER_BOUND
        for n in itertools.count():
            probe = _get(client, server.url, f"probe-{n}")
            if probe.status_code == 200 and _from_redis(probe):
                break
            assert time.monotonic() < deadline, "never returned to Redis"
        after = [_get(client, server.url, "c") for _ in range(4)]
        assert [r.status_code for r in after] == [200, 200, 200, 429]
        assert all(_from_redis(r) for r in after)
        assert _breaker_gauge(client, server.url) == 0

    changes = re.findall(r"\b(breaker_opened|breaker_closed|breaker_state_changed)\b.*?new=(\w+)",
                         server.log_path.read_text())
    assert changes, "no breaker state change was logged"
    assert changes[0][0] == "breaker_opened" and changes[-1] == ("breaker_closed", "closed"), changes
    for (_, before_state), (_, after_state) in itertools.pairwise(changes):
        assert before_state != after_state, f"a state change logged twice: {changes}"
