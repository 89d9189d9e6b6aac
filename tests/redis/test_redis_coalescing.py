"""Concurrent async checks coalesced into batches: same decisions, fewer round trips.

Every test runs real checks on a real server. The reference for "same decisions"
is the memory backend fed the same checks one by one, in the order the tasks
submitted them (``asyncio.gather`` starts them in argument order), at the same
instant (a fixed injected time, as one batch shares one server instant).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis

from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule, parse_rate
from ratelimit_mw.limiter import Limiter
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.redis

TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
NOW = 1_800_000_000.25


def _view(d: Decision) -> tuple[object, ...]:
    return (d.allowed, d.limit, d.remaining, d.reset_after, d.retry_after, d.delay, d.violated, d.degraded)


def _rules(*texts: str) -> tuple[Rule, ...]:
    return tuple(parse_rate(t) for t in texts)


# (key, rules, cost): several routes, algorithms and costs in one burst; keys repeat
# so later checks see the states earlier checks of the same batch wrote.
QUOTAS = [
    _rules("10/minute"),
    _rules("5/second; burst=8", "20/minute"),
    _rules("6/minute; algorithm=token_bucket"),
    _rules("4/minute; algorithm=fixed_window", "9/hour; algorithm=sliding_window"),
    _rules("3/minute; algorithm=sliding_log"),
    _rules("2/second; algorithm=leaky_bucket"),
]
CHECKS = [(f"client-{i % 5}", QUOTAS[i % len(QUOTAS)], 1 + (i % 7 == 3)) for i in range(180)]


def _keys(quota_index: int, client: str, rules: Sequence[Rule]) -> list[str]:
    # the Limiter's shape, one rule per slot: clients with the same first character
    # share one hash per rule for time states
    return [f"t:{{{client[:1]}}}{client}:{quota_index}-{i}" for i in range(len(rules))]


async def _burst(backend: RedisBackend, now: float | None) -> list[Decision]:
    calls = [
        backend.ahit(_keys(QUOTAS.index(rules), client, rules), rules, cost, now)
        for client, rules, cost in CHECKS
    ]
    return list(await asyncio.gather(*calls))


def _sequential_memory() -> list[Decision]:
    memory = MemoryBackend()
    return [
        memory.hit(_keys(QUOTAS.index(rules), client, rules), rules, cost, NOW)
        for client, rules, cost in CHECKS
    ]


def test_a_burst_decides_as_sequential_checks_in_fewer_round_trips(redis_url: str) -> None:
    backend = RedisBackend(redis_url, min_ttl=3600, **TIMEOUTS)
    counter = redis.Redis.from_url(redis_url)
    counter.config_resetstat()

    async def main() -> list[Decision]:
        try:
            return await _burst(backend, NOW)
        finally:
            coalescer = backend._coalescer
            assert coalescer is not None
            assert coalescer.checks == len(CHECKS)
            assert coalescer.round_trips < len(CHECKS) / 4, coalescer.round_trips
            await backend.aclose()

    got = asyncio.run(main())
    calls = counter.info("commandstats")
    script_calls = sum(calls.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))
    counter.close()
    assert [_view(d) for d in got] == [_view(d) for d in _sequential_memory()]
    assert 1 <= script_calls < len(CHECKS) / 4
    assert sum(d.allowed for d in got) < len(CHECKS)  # the burst did reach the limits


def test_one_hot_key_hands_out_exactly_its_quota(redis_url: str) -> None:
    limiter = Limiter(redis_url, over_limit_cache=0, **TIMEOUTS)

    async def main() -> list[Decision]:
        try:
            return list(await asyncio.gather(*(limiter.acheck("hot", "25/hour") for _ in range(100))))
        finally:
            await limiter.aclose()

    got = asyncio.run(main())
    assert [d.allowed for d in got] == [True] * 25 + [False] * 75  # arrival order kept
    assert [d.remaining for d in got[:25]] == list(range(24, -1, -1))
    assert not any(d.degraded for d in got)


def test_server_time_batches_agree_with_one_by_one(redis_url: str) -> None:
    """Without an injected time, a batch shares one server instant: every limit
    here is long, so the instant does not change any decision."""
    backend = RedisBackend(redis_url, **TIMEOUTS)
    plain = RedisBackend(redis_url, coalesce=False, **TIMEOUTS)
    rules = _rules("40/hour", "100/day")

    async def main() -> tuple[list[Decision], list[Decision]]:
        try:
            batched = await asyncio.gather(
                *(backend.ahit([f"s:{{c{i % 3}}}:a", f"s:{{c{i % 3}}}:b"], rules, 1, None) for i in range(150))
            )
            one_by_one = [
                await plain.ahit([f"p:{{c{i % 3}}}:a", f"p:{{c{i % 3}}}:b"], rules, 1, None) for i in range(150)
            ]
            assert plain._coalescer is None
            return list(batched), one_by_one
        finally:
            await backend.aclose()
            await plain.aclose()

    batched, one_by_one = asyncio.run(main())
    assert [(d.allowed, d.remaining) for d in batched] == [(d.allowed, d.remaining) for d in one_by_one]
    assert sum(d.allowed for d in batched) == 120


def test_a_flushed_script_cache_is_reloaded_by_a_batch(redis_url: str) -> None:
    backend = RedisBackend(redis_url, min_ttl=3600, **TIMEOUTS)
    admin = redis.Redis.from_url(redis_url)
    rules = _rules("50/hour")

    async def main() -> list[Decision]:
        try:
            await backend.ahit(["f:{warm}:a"], rules, 1, NOW)  # the script is cached now
            admin.script_flush()
            return list(await asyncio.gather(*(backend.ahit(["f:{x}:a"], rules, 1, NOW) for _ in range(60))))
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    admin.close()
    assert [d.allowed for d in got] == [True] * 50 + [False] * 10


def test_cancelled_waiters_do_not_stall_the_others(redis_url: str) -> None:
    backend = RedisBackend(redis_url, min_ttl=3600, **TIMEOUTS)
    rules = _rules("1000/hour")

    async def main() -> list[Decision]:
        try:
            tasks = [asyncio.create_task(backend.ahit([f"c:{{k{i}}}:a"], rules, 1, NOW)) for i in range(60)]
            await asyncio.sleep(0)  # all submitted: the first is in flight, the rest queued
            for task in tasks[10:20]:
                task.cancel()
            done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
            cancelled = [r for r in done[10:20] if isinstance(r, asyncio.CancelledError)]
            assert len(cancelled) == 10
            return [r for r in done if isinstance(r, Decision)]
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    assert len(got) == 50 and all(d.allowed for d in got)


def test_an_outage_fails_every_waiting_check_over_to_the_policy(fresh_redis_server: RedisServer) -> None:
    """Redis answers nothing (SIGSTOP): a batch in flight times out, and every check
    it carried gets the failure policy's answer; none hangs, none raises."""
    limiter = Limiter(
        fresh_redis_server.url, on_backend_error="deny", breaker_threshold=1000, socket_timeout=0.1,
        socket_connect_timeout=0.1,
    )

    async def main() -> tuple[list[Decision], list[Decision]]:
        try:
            assert (await limiter.acheck("warm", "100/hour")).allowed
            fresh_redis_server.pause()
            try:
                out = await asyncio.wait_for(
                    asyncio.gather(*(limiter.acheck(f"k{i}", "100/hour") for i in range(40))), 5
                )
            finally:
                fresh_redis_server.resume()
            back = await asyncio.gather(*(limiter.acheck(f"k{i}", "100/hour") for i in range(40)))
            return list(out), list(back)
        finally:
            await limiter.aclose()

    during, after = asyncio.run(main())
    assert all(d.degraded and not d.allowed for d in during)
    assert all(d.allowed and not d.degraded for d in after)


