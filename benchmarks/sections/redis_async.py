"""Target 5: async checks on a real Redis, 64 concurrent on one event loop.

64 tasks on one asyncio loop each run checks back to back; the figure is total
checks per second. Ours is ``Limiter.acheck`` (redis.asyncio under the hood);
the baseline is limits' async Redis storage (``limits.aio``, fixed window, with
its redis-py implementation, the same driver as ours). throttled-py's asyncio
API and a bare redis.asyncio EVALSHA are reported alongside.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.apps import ALLOW, PEER_ALLOW
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult

NAME = "redis_async"
TITLE = "Redis, async API, 64 concurrent checks on one loop, checks/s (target 5)"
CONCURRENCY = 64
KEYS = 1_000

Check = Callable[[str], Awaitable[Any]]


#: Checks ours decided without Redis (fail-open after a timeout): they are not
#: Redis checks, so they are subtracted from ours' count and reported.
DEGRADED = [0]


async def _ours(url: str) -> tuple[Check, Callable[[], Awaitable[None]]]:
    from ratelimit_mw import Limiter

    limiter = Limiter(url)
    quota = limiter.quota(ALLOW, scope="bench")
    acheck = limiter.acheck

    async def check(key: str) -> Any:
        decision = await acheck(key, quota)
        if decision.degraded:
            DEGRADED[0] += 1
        return decision

    return check, limiter.aclose


async def _limits(url: str) -> tuple[Check, Callable[[], Awaitable[None]]]:
    from limits import parse
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter

    item = parse(PEER_ALLOW)
    storage = RedisStorage("async+" + url, implementation="redispy")
    hit = FixedWindowRateLimiter(storage).hit

    async def check(key: str) -> Any:
        return await hit(item, key)

    async def close() -> None:
        return None

    return check, close


async def _throttled(url: str) -> tuple[Check, Callable[[], Awaitable[None]]]:
    from throttled.asyncio import RedisStore, Throttled, rate_limiter

    throttle = Throttled(using="gcra", quota=rate_limiter.per_sec(10, burst=10**9), store=RedisStore(server=url))
    limit = throttle.limit

    async def check(key: str) -> Any:
        return await limit(key)

    async def close() -> None:
        return None

    return check, close


async def _bare(url: str) -> tuple[Check, Callable[[], Awaitable[None]]]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    sha = await client.script_load("return 1")

    async def check(key: str) -> Any:
        return await client.evalsha(sha, 0)

    return check, client.aclose


async def _measure(check: Check, per_task: int) -> tuple[float, int]:
    """Checks per second decided by Redis, and how many were decided without it."""

    async def worker(offset: int) -> None:
        for i in range(per_task):
            await check(f"client-{(offset + i * CONCURRENCY) % KEYS}")

    degraded_before = DEGRADED[0]
    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    degraded = DEGRADED[0] - degraded_before
    return (CONCURRENCY * per_task - degraded) / elapsed, degraded


async def _run(ctx: Context, result: SectionResult, url: str) -> None:
    per_task = ctx.n(60, 3)
    factories = [
        ("bare redis.asyncio EVALSHA 'return 1'", "info", None, _bare),
        ("ours acheck, 1 gcra limit", "ours", None, _ours),
        ("limits.aio fixed window (redis)", "baseline", "limits", _limits),
        ("throttled-py asyncio gcra (redis)", "peer", "throttled-py", _throttled),
    ]
    subjects = []
    closers = []
    for label, kind, peer, factory in factories:
        if peer and (reason := missing_peer(peer)):
            result.notes.append(f"{label}: skipped, {reason}")
            continue
        check, close = await factory(url)
        closers.append(close)
        # warm-up: 64 connections open, scripts loaded (again if the first round degraded)
        for _ in range(3):
            _, degraded = await _measure(check, max(per_task // 4, 2))
            if degraded:
                result.notes.append(f"{label}: {degraded} warm-up checks degraded (decided without Redis)")
                await asyncio.sleep(2.5)  # let the breaker close again
            else:
                break
        subjects.append((result.sample(label, "checks/s", kind=kind), check))
    degraded_total = 0
    try:
        for _ in range(ctx.repeats):
            for sample, check in subjects:
                rate, degraded = await _measure(check, per_task)
                sample.values.append(rate)
                degraded_total += degraded
    finally:
        for close in closers:
            await close()
    result.extra["ours_degraded_checks_timed"] = degraded_total
    if degraded_total:
        result.notes.append(f"ours: {degraded_total} timed checks decided without Redis (not counted as checks)")


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    url = ctx.redis().url
    ctx.redis_flush().close()
    asyncio.run(_run(ctx, result, url))
    result.add_ratio_target(5, "Redis async checks/s vs limits.aio (64 concurrent)", "ours acheck, 1 gcra limit",
                            "limits.aio fixed window (redis)", 5.0, ">=")
    return result
