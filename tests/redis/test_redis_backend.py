"""RedisBackend on a real server: construction, server time, script reloads, TTLs, commands.

Everything runs against real Redis/Valkey processes (``tests/support``); the only
tests without a server are the URL-parsing ones, which never connect.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.redis import RedisBackend, open_redis_backend
from ratelimit_mw.backends.redis_connect import DEFAULT_TIMEOUT, ClientFactory, parse_backend_url
from ratelimit_mw.backends.redis_lua import LUA_FILES, locate, script, script_for
from ratelimit_mw.core.algorithms import step
from ratelimit_mw.core.rates import ALGORITHMS, Rule, parse_rate
from ratelimit_mw.errors import BackendError, ConfigError
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.testing import FakeClock
from tests.support.redis_servers import RedisServer, ServerBinary, free_port

pytestmark = pytest.mark.redis

#: Tests that are not about timeouts use generous ones: the 50 ms defaults are for
#: production, and a loaded CI machine can stall a connect that long.
RELAXED: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}

RULES = {
    "gcra": parse_rate("5/second", "gcra"),
    "token_bucket": parse_rate("5/second; burst=8", "token_bucket"),
    "leaky_bucket": parse_rate("5/second; burst=3", "leaky_bucket"),
    "fixed_window": parse_rate("5/10s", "fixed_window"),
    "sliding_window": parse_rate("5/10s", "sliding_window"),
    "sliding_log": parse_rate("5/10s", "sliding_log"),
}
ALL_RULES = list(RULES.values())


def _keys(n: int, tag: str | None = None) -> list[str]:
    """Keys in the Limiter's shape ``rl:{tag}rest:slot`` (one rule per slot), under a tag
    of their own: time states land in the field ``c`` of the hash ``rl:{tag}:s<i>``."""
    tag = tag or uuid.uuid4().hex[:16]
    return [f"rl:{{{tag}}}c:s{i}" for i in range(n)]


#: Algorithms whose state is one time, kept as a field of a shared hash.
TIME_ALGORITHMS = ("gcra", "token_bucket", "leaky_bucket")


def _stored(keys: list[str], rules: list[Rule]) -> list[str]:
    """The Redis keys that hold ``keys``' states: the shared hash for a time state,
    the key itself for a window state."""
    return [locate(k)[0] if r.algorithm in TIME_ALGORITHMS else k for k, r in zip(keys, rules, strict=True)]


def _states(client: redis.Redis, keys: list[str], rules: list[Rule]) -> int:
    """How many of ``keys`` hold a state (a hash field for a time state, else a key)."""
    return sum(
        bool(client.hexists(*locate(k)) if r.algorithm in TIME_ALGORITHMS else client.exists(k))
        for k, r in zip(keys, rules, strict=True)
    )


def _lifetime_ms(rule: Rule) -> int:
    """Twice the longest a state of ``rule`` can live: what its hash's TTL is set to
    when it is armed (see ``lua/state.lua``)."""
    if rule.algorithm == "token_bucket":
        longest = rule.capacity * rule.interval
    elif rule.algorithm == "leaky_bucket":
        longest = rule.tolerance + rule.interval
    else:
        longest = rule.tolerance
    return math.ceil(2 * (longest + 1e-6) * 1000) + 1


@pytest.fixture
def backend(redis_url: str) -> Iterator[RedisBackend]:
    b = RedisBackend(redis_url, **RELAXED)
    yield b
    b.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


# -- URLs and construction (no server needed) ------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "service", "options"),
    [
        pytest.param("redis://localhost:6379/2", "url", (), "", {}, id="redis"),
        pytest.param("rediss://:pw@host:6380/0", "url", (), "", {}, id="rediss"),
        pytest.param("unix:///tmp/redis.sock?db=1", "url", (), "", {}, id="unix"),
        pytest.param(
            "redis+sentinel://10.0.0.1:26379,10.0.0.2/mymaster?db=3&password=secret",
            "sentinel",
            (("10.0.0.1", 26379), ("10.0.0.2", 26379)),
            "mymaster",
            {"db": 3, "password": "secret"},
            id="sentinel",
        ),
        pytest.param(
            "redis+sentinel://u:p%40ss@h:1/svc/4?sentinel_password=s3",
            "sentinel",
            (("h", 1),),
            "svc",
            {"db": 4, "username": "u", "password": "p@ss"},
            id="sentinel-userinfo-db-path",
        ),
        pytest.param(
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?socket_timeout=0.2",
            "cluster",
            (("127.0.0.1", 7000), ("127.0.0.1", 7001)),
            "",
            {"socket_timeout": 0.2},
            id="cluster",
        ),
        pytest.param(
            "rediss+cluster://[::1]:7000",
            "cluster",
            (("::1", 7000),),
            "",
            {"ssl": True},
            id="cluster-tls-ipv6",
        ),
    ],
)
def test_url_parsing(url: str, kind: str, nodes: tuple[Any, ...], service: str, options: dict[str, Any]) -> None:
    factory = parse_backend_url(url, {})
    assert (factory.kind, factory.nodes, factory.service) == (kind, nodes, service)
    for name, value in options.items():
        assert factory.options[name] == value
    if kind != "url" or not url.startswith("unix"):
        assert factory.options["socket_connect_timeout"] == DEFAULT_TIMEOUT
    assert factory.options["socket_timeout"] == options.get("socket_timeout", DEFAULT_TIMEOUT)


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@h:1/0?password=s3cret",
        "redis+sentinel://:s3cret@h:1,h:2/svc?sentinel_password=s3cret&db=2",
        "redis+cluster://h:1?password=s3cret",
    ],
)
def test_repr_hides_passwords(url: str) -> None:
    text = repr(RedisBackend(url))
    assert "s3cret" not in text and "***" in text


def test_sentinel_credentials_go_to_sentinels_only() -> None:
    factory = parse_backend_url("redis+sentinel://h:1/svc?sentinel_password=s3&password=data", {})
    assert factory.sentinel_options["password"] == "s3"
    assert factory.options["password"] == "data"
    assert "sentinel_password" not in factory.options


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        pytest.param("memcached://x", {}, "unsupported backend URL", id="scheme"),
        pytest.param("localhost:6379", {}, "unsupported backend URL", id="no-scheme"),
        pytest.param("redis+sentinel://h:26379", {}, "service name", id="sentinel-no-service"),
        pytest.param("redis+cluster://h:1/3", {}, "no path", id="cluster-db"),
        pytest.param("redis+cluster://h:x", {}, "invalid port", id="bad-port"),
        pytest.param("redis+cluster://?a=1", {}, "names no host", id="no-host"),
        pytest.param("redis+cluster://h:1?socket_timeout=abc", {}, "invalid value", id="bad-option"),
        pytest.param("redis://h", {"retry": object()}, "never retries", id="retry"),
        pytest.param("redis://h:1/0?socket_timeout=soon", {}, "invalid backend URL", id="bad-query"),
    ],
)
def test_bad_urls(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisBackend(url, **options)


def test_construction_does_not_connect() -> None:
    """Clients are made on first use: a backend for a dead address builds fine."""
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    assert backend._client is None and backend._aclient is None
    with pytest.raises(BackendError) as info:
        backend.hit(_keys(1), [RULES["gcra"]], 1, None)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    backend.close()


def test_open_redis_backend_and_interfaces(redis_url: str) -> None:
    backend = open_redis_backend(redis_url, prefix="app", socket_timeout=0.5, min_ttl=1)
    assert isinstance(backend, Backend) and isinstance(backend, AsyncBackend)
    assert backend.has_clock and backend.prefix == "app"
    assert backend.supports_sync and backend.supports_async
    assert backend._factory is not None and backend._factory.options["socket_timeout"] == 0.5
    public = {n for n in dir(Backend) if not n.startswith("_")} - {"has_clock"}
    assert {"a" + n for n in public} <= set(dir(backend))


@pytest.mark.parametrize(
    "spec",
    [pytest.param(42, id="int"), pytest.param(object(), id="object"), pytest.param(b"redis://x", id="bytes")],
)
def test_rejects_unknown_specs(spec: Any) -> None:
    with pytest.raises(ConfigError, match="Redis URL or a redis-py client"):
        RedisBackend(spec)


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan])
def test_rejects_bad_min_ttl(bad: float) -> None:
    with pytest.raises(ConfigError, match="min_ttl"):
        RedisBackend("redis://localhost", min_ttl=bad)


def test_argument_validation(backend: RedisBackend) -> None:
    with pytest.raises(ConfigError, match="one storage key per rule"):
        backend.hit(_keys(2), [RULES["gcra"]], 1, None)
    with pytest.raises(ConfigError, match="cost"):
        backend.hit(_keys(1), [RULES["gcra"]], -1, None)


# -- existing clients ----------------------------------------------------------


def test_sync_client_is_sync_only(redis_server: RedisServer, redis_url: str) -> None:
    client = redis_server.client()
    backend = RedisBackend(client)
    assert backend.supports_sync and not backend.supports_async
    assert backend.hit(_keys(1), [RULES["gcra"]], 1, None).allowed
    with pytest.raises(ConfigError, match="synchronous client"):
        asyncio.run(backend.ahit(_keys(1), [RULES["gcra"]], 1, None))
    with pytest.raises(ConfigError, match="apply to URL backends only"):
        RedisBackend(client, socket_timeout=1)
    backend.close()
    assert client.ping()  # the caller's client stays open
    client.close()


def test_async_client_is_async_only(redis_server: RedisServer, redis_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(host=redis_server.host, port=redis_server.port)
        backend = RedisBackend(client)
        assert backend.supports_async and not backend.supports_sync
        assert (await backend.ahit(_keys(1), [RULES["gcra"]], 1, None)).allowed
        with pytest.raises(ConfigError, match="asyncio client"):
            backend.hit(_keys(1), [RULES["gcra"]], 1, None)
        await backend.aclose()
        assert await client.ping()
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"decode_responses": True}, id="decode_responses"),
        pytest.param({"protocol": 3}, id="resp3"),
        pytest.param({}, id="default"),
    ],
)
def test_client_options_do_not_change_decisions(
    redis_server: RedisServer, redis_url: str, options: dict[str, Any]
) -> None:
    client = redis_server.client(**options)
    backend = RedisBackend(client)
    keys = _keys(len(ALL_RULES))
    now = 1_700_000_000.25
    decisions = [backend.hit(keys, ALL_RULES, 1, now) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 3 + [False] * 4  # leaky bucket: capacity 3
    assert backend.peek(keys, ALL_RULES, now).remaining == 0
    client.close()


# -- time ----------------------------------------------------------------------


def _server_time(client: redis.Redis) -> float:
    sec, usec = client.time()
    return float(sec) + usec / 1e6


def test_server_time_is_used_when_now_is_none(backend: RedisBackend, client: redis.Redis) -> None:
    """A state written 100 s ahead of the server's clock is seen from the server's clock."""
    rule = parse_rate("1/minute", "gcra")
    keys = _keys(1)
    t_server = _server_time(client)
    assert backend.hit(keys, [rule], 1, t_server + 100).allowed  # TAT = server + 160
    before = _server_time(client)
    d = backend.hit(keys, [rule], 1, None)
    after = _server_time(client)
    assert not d.allowed
    # reset_after = TAT - server_now, with server_now between the two TIME readings
    tat = t_server + 160
    assert tat - after - 1e-3 <= d.reset_after <= tat - before + 1e-3
    assert d.retry_after == pytest.approx(d.reset_after, abs=1e-6)  # one interval past tolerance


def test_two_server_time_checks_differ_by_server_elapsed(backend: RedisBackend, client: redis.Redis) -> None:
    rule = parse_rate("1/minute", "gcra")
    keys = _keys(1)
    assert backend.hit(keys, [rule], 1, None).allowed
    t1 = _server_time(client)
    first = backend.peek(keys, [rule], None)
    time.sleep(0.05)
    second = backend.peek(keys, [rule], None)
    t2 = _server_time(client)
    elapsed = first.reset_after - second.reset_after
    assert 0.04 <= elapsed <= (t2 - t1) + 1e-3


def test_limiter_uses_server_time_unless_a_clock_is_given(redis_url: str) -> None:
    limiter = Limiter(redis_url, **RELAXED)
    assert limiter.check("alice", "2/minute").allowed
    assert limiter.check("alice", "2/minute").allowed
    d = limiter.check("alice", "2/minute")
    assert not d.allowed and not d.degraded and 20 < d.retry_after <= 30  # server time passes
    limiter.close()

    clock = FakeClock(1_000_000.0)
    limiter = Limiter(redis_url, clock=clock, min_ttl=60, **RELAXED)
    for _ in range(2):
        assert limiter.check("bob", "2/minute").allowed
    assert limiter.check("bob", "2/minute", cost=1).retry_after == 30.0  # exact: the fake clock
    clock.advance(30)
    assert limiter.check("bob", "2/minute").allowed
    limiter.reset("bob", "2/minute")
    assert limiter.peek("bob", "2/minute").remaining == 2
    limiter.close()


# -- script cache ---------------------------------------------------------------


def test_script_is_one_concatenation_of_the_mirrors() -> None:
    text = script().text
    for name in LUA_FILES:
        assert f"-- >>> {name}" in text
    for algorithm in ALGORITHMS:
        assert f"{algorithm}.lua" in LUA_FILES
        assert f"ALGORITHMS.{algorithm} = " in text
    assert len(script().sha) == 40


def test_script_flush_reloads(backend: RedisBackend, client: redis.Redis) -> None:
    keys = _keys(len(ALL_RULES))
    assert backend.hit(keys, ALL_RULES, 1, None).allowed
    client.script_flush()
    sha = script_for(tuple(ALL_RULES)).sha
    assert client.script_exists(sha) == [False]
    assert backend.hit(keys, ALL_RULES, 1, None).allowed
    assert client.script_exists(sha) == [True]  # cached again by the EVAL fallback

    async def main() -> None:
        client.script_flush()
        assert (await backend.ahit(keys, ALL_RULES, 1, None)).allowed
        assert (await backend.apeek(keys, ALL_RULES, None)).remaining == 0
        await backend.aclose()

    asyncio.run(main())


def test_restart_empty_then_works(fresh_redis_server: RedisServer) -> None:
    backend = RedisBackend(fresh_redis_server.url, **RELAXED)
    rule = [RULES["gcra"]]
    assert backend.hit(_keys(1), rule, 1, None).allowed
    fresh_redis_server.restart(empty=True)  # no keys, no script cache, stale pooled connection
    assert backend.hit(_keys(1), rule, 1, None).allowed

    async def main() -> None:
        assert (await backend.ahit(_keys(1), rule, 1, None)).allowed
        fresh_redis_server.restart(empty=True)
        await asyncio.sleep(0.05)  # as in a server, the loop sees the closed socket
        assert (await backend.ahit(_keys(1), rule, 1, None)).allowed
        await backend.aclose()

    asyncio.run(main())


# -- TTLs and storage -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_key_gets_the_step_ttl(backend: RedisBackend, client: redis.Redis, algorithm: str) -> None:
    """A window state's key expires when the state is fresh again; a time state's
    shared hash lives as long as the longest state of its rule can, so it outlives
    every field in it."""
    rule = RULES[algorithm]
    keys = _keys(1)
    now = 1_700_000_005.0  # explicit, so the expected TTL is exact (and mid-window)
    state = None
    for cost in (1, 2):
        s = step(state, now, rule, cost)
        assert backend.hit(keys, [rule], cost, now).allowed
        state = s.state
        expected_ms = math.ceil(s.ttl * 1000)
        if algorithm in TIME_ALGORITHMS:
            bucket, field = locate(keys[0])
            assert client.hexists(bucket, field)
            assert not client.exists(keys[0])
            pttl = client.pttl(bucket)
            assert expected_ms - 500 <= pttl <= _lifetime_ms(rule)
            assert _lifetime_ms(rule) - 500 <= pttl
        else:
            pttl = client.pttl(keys[0])
            assert 0 < pttl <= expected_ms
            assert pttl >= expected_ms - 500  # generous: only this test's own latency elapsed


def test_keys_expire_when_states_are_fresh_again(backend: RedisBackend, client: redis.Redis) -> None:
    # Periods of 0.5 s: short enough to watch the keys go, long enough that a loaded
    # machine still sees the bucket keys before they expire.
    fast = [
        parse_rate("2/second", "gcra"),
        parse_rate("2/second", "token_bucket"),
        parse_rate("2/second", "leaky_bucket"),
        parse_rate("3/0.5s", "fixed_window"),
        parse_rate("3/0.5s", "sliding_window"),
        parse_rate("3/0.5s", "sliding_log"),
    ]
    keys = _keys(len(fast))
    stored = _stored(keys, fast)
    assert backend.hit(keys, fast, 1, None).allowed
    # window keys written near a window edge may already be gone (-2); a key without
    # a TTL (-1) would fail. The bucket hashes live twice their states' longest life,
    # here 1 or 2 s.
    ttls = {k: client.pttl(k) for k in stored}
    assert all(ttl == -2 or 0 < ttl <= 2002 for ttl in ttls.values()), ttls
    assert client.exists(*stored[:3]) == 3
    deadline = time.monotonic() + 6.0
    while client.exists(*stored) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.exists(*stored) == 0


def test_no_write_without_cost_or_admission(backend: RedisBackend, client: redis.Redis) -> None:
    keys = _keys(len(ALL_RULES))
    stored = _stored(keys, ALL_RULES)
    backend.hit(keys, ALL_RULES, 0, None)
    backend.peek(keys, ALL_RULES, None)
    assert client.exists(*stored) == 0
    backend.hit(keys, ALL_RULES, 100, None)  # denied by every rule
    assert client.exists(*stored) == 0
    backend.hit(keys, ALL_RULES, 1, None)  # the same names hold the states once written
    assert client.exists(*stored) == len(ALL_RULES)


def test_gcra_state_is_an_integer_in_a_compact_hash(backend: RedisBackend, client: redis.Redis) -> None:
    """Server-time TATs are stored as whole 2**-22 s, as fields of a listpack hash."""
    keys = _keys(2)
    backend.hit(keys[:1], [RULES["gcra"]], 1, None)
    bucket, field = locate(keys[0])
    assert client.object("encoding", bucket) == b"listpack"
    value = client.hget(bucket, field)
    assert value is not None and value.isdigit()
    # fake-clock values that are not whole 2**-22 s use the exact text fallback
    backend.hit(keys[1:], [RULES["gcra"]], 1, 1_000_000.1)
    value = client.hget(*locate(keys[1]))
    assert isinstance(value, bytes) and value.startswith(b"f")


def test_clients_share_a_hash_and_stale_fields_are_swept(redis_url: str, client: redis.Redis) -> None:
    """Clients whose keys share a tag share one hash per rule. When a new field brings
    it to 16 (then 32, 64...) fields, the fields whose states are fresh again go."""
    backend = RedisBackend(redis_url, min_ttl=60, **RELAXED)  # a fake clock: keep the hash a minute
    rule = parse_rate("1/second", "gcra")  # a state is fresh again 1 s after its hit
    keys = [f"rl:{{sw}}client{i:02d}:s0" for i in range(40)]
    bucket = locate(keys[0])[0]
    assert all(locate(k)[0] == bucket for k in keys)
    for key in keys[:14]:  # the hash holds their fields and '~' (when it was last armed)
        assert backend.hit([key], [rule], 1, 1000.0).allowed
    assert client.hlen(bucket) == 15
    assert not backend.hit([keys[0]], [rule], 1, 1000.5).allowed  # live: its field counts
    assert backend.hit([keys[14]], [rule], 1, 1000.5).allowed  # 16 fields: a sweep, nothing stale
    assert client.hlen(bucket) == 16
    for key in keys[15:30]:  # at 1002.0 the first 15 states are fresh again
        assert backend.hit([key], [rule], 1, 1002.0).allowed
    assert client.hlen(bucket) == 31
    assert backend.hit([keys[30]], [rule], 1, 1002.0).allowed  # 32 fields: the 15 stale ones go
    assert client.hlen(bucket) == 17
    assert set(client.hkeys(bucket)) == {b"~"} | {locate(k)[1].encode() for k in keys[15:31]}
    assert backend.hit([keys[0]], [rule], 1, 1002.0).allowed  # a swept client starts fresh
    backend.close()


def test_a_busy_hash_is_rearmed_once_per_longest_state_life(backend: RedisBackend, client: redis.Redis) -> None:
    """A write sets the hash to expire after twice the rule's longest state life (M),
    noting its time in '~'; writes within M after that need no PEXPIRE, the next one does."""
    rule = parse_rate("10/second; burst=100", "gcra")  # M = tolerance = 10 s
    keys = [[f"rl:{{arm}}c{i}:s0"] for i in range(4)]
    bucket = locate(keys[0][0])[0]

    def pexpires(now: float, key: list[str]) -> int:
        client.config_resetstat()
        assert backend.hit(key, [rule], 1, now).allowed
        return int(client.info("commandstats").get("cmdstat_pexpire", {}).get("calls", 0))

    assert pexpires(1000.0, keys[0]) == 1  # a new hash: armed
    assert 19_000 < client.pttl(bucket) <= _lifetime_ms(rule)
    assert pexpires(1005.0, keys[1]) == 0  # 5 s later: its state ends before the hash does
    assert pexpires(1009.9, keys[0]) == 0
    assert pexpires(1010.5, keys[2]) == 1  # more than M since: re-armed
    assert decode_time_field(client.hget(bucket, "~")) == 1010.5
    assert pexpires(1000.0, keys[3]) == 1  # a clock behind the note: re-armed, never trusted


def decode_time_field(raw: bytes | None) -> float:
    assert raw is not None
    return float(raw[1:]) if raw.startswith(b"f") else int(raw) / 4194304


def test_a_large_sweep_removes_every_stale_field(redis_url: str, client: redis.Redis) -> None:
    """More stale fields than one HDEL takes at once (the script deletes in slices)."""
    backend = RedisBackend(redis_url, min_ttl=60, **RELAXED)
    rule = parse_rate("1/second", "gcra")
    keys = [f"rl:{{big}}c{i:05d}:s0" for i in range(2048)]
    bucket = locate(keys[0])[0]
    for key in keys[:1500]:
        backend.hit([key], [rule], 1, 1000.0)
    for key in keys[1500:2047]:  # at 1002.0 the first 1,500 are stale; field 2,048 (with '~') sweeps
        backend.hit([key], [rule], 1, 1002.0)
    assert client.hlen(bucket) == 2048 - 1500
    backend.close()


def test_locate_mirrors_the_script(redis_url: str, client: redis.Redis) -> None:
    """The hash and field Python computes (reset, tests) are the ones the script writes."""
    backend = RedisBackend(redis_url, **RELAXED)
    limiter = Limiter(backend)
    quota = limiter.quota("5/minute", scope="GET /x")
    for prefix in ("rl", "app:rl", "a:b:c"):
        key = Limiter(redis_url, prefix=prefix).storage_keys("someone", quota)[0]
        assert key.startswith(prefix + ":{") and len(key) == len(prefix) + 27
        assert backend.hit([key], list(quota.rules), 1, None).allowed
        assert client.hexists(*locate(key)), key
    assert locate("no-tag:x") == ("no-tag:x", "")
    backend.close()


def test_reset_deletes(backend: RedisBackend, client: redis.Redis) -> None:
    keys = _keys(len(ALL_RULES))
    stored = _stored(keys, ALL_RULES)
    other = _keys(len(ALL_RULES))  # another client: must keep its states
    backend.hit(keys, ALL_RULES, 1, None)
    backend.hit(other, ALL_RULES, 1, None)
    assert _states(client, keys, ALL_RULES) == len(ALL_RULES)
    backend.reset(keys)
    assert _states(client, keys, ALL_RULES) == 0
    assert _states(client, other, ALL_RULES) == len(ALL_RULES)
    backend.reset([])

    async def main() -> None:
        await backend.ahit(keys, ALL_RULES, 1, None)
        await backend.areset(keys)
        await backend.areset([])
        await backend.aclose()

    asyncio.run(main())
    assert _states(client, keys, ALL_RULES) == 0
    # what is left of the client's time states: their hashes' '~' notes, which expire
    assert all(client.hkeys(h) == [b"~"] for h in stored[:3]), [client.hkeys(h) for h in stored[:3]]


def test_reset_keeps_the_other_fields_of_a_shared_hash(backend: RedisBackend, client: redis.Redis) -> None:
    rule = [RULES["gcra"]]
    mine, theirs = ["rl:{sh}mine:s0"], ["rl:{sh}theirs:s0"]
    backend.hit(mine, rule, 1, None)
    backend.hit(theirs, rule, 1, None)
    backend.reset(mine)
    assert not client.hexists(*locate(mine[0]))
    assert client.hexists(*locate(theirs[0]))
    assert backend.hit(mine, rule, 1, None).remaining == RULES["gcra"].capacity - 1  # whole again


# -- round trips and clients -------------------------------------------------------


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_one_evalsha_per_request(backend: RedisBackend, client: redis.Redis) -> None:
    keys = _keys(len(ALL_RULES))
    backend.hit(keys, ALL_RULES, 1, None)  # warm: connection handshake and script load
    client.config_resetstat()
    n = 25
    for _ in range(n):
        backend.hit(keys, ALL_RULES, 1, None)
    stats = _commandstats(client)
    assert stats.pop("evalsha") == n
    inside = {"time", "get", "set", "del", "llen", "lindex", "ltrim", "rpush", "pexpire", "hmget", "hset", "hdel",
              "hlen", "hgetall"}
    outside = {name: calls for name, calls in stats.items() if name not in inside | {"info", "config|resetstat"}}
    assert outside == {}, f"round trips other than EVALSHA: {outside}"


def test_sync_client_created_once_under_threads(redis_url: str) -> None:
    backend = RedisBackend(redis_url, **RELAXED)
    made: list[Any] = []
    original = ClientFactory.sync

    def counting(self: ClientFactory) -> Any:
        made.append(self)
        time.sleep(0.01)  # widen the race window
        return original(self)

    ClientFactory.sync = counting  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=backend.hit, args=(_keys(1), [RULES["gcra"]], 1, None)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    finally:
        ClientFactory.sync = original  # type: ignore[method-assign]
    assert len(made) == 1
    backend.close()


def test_async_client_created_once_per_loop(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    original = ClientFactory.async_

    def counting(self: ClientFactory) -> Any:
        made.append(self)
        return original(self)

    monkeypatch.setattr(ClientFactory, "async_", counting)
    backend = RedisBackend(redis_url, **RELAXED)

    async def burst() -> Any:
        results = await asyncio.gather(*(backend.ahit(_keys(1), [RULES["gcra"]], 1, None) for _ in range(20)))
        assert all(d.allowed for d in results)
        return backend._aclient

    async def main() -> None:
        first = await burst()
        assert await burst() is first
        await backend.aclose()

    asyncio.run(main())
    assert len(made) == 1
    asyncio.run(main())  # a new event loop gets its own client (connections belong to a loop)
    assert len(made) == 2


def test_unix_socket(redis_server_binary: ServerBinary) -> None:
    folder = tempfile.mkdtemp(prefix="rl-unix-")  # short path: sun_path holds ~100 bytes
    sock = os.path.join(folder, "r.sock")
    server = RedisServer(
        binary=redis_server_binary.path, config=[f"unixsocket {sock}", "unixsocketperm 700"], name="unix"
    )
    try:
        server.start()
        backend = RedisBackend(f"unix://{sock}?db=0", socket_timeout=2.0)
        assert backend.hit(_keys(1), [RULES["gcra"]], 1, None).allowed

        async def main() -> None:
            assert (await backend.ahit(_keys(1), [RULES["gcra"]], 1, None)).allowed
            await backend.aclose()

        asyncio.run(main())
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_driver_errors_are_backend_errors(backend: RedisBackend, client: redis.Redis) -> None:
    keys = _keys(1)
    client.set(keys[0], "not a number")  # a foreign value under our key: the script errors
    with pytest.raises(BackendError) as info:
        backend.hit(keys, [RULES["sliding_log"]], 1, None)
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert repr(backend).startswith("RedisBackend('redis://")


def test_rule_of_unknown_algorithm_is_rejected_by_the_script(backend: RedisBackend) -> None:
    rule = Rule(5, 1.0)
    object.__setattr__(rule, "algorithm", "nope")  # smuggled past Rule's own validation
    with pytest.raises(BackendError, match="unknown algorithm"):
        backend.hit(_keys(1), [rule], 1, None)


def test_each_request_runs_a_script_with_only_its_algorithms() -> None:
    from ratelimit_mw.backends.redis_lua import script_for

    gcra_only = script_for((parse_rate("10/second"),)).text
    assert "-- >>> gcra.lua" in gcra_only and "-- >>> sliding_log.lua" not in gcra_only
    windows = script_for((parse_rate("10/second", "sliding_window"),)).text
    assert "-- >>> fixed_window.lua" in windows  # shares the window helpers
    assert script_for((*ALL_RULES, parse_rate("2 concurrent"))).sha == script().sha
