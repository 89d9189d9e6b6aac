"""Property tests: no algorithm admits more than its stated maximum in any window,
and the token bucket (tokens view) agrees with GCRA (arrival-time view)."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.core.algorithms import step
from ratelimit_mw.core.rates import Rule

T0 = 1_700_000_000.0  # realistic epoch magnitude: exercises float resolution

rates = st.tuples(st.integers(1, 20), st.sampled_from([1.0, 2.0, 10.0, 60.0]), st.integers(0, 10))
gaps = st.lists(st.integers(0, 2000), min_size=1, max_size=120)  # milliseconds between requests
costs = st.integers(1, 3)


def admitted_times(rule: Rule, arrivals: list[float], cost: int) -> list[float]:
    state = None
    out = []
    for t in arrivals:
        s = step(state, t, rule, cost)
        if s.allowed:
            state = s.state
            out.extend([t] * cost)
    return out


def arrivals_from(gaps_ms: list[int], scale: float) -> list[float]:
    t = T0
    out = []
    for g in gaps_ms:
        t += g / 1000.0 * scale
        out.append(t)
    return out


def max_in_window(times: list[float], width: float, *, closed: bool) -> int:
    """Most admissions in any window [t, t + width) (or closed [t, t+width])."""
    best = 0
    for i, t in enumerate(times):
        j = bisect_left(times, t + width + (1e-7 if closed else -1e-7))
        best = max(best, j - i)
    return best


@settings(max_examples=150, deadline=None)
@given(rates, gaps, costs)
def test_bucket_algorithms_never_exceed_burst_plus_rate(rate: tuple, gaps_ms: list[int], cost: int) -> None:
    limit, period, extra = rate
    for algorithm in ("gcra", "token_bucket", "leaky_bucket"):
        rule = Rule(limit, period, burst=limit + extra, algorithm=algorithm)
        times = admitted_times(rule, arrivals_from(gaps_ms, period), cost)
        for width in (rule.interval, period, 3 * period):
            allowed_max = rule.capacity + width / rule.interval
            assert max_in_window(times, width, closed=False) <= allowed_max + 1e-6


@settings(max_examples=150, deadline=None)
@given(rates, gaps, costs)
def test_window_algorithms_respect_their_limits(rate: tuple, gaps_ms: list[int], cost: int) -> None:
    limit, period, _ = rate
    exact = Rule(limit, period, algorithm="sliding_log")
    times = admitted_times(exact, arrivals_from(gaps_ms, period), cost)
    # exact: at most `limit` in any window (t - period, t]
    assert max_in_window(times, period, closed=False) <= limit
    for algorithm in ("fixed_window", "sliding_window"):
        rule = Rule(limit, period, algorithm=algorithm)
        times = admitted_times(rule, arrivals_from(gaps_ms, period), cost)
        # each aligned window admits at most `limit`
        counts: dict[int, int] = {}
        for t in times:
            idx = int(t // period)
            counts[idx] = counts.get(idx, 0) + 1
        assert max(counts.values(), default=0) <= limit
        # any window of one period admits at most 2 * limit (documented approximation)
        assert max_in_window(times, period, closed=False) <= 2 * limit


@settings(max_examples=200, deadline=None)
@given(rates, gaps, st.lists(costs, min_size=120, max_size=120))
def test_token_bucket_agrees_with_gcra(rate: tuple, gaps_ms: list[int], cost_list: list[int]) -> None:
    limit, period, extra = rate
    gcra = Rule(limit, period, burst=limit + extra, algorithm="gcra")
    bucket = Rule(limit, period, burst=limit + extra, algorithm="token_bucket")
    s1 = s2 = None
    for t, cost in zip(arrivals_from(gaps_ms, period), cost_list):
        a = step(s1, t, gcra, cost)
        b = step(s2, t, bucket, cost)
        assert (a.allowed, a.remaining) == (b.allowed, b.remaining)
        assert abs(a.retry_after - b.retry_after) < 1e-5
        assert abs(a.reset_after - b.reset_after) < 1e-5
        if a.allowed:
            s1, s2 = a.state, b.state
