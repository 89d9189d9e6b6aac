"""In-process state: one dict per (scope, rule), guarded by one lock, bounded in size.

Safe from threads and from asyncio tasks (the critical section never awaits). A table
maps a client (Python's per-process keyed ``hash()`` of the raw key) to the algorithm
state only: a stale state reads exactly like a missing one, so reads need no expiry
check. Expired states go in a periodic sweep; past ``max_keys`` the oldest are evicted,
which at worst forgets a client's usage and never admits anyone. The algorithms are
called (or compiled inline), never copied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory_inline import factory as inline_factory
from ratelimit_mw.core.algorithms import ALGORITHM_FUNCTIONS, EXPIRY_FUNCTIONS, StepTuple
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.evaluate import combine, inspect
from ratelimit_mw.core.lease import LeaseStats, LocalLease, leased
from ratelimit_mw.core.quota import Quota
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import ConfigError

__all__ = ["MemoryBackend"]

#: A bound check: ``(raw client key, cost) -> Decision``.
Check = Callable[[str, int], Decision]


class _Table:
    """States of one (scope, rule): ``client hash -> state``."""

    __slots__ = ("rule", "step", "expiry", "states")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.step: Callable[[Any, float, Rule, int], StepTuple] = ALGORITHM_FUNCTIONS[rule.algorithm]
        self.expiry = EXPIRY_FUNCTIONS[rule.algorithm]
        self.states: dict[Hashable, Any] = {}


class MemoryBackend(Backend, AsyncBackend):
    """Thread- and asyncio-safe in-memory backend.

    Args:
        max_keys: most stored states over all tables; default 100,000.
        sweep_interval: seconds (of the caller's clock) between sweeps of expired states.
        inline: compile single-rule checks with the algorithm inline (see
            :mod:`~ratelimit_mw.backends.memory_inline`); ``False`` calls it. Same answers.
    """

    has_clock = False

    def __init__(self, *, max_keys: int = 100_000, sweep_interval: float = 60.0, inline: bool = True) -> None:
        if max_keys < 1:
            raise ConfigError(f"max_keys must be >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self.sweep_interval = sweep_interval
        self.inline = inline
        self.evictions = 0
        self._tables: dict[str, _Table] = {}
        self._size = 0
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return self._size

    @property
    def tracked_keys(self) -> int:
        """Number of stored states (for the ``tracked keys`` gauge)."""
        return self._size

    # -- the critical section ------------------------------------------------------

    def _table(self, table_id: str, rule: Rule) -> _Table:
        table = self._tables.get(table_id)
        if table is None:
            table = self._tables[table_id] = _Table(rule)
        return table

    def _sweep(self, now: float) -> None:
        for table in self._tables.values():
            expiry, rule, states = table.expiry, table.rule, table.states
            dead = [k for k, st in states.items() if expiry(st, rule) <= now]
            for k in dead:
                del states[k]
            self._size -= len(dead)
        self._next_sweep = now + self.sweep_interval

    def _make_room(self, now: float) -> None:
        self._sweep(now)
        excess = self._size - self.max_keys + 1
        if excess <= 0:
            return
        # evict a slice at once, from the largest tables' oldest entries, so a flood
        # of new keys pays the iteration cost rarely
        excess = max(excess, self.max_keys // 100)
        for table in sorted(self._tables.values(), key=lambda t: -len(t.states)):
            states = table.states
            victims = []
            for k in states:
                victims.append(k)
                if len(victims) >= excess:
                    break
            for k in victims:
                del states[k]
            self._size -= len(victims)
            self.evictions += len(victims)
            excess -= len(victims)
            if excess <= 0:
                return

    def _store(self, states: dict[Hashable, Any], client: Hashable, state: Any, now: float) -> None:
        if client not in states:
            if self._size >= self.max_keys:
                self._make_room(now)
            self._size += 1
        states[client] = state

    def _apply(self, tables: Sequence[_Table], clients: Sequence[Hashable], cost: int, now: float,
               rules: Sequence[Rule] | None = None) -> Decision:
        """Every rule's step, then all new states stored or none (call with the lock held).
        ``rules``: the quota's rules when they are not the tables' own (scaled variants)."""
        if now >= self._next_sweep:
            self._sweep(now)
        if rules is None:
            rules = [t.rule for t in tables]
        steps = []  # a loop, not a comprehension: in 3.11 that is one more frame
        for table, client, rule in zip(tables, clients, rules):
            steps.append(table.step(table.states.get(client), now, rule, cost))
        decision = combine(rules, steps)
        if decision[0] and cost:
            for table, client, step in zip(tables, clients, steps):
                self._store(table.states, client, step[1], now)
        return decision

    # -- bound checks: what the Limiter runs -----------------------------------------

    def bind(self, quota: Quota, clock: Callable[[], float]) -> Check:
        """The check of ``quota`` at ``clock()``: ``check(key, cost) -> Decision``.

        The quota's tables, rules and step functions are resolved here, once; a check
        hashes the key with Python's keyed ``hash()`` and runs the algorithms under the
        lock. A single-rule quota (most routes) gets its algorithm compiled inline where
        :mod:`~ratelimit_mw.backends.memory_inline` can; the answers are the same.
        """
        tables = tuple(self._table(slot, rule) for slot, rule in zip(quota.slots, quota.rules))
        acquire, release = self._lock.acquire, self._lock.release  # not ``with``: fewer calls
        if len(tables) == 1 and self.inline:
            table = tables[0]
            compiled = inline_factory(table.step)
            if compiled is not None:
                rule = quota.rules[0]  # the quota's own: a scaled variant shares the table of its slot
                return compiled(self, table.states, rule, rule.capacity, (rule.name,), clock, acquire, release)
        apply, clients, rules = self._apply, len(tables), quota.rules

        def check(key: str, cost: int = 1) -> Decision:
            client = hash(key)
            now = clock()
            acquire()
            try:
                return apply(tables, (client,) * clients, cost, now, rules)
            finally:
                release()

        return check

    def bind_leased(self, quota: Quota, clock: Callable[[], float], stats: LeaseStats | None = None) -> Check:
        """The check of a quota holding an in-flight limit: as :meth:`bind`, and an
        admitted request's decision is a :class:`~ratelimit_mw.core.lease.LeasedDecision`
        whose ``lease.release()`` takes its count off again, under the same lock.

        Leases here never expire: a process that dies takes its counters with it.
        """
        tables = tuple(self._table(slot, rule) for slot, rule in zip(quota.slots, quota.rules))
        counters = tuple(t for t in tables if t.rule.in_flight)
        lock = self._lock

        def give_back(client: Hashable, cost: int) -> None:
            with lock:
                for table in counters:
                    count = table.states.get(client)
                    if count is None:  # evicted (max_keys) or reset meanwhile
                        if stats is not None:
                            stats.lost += 1
                        continue
                    if count > cost:
                        table.states[client] = count - cost
                    else:
                        del table.states[client]
                        self._size -= 1

        inner = self.bind(quota, clock)

        def check(key: str, cost: int = 1) -> Decision:
            decision = inner(key, cost)
            if decision[0] and cost:
                return leased(decision, LocalLease(partial(give_back, hash(key), cost)))
            return decision

        return check

    def peek_key(self, key: str, quota: Quota, now: float) -> Decision:
        """Usage of raw client ``key`` under ``quota`` without consuming (see ``Limiter.peek``)."""
        client = hash(key)
        with self._lock:
            tables = [self._table(slot, rule) for slot, rule in zip(quota.slots, quota.rules)]
            return inspect(quota.rules, [t.states.get(client) for t in tables], now)

    def reset_key(self, key: str, quota: Quota) -> None:
        """Make raw client ``key``'s quota whole again."""
        client = hash(key)
        with self._lock:
            for slot in quota.slots:
                table = self._tables.get(slot)
                if table is not None and table.states.pop(client, None) is not None:
                    self._size -= 1

    # -- Backend: arbitrary keys, one table per rule's maths ----------------------------

    def _generic(self, rules: Sequence[Rule]) -> list[_Table]:
        return [self._table("\0" + rule.signature, rule) for rule in rules]

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            return self._apply(self._generic(rules), keys, cost, now)

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            tables = self._generic(rules)
            return inspect(rules, [t.states.get(k) for t, k in zip(tables, keys)], now)

    def reset(self, keys: Sequence[str]) -> None:
        with self._lock:
            for table in self._tables.values():
                for key in keys:
                    if table.states.pop(key, None) is not None:
                        self._size -= 1

    def clear(self) -> None:
        """Forget every state (tests, admin 'reset all'); bound checks stay valid."""
        with self._lock:
            for table in self._tables.values():
                table.states.clear()
            self._size = 0

    # -- AsyncBackend: the critical section never awaits, so the sync code is safe ----

    async def ahit(
        self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None
    ) -> Decision:
        return self.hit(keys, rules, cost, now)

    async def apeek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        return self.peek(keys, rules, now)

    async def areset(self, keys: Sequence[str]) -> None:
        self.reset(keys)
