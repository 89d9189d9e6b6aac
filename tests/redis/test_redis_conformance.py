"""Conformance: Redis (Lua mirrors) decides exactly like the memory backend (Python).

One random timed trace of (time, client, cost) is replayed through both backends
with explicit time; every decision (and every peek) must be identical, bit for
bit, for every algorithm, single- and multi-rule with mixed algorithms, through
the sync and the async API.

The Redis backend runs with ``min_ttl`` of an hour: traces advance a fake clock,
and a key must not expire in real time while the fake clock still considers it
live (see ``RedisBackend``'s ``min_ttl``).

``RL_CONFORMANCE_EXAMPLES=1500`` runs a deep search (a few minutes).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import ALGORITHMS, Rule

pytestmark = pytest.mark.redis

SETTINGS = settings(
    max_examples=int(os.environ.get("RL_CONFORMANCE_EXAMPLES", "60")),  # raise for a deep run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Epoch-sized times exercise the integer state encoding; small ones the text fallback.
T0S = [1_700_000_000.0, 1_000_000.0, 1_754_321_098.765]
PERIODS = [0.5, 1.0, 2.0, 10.0, 60.0, 0.3]
#: Generous: these tests are about maths, and a loaded machine must not fail them.
TIMEOUTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


@st.composite
def rules(draw: st.DrawFn, algorithm: str | None = None) -> Rule:
    algo = algorithm or draw(st.sampled_from(ALGORITHMS))
    limit = draw(st.integers(1, 12))
    period = draw(st.sampled_from(PERIODS))
    burst = 0
    max_delay = None
    if algo in ("gcra", "token_bucket", "leaky_bucket"):
        burst = draw(st.sampled_from([0, 1, limit + draw(st.integers(0, 6))]))
        if algo == "leaky_bucket" and draw(st.booleans()):
            max_delay = draw(st.sampled_from([0.0, 0.25, 1.0, period * 2]))
    return Rule(limit, period, burst=burst, algorithm=algo, max_delay=max_delay)


#: One step: (gap in thousandths of the shortest period, client index, cost).
steps = st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=60)


def _trace(t0: float, unit: float, trace: list[tuple[int, int, int]]) -> list[tuple[float, int, int]]:
    out = []
    now = t0
    for gap, client, cost in trace:
        now += gap * unit
        out.append((now, client, cost))
    return out


def _keys(run: str, client: int, n: int) -> list[str]:
    # the Limiter's shape: the clients of a run share one hash per rule for time states
    return [f"conf:{{{run}}}c{client}:{i}" for i in range(n)]


def _same(actual: Decision, expected: Decision, where: str) -> None:
    assert actual == expected, f"{where}\n redis:  {actual}\n memory: {expected}"


def _replay_sync(backend: RedisBackend, rule_list: list[Rule], t0: float, trace: Any) -> None:
    memory = MemoryBackend()
    run = uuid.uuid4().hex
    unit = min(r.period for r in rule_list) / 1000
    for i, (now, client, cost) in enumerate(_trace(t0, unit, trace)):
        keys = _keys(run, client, len(rule_list))
        where = f"step {i} t={now!r} client={client} cost={cost} rules={rule_list}"
        _same(backend.hit(keys, rule_list, cost, now), memory.hit(keys, rule_list, cost, now), where)
        _same(backend.peek(keys, rule_list, now), memory.peek(keys, rule_list, now), "peek " + where)


async def _replay_async(url: str, rule_list: list[Rule], t0: float, trace: Any) -> None:
    backend = RedisBackend(url, min_ttl=3600, **TIMEOUTS)
    memory = MemoryBackend()
    run = uuid.uuid4().hex
    unit = min(r.period for r in rule_list) / 1000
    try:
        for i, (now, client, cost) in enumerate(_trace(t0, unit, trace)):
            keys = _keys(run, client, len(rule_list))
            where = f"step {i} t={now!r} client={client} cost={cost} rules={rule_list}"
            expected = await memory.ahit(keys, rule_list, cost, now)
            _same(await backend.ahit(keys, rule_list, cost, now), expected, where)
            _same(await backend.apeek(keys, rule_list, now), await memory.apeek(keys, rule_list, now), "peek " + where)
    finally:
        await backend.aclose()


@pytest.fixture
def sync_backend(redis_url: str) -> Any:
    backend = RedisBackend(redis_url, min_ttl=3600, **TIMEOUTS)
    yield backend
    backend.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_single_rule_sync(sync_backend: RedisBackend, algorithm: str) -> None:
    @SETTINGS
    @given(rule=rules(algorithm), t0=st.sampled_from(T0S), trace=steps)
    def check(rule: Rule, t0: float, trace: Any) -> None:
        _replay_sync(sync_backend, [rule], t0, trace)

    check()


@SETTINGS
@given(rule_list=st.lists(rules(), min_size=2, max_size=4), t0=st.sampled_from(T0S), trace=steps)
def test_mixed_rules_sync(sync_backend: RedisBackend, rule_list: list[Rule], t0: float, trace: Any) -> None:
    _replay_sync(sync_backend, rule_list, t0, trace)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_single_rule_async(redis_url: str, algorithm: str) -> None:
    @settings(SETTINGS, max_examples=25)
    @given(rule=rules(algorithm), t0=st.sampled_from(T0S), trace=steps)
    def check(rule: Rule, t0: float, trace: Any) -> None:
        asyncio.run(_replay_async(redis_url, [rule], t0, trace))

    check()


@SETTINGS
@given(rule_list=st.lists(rules(), min_size=1, max_size=4), t0=st.sampled_from(T0S), trace=steps)
def test_mixed_rules_async(redis_url: str, rule_list: list[Rule], t0: float, trace: Any) -> None:
    asyncio.run(_replay_async(redis_url, rule_list, t0, trace))


@pytest.mark.parametrize(
    "rule_list",
    [
        pytest.param([Rule(3, 1.0, algorithm="sliding_log"), Rule(2, 10.0, algorithm="fixed_window")], id="log+fixed"),
        pytest.param(
            [Rule(5, 60.0, algorithm="gcra", burst=2), Rule(4, 1.0, algorithm="leaky_bucket")], id="gcra+leaky"
        ),
    ],
)
def test_denied_rule_consumes_nothing_elsewhere(sync_backend: RedisBackend, rule_list: list[Rule]) -> None:
    """All-or-nothing on the server: a denial leaves every key's bytes untouched."""
    client = sync_backend._sync_client()
    keys = _keys(uuid.uuid4().hex, 0, len(rule_list))
    now = 1_700_000_000.0
    while sync_backend.hit(keys, rule_list, 1, now).allowed:
        pass
    before = [client.dump(k) for k in keys]
    for _ in range(3):
        assert not sync_backend.hit(keys, rule_list, 1, now).allowed
    assert [client.dump(k) for k in keys] == before


def test_large_cost_on_sliding_log(sync_backend: RedisBackend) -> None:
    """Costs above Lua's unpack() limit are pushed in chunks, and still match memory."""
    rule = Rule(5000, 60.0, algorithm="sliding_log")
    memory = MemoryBackend()
    keys = _keys(uuid.uuid4().hex, 0, 1)
    for now, cost in ((1_700_000_000.0, 4000), (1_700_000_001.5, 999), (1_700_000_002.0, 2), (1_700_000_061.0, 1)):
        _same(sync_backend.hit(keys, [rule], cost, now), memory.hit(keys, [rule], cost, now), f"t={now}")
    assert sync_backend._sync_client().llen(keys[0]) == 1000  # 4000 expired at 61.0, 999 + 1 live
