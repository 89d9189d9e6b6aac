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
