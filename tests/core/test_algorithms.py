"""Each algorithm as a pure function, with exact times (no clock, no sleeps)."""

from __future__ import annotations

import math

import pytest

from ratelimit_mw.core.algorithms import step
from ratelimit_mw.core.rates import ALGORITHMS, Rule, parse_rate

T0 = 1_000_000.0


def run(rule: Rule, times: list[float], cost: int = 1) -> list[bool]:
    """Feed requests at ``times``; store state only when admitted (as backends do)."""
    state = None
    out = []
    for t in times:
        s = step(state, t, rule, cost)
        if s.allowed:
            state = s.state
        out.append(s.allowed)
    return out


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket"])
@pytest.mark.parametrize(
    ("rate", "burst_admitted"),
    [
        pytest.param("10/second", 10, id="burst-defaults-to-limit"),
        pytest.param("10/second; burst=40", 40, id="seed-40-token-bucket"),
        pytest.param("10/second; burst_multiplier=1.5", 15, id="burst-multiplier"),
        pytest.param("5/minute", 5, id="per-minute"),
    ],
)
def test_bucket_admits_burst_then_refills(algorithm: str, rate: str, burst_admitted: int) -> None:
    rule = parse_rate(rate, algorithm)
    results = run(rule, [T0] * (burst_admitted + 5))
    assert results.count(True) == burst_admitted
    assert results[:burst_admitted] == [True] * burst_admitted
    # after exactly one interval, exactly one more token
    state = None
    for _ in range(burst_admitted):
        state = step(state, T0, rule, 1).state
    denied = step(state, T0 + rule.interval * 0.999, rule, 1)
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(rule.interval * 0.001, abs=1e-6)
    allowed = step(state, T0 + rule.interval, rule, 1)
    assert allowed.allowed and allowed.remaining == 0


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket"])
def test_bucket_retry_after_is_exact(algorithm: str) -> None:
    rule = parse_rate("10/second; burst=40", algorithm)
    state = None
    for _ in range(40):
        state = step(state, T0, rule, 1).state
    s = step(state, T0 + 0.25, rule, 5)  # 2.5 tokens back, need 5
    assert not s.allowed
    assert s.retry_after == pytest.approx(0.25, abs=1e-6)
    assert s.remaining == 2
    assert step(state, T0 + 0.25 + s.retry_after, rule, 5).allowed


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket", "leaky_bucket"])
def test_cost_greater_than_one_consumes_that_many(algorithm: str) -> None:
    rule = parse_rate("10/second", algorithm)
    s = step(None, T0, rule, 4)
    assert s.allowed and s.remaining == 6
    s2 = step(s.state, T0, rule, 7)
    assert not s2.allowed
    assert s2.remaining == 6


def test_gcra_reset_after_counts_time_to_full() -> None:
    rule = parse_rate("10/second; burst=40")
    s = step(None, T0, rule, 1)
    assert s.reset_after == pytest.approx(0.1)
    assert s.ttl == pytest.approx(0.1)
    s = step(s.state, T0, rule, 3)
    assert s.reset_after == pytest.approx(0.4)
    assert s.remaining == 36


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        pytest.param([0, 0, 0, 0.999], [True, True, False, False], id="same-window"),
        pytest.param([0.5, 0.6, 1.0, 1.0, 1.0], [True, True, True, True, False], id="edge-resets"),
        pytest.param([0.999, 0.999, 1.0, 1.0], [True, True, True, True], id="burst-across-edge"),
    ],
)
def test_fixed_window_edges(times: list[float], expected: list[bool]) -> None:
    rule = parse_rate("2/second", "fixed_window")
    assert run(rule, [T0 + t for t in times]) == expected


def test_fixed_window_retry_after_is_window_end() -> None:
    rule = parse_rate("2/10s", "fixed_window")
    state = step(None, T0 + 3, rule, 2).state
    s = step(state, T0 + 4, rule, 1)
    assert not s.allowed and s.retry_after == pytest.approx(6.0)
    assert s.reset_after == pytest.approx(6.0)


def test_sliding_window_weights_previous_window() -> None:
    rule = parse_rate("10/second", "sliding_window")
    state = None
    for _ in range(10):
        state = step(state, T0 + 0.9, rule, 1).state
    # at T0+1.5 the previous window (10) weighs 0.5 -> estimate 5: 5 more admitted
    s = step(state, T0 + 1.5, rule, 1)
    assert s.allowed and s.remaining == 4
    denied = step(state, T0 + 1.0, rule, 1)
    assert not denied.allowed
    # 10 * (1 - e) + 1 <= 10  ->  e >= 0.1
    assert denied.retry_after == pytest.approx(0.1)
    assert step(state, T0 + 1.0 + denied.retry_after, rule, 1).allowed


def test_sliding_log_is_exact_moving_window() -> None:
    rule = parse_rate("3/second", "sliding_log")
    state = None
    for t in (0.0, 0.2, 0.4):
        state = step(state, T0 + t, rule, 1).state
    denied = step(state, T0 + 0.9, rule, 1)
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(0.1)  # first entry leaves at T0+1.0
    assert not step(state, T0 + 0.999, rule, 1).allowed
    ok = step(state, T0 + 1.0, rule, 1)
    assert ok.allowed and ok.remaining == 0
    assert step(state, T0 + 1.0, rule, 2).allowed is False
    big = step(state, T0 + 0.5, rule, 2)
    assert big.retry_after == pytest.approx(0.7)  # two oldest must leave: 0.2 + 1.0 - 0.5


def test_leaky_bucket_delays_to_constant_outflow() -> None:
    rule = parse_rate("10/second; max_delay=0.3", "leaky_bucket")
    state = None
    delays = []
    for _ in range(5):
        s = step(state, T0, rule, 1)
        delays.append((s.allowed, round(s.delay, 6)))
        if s.allowed:
            state = s.state
    assert delays == [(True, 0.0), (True, 0.1), (True, 0.2), (True, 0.3), (False, 0.0)]
    assert rule.capacity == 4
    s = step(state, T0, rule, 1)
    assert s.retry_after == pytest.approx(0.1)


def test_leaky_bucket_without_max_delay_is_strict() -> None:
    rule = parse_rate("2/second; max_delay=0", "leaky_bucket")
    s = step(None, T0, rule, 1)
    assert s.allowed and s.delay == 0
    assert not step(s.state, T0 + 0.4, rule, 1).allowed
    assert step(s.state, T0 + 0.5, rule, 1).allowed


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))  # the rate algorithms
def test_denied_step_keeps_state(algorithm: str) -> None:
    rule = parse_rate("1/second", algorithm)
    first = step(None, T0, rule, 1)
    second = step(first.state, T0, rule, 1)
    assert first.allowed and not second.allowed
    assert second.state == first.state
    assert second.retry_after > 0
    assert math.isfinite(second.retry_after)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))  # the rate algorithms
def test_state_is_fresh_after_ttl(algorithm: str) -> None:
    rule = parse_rate("5/second", algorithm)
    s = step(None, T0, rule, 3)
    fresh = step(None, T0 + s.ttl, rule, 1)
    after = step(s.state, T0 + s.ttl, rule, 1)
    assert (after.allowed, after.remaining) == (fresh.allowed, fresh.remaining)
