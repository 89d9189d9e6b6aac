"""Target 4: sync checks on a real Redis, vs a bare redis-py EVALSHA round trip.

The baseline is the cheapest useful thing a Redis limiter can do: one ``EVALSHA``
of ``return 1`` with redis-py (default client options). Ours is ``Limiter.check``
with one gcra limit nobody reaches, over 1,000 client keys round-robin; the
two-limit policy of the demo is info. limits (fixed window) and throttled-py (gcra)
use the same server. Every client is created before timing, connections warm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.apps import ALLOW, PEER_ALLOW
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult, interleave

NAME = "redis_sync"
TITLE = "Redis, sync API, us per check (target 4)"
KEYS = 1_000


def _subjects(url: str) -> list[tuple[str, str, str, Callable[[], Callable[[str], Any]]]]:
    def bare() -> Callable[[str], Any]:
        import redis

        client = redis.Redis.from_url(url)
        sha = client.script_load("return 1")
        return lambda key: client.evalsha(sha, 0)

    def bare_timeouts() -> Callable[[str], Any]:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
        sha = client.script_load("return 1")
        return lambda key: client.evalsha(sha, 0)

    def bare_our_script() -> Callable[[str], Any]:
        # The limiter's own script and arguments, sent with bare redis-py: what is
        # left of ours' cost after this is the library's work around the round trip.
        import redis

        from ratelimit_mw import Limiter
        from ratelimit_mw.backends.redis_lua import argv, script_for

        limiter = Limiter(url)
        quota = limiter.quota(ALLOW, scope="bench")
        text = script_for(quota.rules)
        client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
        client.script_load(text.text)
        prepared = {f"client-{i}": argv("hit", limiter.storage_keys(f"client-{i}", quota), quota.rules, 1, None, "0")
                    for i in range(KEYS)}
        return lambda key: client.evalsha(text.sha, *prepared[key])

    def ours(limits: str | list[str]) -> Callable[[], Callable[[str], Any]]:
        def make() -> Callable[[str], Any]:
            from ratelimit_mw import Limiter

            limiter = Limiter(url)
            quota = limiter.quota(limits, scope="bench")
            check = limiter.check
            return lambda key: check(key, quota)

        return make

    def limits_fixed() -> Callable[[str], Any]:
        from limits import parse
        from limits.storage import RedisStorage
        from limits.strategies import FixedWindowRateLimiter

        item = parse(PEER_ALLOW)
        hit = FixedWindowRateLimiter(RedisStorage(url)).hit
        return lambda key: hit(item, key)

    def throttled_gcra() -> Callable[[str], Any]:
        from throttled import RedisStore, Throttled, rate_limiter

        throttle = Throttled(using="gcra", quota=rate_limiter.per_sec(10, burst=10**9),
                             store=RedisStore(server=url))
        limit = throttle.limit
        return lambda key: limit(key)

    return [
        ("bare redis-py EVALSHA 'return 1'", "baseline", "", bare),
        ("bare EVALSHA, 50 ms socket timeouts", "info", "the socket options ratelimit_mw's client uses", bare_timeouts),
        ("bare EVALSHA of ours' script", "info", "same script and arguments, prepared; bare redis-py",
         bare_our_script),
        ("ours check, 1 gcra limit", "ours", "", ours(ALLOW)),
        ("ours check, 2 limits (demo policy shape)", "info", "10/second; burst=40 + 10000/day",
         ours([ALLOW, "100000/day; burst=1000000000"])),
        ("limits fixed window (redis)", "peer", "", limits_fixed),
        ("throttled-py gcra (redis)", "peer", "", throttled_gcra),
    ]


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    redis_server = ctx.redis()
    client = ctx.redis_flush()
    client.close()
    count = ctx.n(2_000, 50)
    keys = [f"client-{i % KEYS}" for i in range(count)]
    subjects = []
    for label, kind, note, factory in _subjects(redis_server.url):
        peer = "limits" if label.startswith("limits") else "throttled-py" if label.startswith("throttled") else None
        if peer and (reason := missing_peer(peer)):
            result.notes.append(f"{label}: skipped, {reason}")
            continue
        call = factory()
        for key in keys[: min(count, KEYS)]:
            call(key)  # warm-up: connections open, scripts loaded, states exist
        sample = result.sample(label, "us/check", kind=kind, note=note)

        def measure(call: Callable[[str], Any] = call) -> float:
            start = time.perf_counter()
            for key in keys:
                call(key)
            return (time.perf_counter() - start) / len(keys) * 1e6

        subjects.append((sample, measure))
    interleave(subjects, ctx.repeats)
    result.add_ratio_target(4, "Redis sync check cost vs bare EVALSHA round trip", "ours check, 1 gcra limit",
                            "bare redis-py EVALSHA 'return 1'", 1.15, "<=")
    return result
