"""Two uvicorn processes share one real Redis: together they admit exactly the limit."""

from __future__ import annotations

from collections.abc import Iterator
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
  - match: "GET /resource"
    limits: ["25/hour"]
"""


@pytest.fixture
def two_nodes(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    env = {
        "RATELIMIT_POLICIES": str(policies),
        "REDIS_URL": redis_url,
        "RATELIMIT_ADMIN_TOKEN": "two-nodes-admin-token-0123",
    }
    argv = ["uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning"]
    specs = [(argv, tmp_path / f"node-{n}.log", env) for n in "ab"]
    with http_servers(specs, ready_path="/health") as (a, b):
        yield a.url, b.url


def test_sum_of_200s_across_nodes_equals_the_limit(two_nodes: tuple[str, str]) -> None:
    a, b = two_nodes
    key = {"X-API-Key": "shared-client"}
    statuses: list[int] = []
    with httpx.Client(timeout=5) as client:
        for i in range(60):  # alternate nodes; bounded
            statuses.append(client.get((a if i % 2 else b) + "/resource", headers=key).status_code)
        assert statuses.count(200) == 25
        assert set(statuses) == {200, 429}
        # every 200 came before every 429: the nodes share one bucket, in order
        assert statuses[:25] == [200] * 25
        other = client.get(a + "/resource", headers={"X-API-Key": "someone-else"})
        assert other.status_code == 200
