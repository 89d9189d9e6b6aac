"""Shared pieces for the observability tests: a backend that fails on demand."""

from __future__ import annotations

from collections.abc import Sequence

from ratelimit_mw.backends.base import Backend
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule

POLICIES = {
    "version": 1,
    "defaults": {"key": ["header:X-API-Key", "ip"]},
    "policies": {"free": {"limits": ["5/minute"]}},
    "routes": [
        {"match": "GET /resource", "policy": "free"},
        {"match": "/users/{id}", "limits": ["100/second"]},
        {"match": "/shadow", "limits": ["1/minute"], "shadow": True},
        {"match": "/health", "exempt": True},
    ],
}


class FlakyBackend(Backend):
    """A remote-looking backend (not a MemoryBackend) that raises while ``failing``.

    The limiter treats it like Redis: it times the calls, counts the errors and runs
    the circuit breaker, which is what the metrics and log tests need to observe.
    """

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.failing = False

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        if self.failing:
            raise ConnectionError("backend down")
        return self.inner.hit(keys, rules, cost, now)

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        if self.failing:
            raise ConnectionError("backend down")
        return self.inner.peek(keys, rules, now)

    def reset(self, keys: Sequence[str]) -> None:
        self.inner.reset(keys)
