"""The in-process Limiter.check (one frame, bound at construction) answers as the general path."""

from __future__ import annotations

import itertools

import pytest

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
