"""The in-process Limiter.check (one frame, bound at construction) answers as the general path."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.limiter import Limiter, Quota
from ratelimit_mw.testing import FakeClock

LIMITS = [
    "5/second",
    "5/second; algorithm=token_bucket",
    "3/second; algorithm=leaky_bucket; max_delay=1s",
    "4/second; algorithm=fixed_window",
    "4/second; algorithm=sliding_window",
    "4/second; algorithm=sliding_log",
    ["2/second; name=a", "5/minute; name=b"],
]


@pytest.mark.parametrize("limits", LIMITS, ids=[str(x) for x in LIMITS])
def test_bound_check_matches_the_general_memory_path(limits: str | list[str]) -> None:
    clock = FakeClock()
    fast = Limiter("memory://", clock=clock)
    slow_backend = MemoryBackend()
    quota = fast.quota(limits, "scope")
    assert fast.check is not Limiter.check.__get__(fast)  # the bound one-frame function
    for step, (key, cost) in enumerate(itertools.product(["a", "b", "a"], [1, 2, 0, 1])):
        clock.advance(0.07 * (step % 5))
        for use_quota in (True, False):
            got = fast.check(key, quota if use_quota else limits, cost=cost, scope="scope")
            want = slow_backend.hit_client(hash(key), quota, cost, clock())
            assert got == want, (step, key, cost, use_quota)
            assert type(got).__name__ == "Decision"


def test_bound_check_accepts_the_method_signature() -> None:
    limiter = Limiter("memory://", clock=FakeClock())
    assert limiter.check("k", "1/second", on_error="deny").allowed
    assert not limiter.check("k", "1/second").allowed
    assert limiter.check("k", "1/second", scope="other").allowed  # another scope, other buckets
    quota = limiter.quota("1/second")
    assert isinstance(quota, Quota) and quota.single == quota.slots[0]
    assert limiter.quota(["1/second", "2/minute"]).single is None


def test_bound_check_keeps_the_size_bound() -> None:
    limiter = Limiter(MemoryBackend(max_keys=50), clock=FakeClock())
    for i in range(500):
        assert limiter.check(f"client-{i}", "1/minute").allowed
    assert len(limiter.backend) <= 50  # type: ignore[arg-type]


SEVERAL = [
    ["2/second; name=a", "5/minute; name=b"],
    ["3/second; burst=5", "4/second; algorithm=fixed_window", "9/minute; algorithm=sliding_log"],
]


@pytest.mark.parametrize("limits", SEVERAL, ids=[str(x) for x in SEVERAL])
def test_several_limits_answer_as_the_keyed_path(limits: list[str]) -> None:
    """hit_client remembers a quota's tables; the keyed hit() looks them up each time."""
    clock = FakeClock()
    backend = MemoryBackend()
    reference = MemoryBackend()
    quota = Limiter(backend, clock=clock).quota(limits, "scope")
    for step, (key, cost) in enumerate(itertools.product(["a", "b", "a"], [1, 2, 0, 1, 3])):
        clock.advance(0.09 * (step % 4))
        got = backend.hit_client(hash(key), quota, cost, clock())
        want = reference.hit([f"{key}:{slot}" for slot in quota.slots], quota.rules, cost, clock())
        assert got == want, (step, key, cost)
    assert not got.allowed or got.remaining < quota.rules[0].capacity  # the trace did use the quota
    backend.clear()  # forgets the tables, and with them the remembered per-quota lists
    fresh = MemoryBackend().hit(["a:0", "a:1", "a:2"][: len(quota.rules)], quota.rules, 1, clock())
    assert backend.hit_client(hash("a"), quota, 1, clock()) == fresh
    assert len(backend) == len(quota.rules)


RATES = st.sampled_from(["1/second", "3/second", "10/second; burst=40", "7/7.5s", "5/minute; burst=2",
                         "1000/hour", "10000/day", "2/0.3s"])
STEPS = st.lists(
    st.tuples(st.sampled_from(["a", "b"]),
              st.one_of(st.sampled_from([0.0, 1e-9, 1e-6, 0.1, 0.3]), st.floats(0, 30, allow_nan=False)),
              st.sampled_from([1, 1, 1, 0, 2, 5])),
    min_size=1, max_size=80,
)
ALGORITHMS = st.sampled_from(["gcra", "token_bucket"])  # the two written out inline
STARTS = st.sampled_from([0.0, 1_800_000_000.123456, 12345.678])  # clock origins: zero, epoch-like, odd


