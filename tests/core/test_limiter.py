"""The framework-agnostic Limiter with the memory backend and a fake clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import ConfigError, RateLimitExceeded
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.testing import FakeClock


def test_check_consumes_and_refills_exactly() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    got = [limiter.check("k", "10/second; burst=40").allowed for _ in range(41)]
    assert got.count(True) == 40 and got[-1] is False
    clock.advance(0.1)
    assert limiter.check("k", "10/second; burst=40").allowed
    assert not limiter.check("k", "10/second; burst=40").allowed


def test_keys_and_scopes_are_independent() -> None:
    limiter = Limiter(clock=FakeClock())
    assert limiter.check("a", "1/minute").allowed
    assert not limiter.check("a", "1/minute").allowed
    assert limiter.check("b", "1/minute").allowed
    assert limiter.check("a", "1/minute", scope="other").allowed


def test_peek_and_reset() -> None:
    limiter = Limiter(clock=FakeClock())
    limiter.check("k", "5/minute", cost=3)
    usage = limiter.peek("k", "5/minute")
    assert (usage.allowed, usage.remaining, usage.limit) == (True, 2, 5)
    assert limiter.peek("k", "5/minute").remaining == 2  # peek consumed nothing
    limiter.reset("k", "5/minute")
    assert limiter.peek("k", "5/minute").remaining == 5


def test_storage_keys_hide_the_raw_key_and_share_a_hash_slot() -> None:
    limiter = Limiter(clock=FakeClock(), key_secret="s3cret")
    quota = limiter.quota(["10/second", "1000/hour"], "GET /x")
    keys = limiter.storage_keys("api-key-SECRET", quota)
    assert len(keys) == 2 and len(set(keys)) == 2
    assert all("SECRET" not in k for k in keys)
    tags = {k.split("{")[1].split("}")[0] for k in keys}
    assert len(tags) == 1
    other = Limiter(clock=FakeClock(), key_secret="other")
    assert other.storage_keys("api-key-SECRET", quota) != keys


def test_acquire_waits_on_the_injected_clock() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    for _ in range(3):
        limiter.acquire("api", "3/second")
    start = clock.now
    limiter.acquire("api", "3/second")
    assert clock.now - start == pytest.approx(1 / 3, abs=1e-6)
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("api", "1/minute", timeout=0)
        limiter.acquire("api", "1/minute", timeout=5)
    assert info.value.decision.retry_after > 5


def test_aacquire_waits_without_blocking() -> None:
    clock = FakeClock()
    limiter = Limiter(clock=clock)

    async def main() -> list[float]:
        times = []
        for _ in range(4):
            await limiter.aacquire("api", "2/second")
            times.append(clock.now)
        return times

    times = asyncio.run(main())
    assert [round(t - times[0], 6) for t in times] == [0.0, 0.0, 0.5, 1.0]


def test_threads_never_over_admit() -> None:
    limiter = Limiter(clock=FakeClock())
    admitted = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(limiter.check("shared", "100/hour").allowed for _ in range(200))
        with lock:
            admitted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 100


def test_asyncio_tasks_never_over_admit() -> None:
    limiter = Limiter(clock=FakeClock())

    async def main() -> int:
        results = await asyncio.gather(*(limiter.acheck("k", "50/hour") for _ in range(500)))
        return sum(d.allowed for d in results)

    assert asyncio.run(main()) == 50


class BrokenBackend(Backend, AsyncBackend):
    """A backend whose store is down: every call raises like a driver would."""

    has_clock = True

    def __init__(self) -> None:
        self.calls = 0
        self.broken = True

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        self.calls += 1
        if self.broken:
            raise ConnectionError("connection refused")
        rule = rules[0]
        return Decision(True, rule.capacity, rule.capacity - cost, 1.0, 0.0, rule)

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        raise ConnectionError("down")

    def reset(self, keys: Sequence[str]) -> None:
        raise ConnectionError("down")

    async def ahit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        return self.hit(keys, rules, cost, now)

    async def apeek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        raise ConnectionError("down")

    async def areset(self, keys: Sequence[str]) -> None:
        raise ConnectionError("down")


@pytest.mark.parametrize(
    ("mode", "expected_allowed"),
    [
        pytest.param("allow", [True] * 5, id="fail-open"),
        pytest.param("deny", [False] * 5, id="fail-closed"),
        pytest.param("memory", [True, True, False, False, False], id="memory-fallback"),
    ],
)
def test_failure_modes(mode: str, expected_allowed: list[bool]) -> None:
    clock = FakeClock()
    backend = BrokenBackend()
    limiter = Limiter(backend, clock=clock, on_backend_error=mode)
    decisions = [limiter.check("k", "2/minute") for _ in range(5)]
    assert [d.allowed for d in decisions] == expected_allowed
    assert all(d.degraded for d in decisions)


def test_breaker_stops_calling_a_failing_backend_and_recovers() -> None:
    clock = FakeClock()
    backend = BrokenBackend()
    limiter = Limiter(backend, clock=clock, breaker_threshold=3, breaker_recovery=2.0)
    for _ in range(10):
        limiter.check("k", "100/second")
    assert backend.calls == 3  # opened after 3 failures; 7 checks cost no backend call
    assert limiter.breaker.state == "open"
    clock.advance(2.0)
    limiter.check("k", "100/second")  # half-open probe fails -> open again
    assert backend.calls == 4 and limiter.breaker.state == "open"
    backend.broken = False
    clock.advance(2.0)
    d = limiter.check("k", "100/second")
    assert not d.degraded and limiter.breaker.state == "closed"
    limiter.check("k", "100/second")
    assert backend.calls == 6


def test_over_limit_cache_answers_denials_locally() -> None:
    clock = FakeClock()

    class CountingMemory(BrokenBackend):
        def __init__(self) -> None:
            super().__init__()
            from ratelimit_mw.backends.memory import MemoryBackend

            self.inner = MemoryBackend()
            self.broken = False

        def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
            self.calls += 1
            return self.inner.hit(keys, rules, cost, now)

    backend = CountingMemory()
    limiter = Limiter(backend, clock=clock)
    results = [limiter.check("abuser", "5/minute").allowed for _ in range(100)]
    assert results.count(True) == 5
    assert backend.calls == 6  # 5 allowed + the first denial; 94 denials answered locally
    clock.advance(12.0)  # one unit is back after 12 s
    assert limiter.check("abuser", "5/minute").allowed
    assert backend.calls == 7


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        Limiter(on_backend_error="maybe")
    with pytest.raises(ConfigError):
        Limiter().check("k", [])
    with pytest.raises(ConfigError):
        Limiter().check("k", "ten per minute")
