"""In-process state: a dict guarded by one lock, bounded in size.

Safe from threads (WSGI servers) and from asyncio tasks (the critical section never
awaits). Each entry stores the algorithm state and the time at which it becomes
indistinguishable from fresh; expired entries are dropped lazily on read, by a
periodic sweep, and before any eviction. A hard cap (``max_keys``) bounds memory
against floods of distinct client keys: past it, the least recently written
entries are evicted (counted in ``evictions``), which at worst forgets a client's
usage, never admits a client that the cap did not concern.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.core.algorithms import ALGORITHM_FUNCTIONS
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.evaluate import combine, evaluate, inspect
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import ConfigError

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend, AsyncBackend):
    """Thread- and asyncio-safe in-memory backend.

    Args:
        max_keys: most (key, rule) entries kept; default 100,000.
        sweep_interval: seconds (of the caller's clock) between sweeps of expired entries.
    """

    has_clock = False

    def __init__(self, *, max_keys: int = 100_000, sweep_interval: float = 60.0) -> None:
        if max_keys < 1:
            raise ConfigError(f"max_keys must be >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self.sweep_interval = sweep_interval
        self.evictions = 0
        self._data: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def tracked_keys(self) -> int:
        """Number of live entries (for the ``tracked keys`` gauge)."""
        return len(self._data)

    # -- internals ---------------------------------------------------------------

    def _load(self, key: str, now: float) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._data[key]
            return None
        return entry[0]

    def _store(self, key: str, state: Any, expires: float, now: float) -> None:
        data = self._data
        if data.pop(key, None) is None and len(data) >= self.max_keys:
            self._make_room(now)
        data[key] = (state, expires)  # re-insert: dict order doubles as recency

    def _sweep(self, now: float) -> None:
        data = self._data
        dead = [k for k, (_, exp) in data.items() if exp <= now]
        for k in dead:
            del data[k]
        self._next_sweep = now + self.sweep_interval

    def _make_room(self, now: float) -> None:
        self._sweep(now)
        data = self._data
        excess = len(data) - self.max_keys + 1
        if excess > 0:
            # evict a slice at once so a flood pays the iteration cost rarely
            excess = max(excess, self.max_keys // 100)
            victims = []
            for k in data:
                victims.append(k)
                if len(victims) >= excess:
                    break
            for k in victims:
                del data[k]
            self.evictions += len(victims)

    # -- Backend -----------------------------------------------------------------

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            if len(rules) == 1:
                key = keys[0]
                rule = rules[0]
                step = ALGORITHM_FUNCTIONS[rule.algorithm](self._load(key, now), now, rule, cost)
                if step.allowed and cost:
                    self._store(key, step.state, now + step.ttl, now)
                return combine(rules, (step,))
            steps, decision = evaluate(rules, [self._load(k, now) for k in keys], now, cost)
            if decision.allowed and cost:
                for key, step in zip(keys, steps):
                    self._store(key, step.state, now + step.ttl, now)
            return decision

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            return inspect(rules, [self._load(k, now) for k in keys], now)

    def reset(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything (tests, admin 'reset all')."""
        with self._lock:
            self._data.clear()

    # -- AsyncBackend: the critical section never awaits, so the sync code is safe ----

    async def ahit(
        self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None
    ) -> Decision:
        return self.hit(keys, rules, cost, now)

    async def apeek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        return self.peek(keys, rules, now)

    async def areset(self, keys: Sequence[str]) -> None:
        self.reset(keys)
