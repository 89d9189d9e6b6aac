"""Redis Cluster (3 masters) and Sentinel, through the backend and the Limiter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster

from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.backends.redis_connect import ClientFactory
from ratelimit_mw.backends.redis_lua import locate, script_for
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.limiter import Limiter
from tests.support.redis_servers import RedisCluster, RedisSentinel

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Not timeout tests: generous timeouts so a loaded machine cannot fail them.
RELAXED: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}

#: The binding limits refill by the minute, not the second: these tests decide with the
#: servers' clocks, and a loaded machine may take a third of a second between checks.
TWO_LIMITS = ["3/minute", "5/minute; algorithm=sliding_log"]
MIXED = [
    parse_rate("3/minute", "gcra"),
    parse_rate("4/minute", "fixed_window"),
    parse_rate("4/minute", "sliding_window"),
    parse_rate("4/minute", "sliding_log"),
    parse_rate("4/second", "token_bucket"),
    parse_rate("4/second", "leaky_bucket"),
]


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster, redis_cluster_url: str) -> Iterator[redis.cluster.RedisCluster]:
    client = redis_cluster.client()
    yield client
    client.close()


def test_cluster_route_with_two_limits_sync(redis_cluster_url: str) -> None:
    limiter = Limiter(redis_cluster_url, on_backend_error="deny", **RELAXED)
    decisions = [limiter.check("client-1", TWO_LIMITS, scope="GET /x") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert not any(d.degraded for d in decisions)  # no CROSSSLOT, no error
    assert limiter.peek("client-1", TWO_LIMITS, scope="GET /x").remaining == 0
    limiter.reset("client-1", TWO_LIMITS, scope="GET /x")
    assert limiter.peek("client-1", TWO_LIMITS, scope="GET /x").remaining == 3
    limiter.close()


def test_cluster_route_with_two_limits_async(redis_cluster_url: str) -> None:
    async def main() -> None:
        limiter = Limiter(redis_cluster_url, on_backend_error="deny", **RELAXED)
        decisions = [await limiter.acheck("client-2", TWO_LIMITS, scope="GET /y") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert not any(d.degraded for d in decisions)
        assert (await limiter.apeek("client-2", TWO_LIMITS, scope="GET /y")).remaining == 0
        await limiter.areset("client-2", TWO_LIMITS, scope="GET /y")
        await limiter.aclose()

    asyncio.run(main())


def test_cluster_all_algorithms_in_one_script(redis_cluster_url: str) -> None:
    backend = RedisBackend(redis_cluster_url, **RELAXED)
    keys = [f"rl:{{mixed}}:{i}" for i in range(len(MIXED))]
    assert [backend.hit(keys, MIXED, 1, None).allowed for _ in range(4)] == [True] * 3 + [False]

    async def main() -> None:
        assert not (await backend.ahit(keys, MIXED, 1, None)).allowed
        await backend.aclose()

    asyncio.run(main())


def test_cluster_keys_spread_over_every_master(
    redis_cluster_url: str, cluster_client: redis.cluster.RedisCluster
) -> None:
    limiter = Limiter(redis_cluster_url, **RELAXED)
    stored: set[str] = set()
    for i in range(120):
        assert not limiter.check(f"user-{i}", TWO_LIMITS, scope="GET /z").degraded
        gcra_key, log_key = limiter.storage_keys(f"user-{i}", limiter.quota(TWO_LIMITS, "GET /z"))
        stored.add(locate(gcra_key)[0])  # a time state: a field of the hash its tag (1 in 4,096) shares
        stored.add(log_key)  # a sliding log: a key of its own
    limiter.close()
    per_master: Counter[str] = Counter()
    for node in cluster_client.get_primaries():  # type: ignore[no-untyped-call]
        per_master[node.name] = cluster_client.dbsize(target_nodes=node)
    assert len(per_master) == 3
    assert all(n > 0 for n in per_master.values()), per_master
    assert sum(per_master.values()) == len(stored) > 200


def test_cluster_script_flush_on_every_master_reloads(redis_cluster: RedisCluster, redis_cluster_url: str) -> None:
    def flush() -> None:
        for master in redis_cluster.masters:
            master.command("SCRIPT", "FLUSH")

    backend = RedisBackend(redis_cluster_url, **RELAXED)
    keys = ["rl:{flush}:a"]
    rule = [MIXED[0]]
    assert backend.hit(keys, rule, 1, None).allowed
    flush()
    assert backend.hit(keys, rule, 1, None).allowed

    async def main() -> None:
        flush()
        assert (await backend.ahit(keys, rule, 1, None)).allowed
        await backend.aclose()

    asyncio.run(main())
    cached = [m.command("SCRIPT", "EXISTS", script_for(tuple(rule)).sha) for m in redis_cluster.masters]
    assert cached.count([1]) == 1  # reloaded on the node that owns the key, by EVAL
    backend.close()


def test_async_cluster_initialised_once_under_concurrent_first_use(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many tasks issue their first command together: one client, one initialize()."""
    made: list[Any] = []
    initialised: list[Any] = []
    original_async = ClientFactory.async_
    original_init = redis.asyncio.cluster.RedisCluster.initialize

    def counting_async(self: ClientFactory) -> Any:
        client, helpers = original_async(self)
        made.append(client)
        return client, helpers

    async def counting_init(self: Any, *args: Any, **kwargs: Any) -> Any:
        initialised.append(self)
        await asyncio.sleep(0.01)  # let every other task pile up behind the lock
        return await original_init(self, *args, **kwargs)

    monkeypatch.setattr(ClientFactory, "async_", counting_async)
    monkeypatch.setattr(redis.asyncio.cluster.RedisCluster, "initialize", counting_init)
    backend = RedisBackend(redis_cluster_url, **RELAXED)

    async def main() -> None:
        results = await asyncio.gather(*(backend.ahit([f"rl:{{c{i}}}:a"], [MIXED[0]], 1, None) for i in range(30)))
        assert all(d.allowed for d in results)
        await backend.aclose()

    asyncio.run(main())
    assert len(made) == 1
    assert initialised.count(made[0]) == 1  # ours, under our lock; commands then found it initialised


def test_existing_cluster_clients(redis_cluster: RedisCluster, redis_cluster_url: str) -> None:
    sync_client = redis_cluster.client()
    backend = RedisBackend(sync_client)
    assert backend.hit(["rl:{own}:a", "rl:{own}:b"], MIXED[:2], 1, None).allowed
    sync_client.close()

    async def main() -> None:
        host, port = redis_cluster.addresses[0]
        client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
        backend = RedisBackend(client)
        assert (await backend.ahit(["rl:{own2}:a", "rl:{own2}:b"], MIXED[:2], 1, None)).allowed
        await client.aclose()

    asyncio.run(main())


def test_sentinel_sync_and_async(redis_sentinel: RedisSentinel) -> None:
    url = redis_sentinel.url
    assert url.startswith("redis+sentinel://")
    limiter = Limiter(url, on_backend_error="deny", **RELAXED)
    decisions = [limiter.check("s-client", TWO_LIMITS) for _ in range(4)]
    assert [(d.allowed, d.degraded) for d in decisions] == [(True, False)] * 3 + [(False, False)]
    limiter.reset("s-client", TWO_LIMITS)
    limiter.close()

    async def main() -> None:
        limiter = Limiter(url, on_backend_error="deny", **RELAXED)
        d = await limiter.acheck("s-client-2", TWO_LIMITS)
        assert d.allowed and not d.degraded
        await limiter.areset("s-client-2", TWO_LIMITS)
        await limiter.aclose()

    asyncio.run(main())