@settings(max_examples=300, deadline=None)
@given(rate=RATES, algorithm=ALGORITHMS, steps=STEPS, start=STARTS)
def test_the_written_out_algorithms_are_the_shared_ones_bit_for_bit(
    rate: str, algorithm: str, steps: list[tuple[str, float, int]], start: float
) -> None:
    """The bound check writes gcra and the token bucket out inline; the general path
    calls ``core.algorithms``. Every Decision and every stored state must be the same
    floats, for odd periods, bursts, costs (0 included) and gaps (tiny ones included)."""
    clock = FakeClock(start)
    fast = Limiter("memory://", clock=clock)
    reference = MemoryBackend()
    quota = fast.quota(f"{rate}; algorithm={algorithm}", "scope")
    assert quota.rules[0].algorithm == algorithm
    for key, gap, cost in steps:
        clock.advance(gap)
        got = fast.check(key, quota, cost=cost)
        want = reference.hit_client(hash(key), quota, cost, clock())
        assert got == want
        assert [repr(x) for x in got] == [repr(x) for x in want]  # -0.0 vs 0.0 included
    mine = fast.backend._tables[quota.single].states  # type: ignore[attr-defined]
    theirs = reference._tables[quota.single].states
    assert {k: repr(v) for k, v in mine.items()} == {k: repr(v) for k, v in theirs.items()}


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket"])
@pytest.mark.parametrize("start", [0.0, 1_800_000_000.123456])
def test_the_written_out_algorithms_agree_on_the_boundaries(algorithm: str, start: float) -> None:
    """A burst at one instant, then waits of exactly one interval: the cases where the
    float tolerance EPS decides (the 3rd of 3/second lands 2e-16 past the tolerance)."""
    for rate in ["1/second", "3/second", "10/second; burst=40", "7/7.5s", "2/0.3s", "5/minute; burst=2"]:
        clock = FakeClock(start)
        fast = Limiter("memory://", clock=clock)
        reference = MemoryBackend()
        quota = fast.quota(f"{rate}; algorithm={algorithm}", "scope")
        rule = quota.rules[0]
        outcomes = []
        for i in range(3 * rule.capacity + 6):
            if i > rule.capacity and i % 2:
                clock.advance(rule.interval)
            got = fast.check("a", quota)
            assert got == reference.hit_client(hash("a"), quota, 1, clock()), (rate, i)
            outcomes.append(got.allowed)
        assert outcomes[: rule.capacity] == [True] * rule.capacity, rate  # the whole burst, EPS included
        assert False in outcomes, rate


@settings(max_examples=200, deadline=None)
@given(rate=RATES, algorithm=ALGORITHMS, steps=STEPS, start=STARTS)
def test_a_lane_stores_and_reports_what_the_shared_algorithms_do(
    rate: str, algorithm: str, steps: list[tuple[str, float, int]], start: float
) -> None:
    """A fast lane writes gcra out inline (the token bucket calls it): what it reports
    (remaining, reset) and stores must be the shared algorithm's floats. A lane that
    declines (a denial, a sweep due) is followed by the general check, as the engine does."""
    clock = FakeClock(start)
    fast = Limiter("memory://", clock=clock)
    reference = MemoryBackend()
    quota = fast.quota(f"{rate}; algorithm={algorithm}", "scope")
    fast.check("warm-up", quota)  # the lane needs its table
    reference.hit_client(hash("warm-up"), quota, 1, clock())
    for cost in {c for _, _, c in steps if c >= 1}:
        lane = fast.lane(quota, cost, lambda key: key, (lambda remaining, reset_after: (remaining, reset_after),))
        assert lane is not None
        for key, gap, step_cost in steps:
            if step_cost != cost:
                continue
            clock.advance(gap)
            want = reference.hit_client(hash(key), quota, cost, clock())
            reported = lane(key)
            if reported is None:
                got = fast.check(key, quota, cost=cost)
                assert [repr(x) for x in got] == [repr(x) for x in want]
            else:
                assert want.allowed and not want.delay
                assert (type(reported[0]), repr(reported[1])) == (int, repr(want.reset_after))
                assert reported[0] == want.remaining
    mine = fast.backend._tables[quota.single].states  # type: ignore[attr-defined]
    theirs = reference._tables[quota.single].states
    assert {k: repr(v) for k, v in mine.items()} == {k: repr(v) for k, v in theirs.items()}


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket"])
@pytest.mark.parametrize("start", [0.0, 1_800_000_000.123456])
@pytest.mark.parametrize("rate", ["1/second", "3/second", "10/second; burst=40", "7/7.5s", "2/0.3s",
                                  "5/minute; burst=2"])
def test_a_lane_admits_exactly_at_the_boundaries(algorithm: str, start: float, rate: str) -> None:
    """A burst, then requests just short of the instant the shared algorithm admits the
    next one (by its own ``retry_after``) and exactly at it: a lane admits a request
    exactly when the shared algorithm does."""
    clock = FakeClock(start)
    fast = Limiter("memory://", clock=clock)
    reference = MemoryBackend()
    quota = fast.quota(f"{rate}; algorithm={algorithm}", "scope")
    fast.check("warm-up", quota)
    lane = fast.lane(quota, 1, lambda key: key, (lambda remaining, reset_after: remaining,))
    assert lane is not None

    def both(expect: bool | None) -> bool:
        want = reference.hit_client(hash("a"), quota, 1, clock())
        reported = lane("a")
        if reported is None:  # declined: the engine's general check decides
            assert fast.check("a", quota).allowed == want.allowed, rate
        else:
            assert want.allowed and reported == want.remaining, rate
        assert expect is None or want.allowed == expect, rate
        return want.allowed

    for _ in range(quota.rules[0].capacity + 1):
        both(None)
    for tiny in (1e-3, 1e-5, 1.5e-6):  # all past the float tolerance EPS (1e-6)
        wait = reference.peek_client(hash("a"), quota, clock()).retry_after
        assert wait > tiny, rate
        clock.advance(wait - tiny)
        both(False)
        clock.advance(tiny)
        if not both(None):  # at the instant, float rounding may leave it a hair short
            clock.advance(tiny)
            both(True)
