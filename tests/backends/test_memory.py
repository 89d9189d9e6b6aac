"""The memory backend: expiry, bounded size, eviction count, interface twins."""

from __future__ import annotations

import inspect

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.core.rates import parse_rate

T0 = 1_000_000.0


def test_entries_expire_when_fresh_again() -> None:
    backend = MemoryBackend()
    rule = parse_rate("10/second")
    backend.hit(["a"], [rule], 1, T0)
    assert backend.tracked_keys == 1
    backend.hit(["b"], [rule], 1, T0 + 61)  # periodic sweep runs; 'a' expired at T0 + 0.1
    assert backend.tracked_keys == 1


def test_hard_cap_bounds_memory_and_counts_evictions() -> None:
    backend = MemoryBackend(max_keys=1000)
    rule = parse_rate("10/hour")
    for i in range(5000):
        backend.hit([f"k{i}"], [rule], 1, T0)
    assert backend.tracked_keys <= 1000
    assert backend.evictions >= 4000
    # the most recently written key survived
    assert backend.peek(["k4999"], [rule], T0).remaining == 9


def test_denied_request_stores_nothing() -> None:
    backend = MemoryBackend()
    rule = parse_rate("1/hour")
    backend.hit(["k"], [rule], 1, T0)
    before = {k: dict(t.states) for k, t in backend._tables.items()}
    assert not backend.hit(["k"], [rule], 1, T0 + 1).allowed
    assert {k: dict(t.states) for k, t in backend._tables.items()} == before


def test_sync_and_async_interfaces_are_twins() -> None:
    sync = {n for n, _ in inspect.getmembers(Backend, inspect.isfunction) if not n.startswith("_")}
    asyn = {n for n, _ in inspect.getmembers(AsyncBackend, inspect.isfunction) if not n.startswith("_")}
    assert {"a" + n for n in sync} == asyn
    for name in sync:
        s = inspect.signature(getattr(Backend, name))
        a = inspect.signature(getattr(AsyncBackend, "a" + name))
        assert list(s.parameters) == list(a.parameters)