def test_cluster_batches_split_by_slot(redis_cluster_url: str) -> None:
    """First use awaits the cluster's slot map: the checks racing on it must still share
    one coalescer, or batches of different coalescers could overtake each other."""
    backend = RedisBackend(redis_cluster_url, min_ttl=3600, **TIMEOUTS)

    async def main() -> list[Decision]:
        try:
            got = await _burst(backend, NOW)
            coalescer = backend._coalescer
            assert coalescer is not None and coalescer.checks == len(CHECKS)
            return got
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    assert [_view(d) for d in got] == [_view(d) for d in _sequential_memory()]


def test_a_restart_under_concurrency_recovers_by_itself(fresh_redis_server: RedisServer) -> None:
    """The ordered connection dies with the server: the checks in flight fail over to
    the policy, and the next burst takes a fresh connection (and reloads the script)."""
    limiter = Limiter(
        fresh_redis_server.url, on_backend_error="allow", breaker_threshold=1000, socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )

    async def burst(tag: str) -> list[Decision]:
        return list(await asyncio.gather(*(limiter.acheck(f"{tag}{i % 7}", "100/hour") for i in range(60))))

    async def main() -> tuple[list[Decision], list[Decision]]:
        try:
            before = await burst("a")
            fresh_redis_server.restart(empty=True)
            await asyncio.sleep(0.05)  # as in a live server, the loop notices the closed socket
            for attempt in range(20):  # the first burst may land on the dead connection
                after = await burst(f"b{attempt}-")
                if not any(d.degraded for d in after):
                    break
            return before, after
        finally:
            await limiter.aclose()

    before, after = asyncio.run(main())
    assert all(d.allowed and not d.degraded for d in before)
    assert all(d.allowed and not d.degraded for d in after)
    assert [d.remaining for d in after[:7]] == [99] * 7  # empty server: fresh buckets


def test_a_queued_check_awaits_its_own_future(redis_url: str) -> None:
    """``ahit_nowait``: a lone check runs as a coroutine; one that queues behind a round
    trip in flight is handed its future itself, settled with its Decision."""
    backend = RedisBackend(redis_url, min_ttl=3600, **TIMEOUTS)
    rules = _rules("5/minute")
    memory = MemoryBackend()

    async def main() -> list[Decision]:
        try:
            first = backend.ahit_nowait(["q:{a}:x"], rules, 1, NOW)
            assert asyncio.iscoroutine(first)
            lone = asyncio.ensure_future(first)
            await asyncio.sleep(0)  # the lone check is in flight now
            queued = [backend.ahit_nowait(["q:{a}:x"], rules, 1, NOW) for _ in range(6)]
            assert all(isinstance(q, asyncio.Future) for q in queued)
            return [await lone, *[await q for q in queued]]
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    expected = [memory.hit(["q:{a}:x"], rules, 1, NOW) for _ in range(7)]
    assert [_view(d) for d in got] == [_view(d) for d in expected]
    assert [d.allowed for d in got] == [True] * 5 + [False] * 2
