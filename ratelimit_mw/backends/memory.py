"""In-process state: one dict per (scope, rule), guarded by one lock, bounded in size.

Safe from threads (WSGI servers) and from asyncio tasks (the critical section never
awaits). Each table maps a client key (the Limiter passes Python's per-process keyed
``hash()`` of it, a small int) to the algorithm state *only*: the time
a state becomes indistinguishable from fresh is derived from the state itself
(:data:`~ratelimit_mw.core.algorithms.EXPIRY_FUNCTIONS`), and the algorithms treat
a stale state exactly like a missing one, so reads never need an expiry check.
A GCRA client therefore costs one dict slot, its hash string (shared by all the
client's rules) and one float.

Expired states are dropped by a periodic sweep and before any eviction. A hard cap
(``max_keys``) bounds memory against floods of distinct client keys: past it, the
oldest entries are evicted (counted in ``evictions``), which at worst forgets a
client's usage; it never admits anyone the cap did not concern.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from math import floor as _floor
from typing import TYPE_CHECKING, Any

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.core.algorithms import ALGORITHM_FUNCTIONS, EXPIRY_FUNCTIONS, StepTuple, gcra, token_bucket
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.evaluate import combine, inspect
from ratelimit_mw.core.rates import EPS, Rule
from ratelimit_mw.errors import ConfigError

if TYPE_CHECKING:
    from ratelimit_mw.limiter import Quota

__all__ = ["MemoryBackend"]

_new = tuple.__new__


class _Table:
    """States of one (scope, rule): ``client hash -> state``."""

    __slots__ = ("rule", "capacity", "step", "expiry", "states", "denied")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.capacity = rule.capacity
        self.step: Callable[[Any, float, Rule, int], StepTuple] = ALGORITHM_FUNCTIONS[rule.algorithm]
        self.expiry = EXPIRY_FUNCTIONS[rule.algorithm]
        self.states: dict[Hashable, Any] = {}
        self.denied = (rule.name,)


class MemoryBackend(Backend, AsyncBackend):
    """Thread- and asyncio-safe in-memory backend.

    Args:
        max_keys: most stored states over all tables; default 100,000.
        sweep_interval: seconds (of the caller's clock) between sweeps of expired states.
    """

    has_clock = False

    def __init__(self, *, max_keys: int = 100_000, sweep_interval: float = 60.0) -> None:
        if max_keys < 1:
            raise ConfigError(f"max_keys must be >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self.sweep_interval = sweep_interval
        self.evictions = 0
        self._tables: dict[str, _Table] = {}
        self._quota_tables: dict[int, tuple[Quota, tuple[_Table, ...]]] = {}  # see hit_client
        self._size = 0
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return self._size

    @property
    def tracked_keys(self) -> int:
        """Number of stored states (for the ``tracked keys`` gauge)."""
        return self._size

    # -- internals ---------------------------------------------------------------

    def _table(self, table_id: str, rule: Rule) -> _Table:
        table = self._tables.get(table_id)
        if table is None:
            table = self._tables[table_id] = _Table(rule)
        return table

    def _insert(self, table: _Table, client: Hashable, state: Any, now: float) -> None:
        states = table.states
        if client not in states:
            if self._size >= self.max_keys:
                self._make_room(now)
            self._size += 1
        states[client] = state

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

    def _run(self, tables: Sequence[_Table], client_keys: Sequence[Hashable], cost: int, now: float) -> Decision:
        """The atomic section: evaluate every rule, store all states or none."""
        if now >= self._next_sweep:
            self._sweep(now)
        if len(tables) == 1:
            table = tables[0]
            client = client_keys[0]
            rule = table.rule
            s = table.step(table.states.get(client), now, rule, cost)
            if s[0]:
                if cost:
                    self._insert(table, client, s[1], now)
                return _new(Decision, (True, rule.capacity, s[2], s[3], s[4], rule, s[6], (), False))
            return _new(Decision, (False, rule.capacity, s[2], s[3], s[4], rule, 0.0, table.denied, False))
        steps = [t.step(t.states.get(c), now, t.rule, cost) for t, c in zip(tables, client_keys)]
        decision = combine([t.rule for t in tables], steps)
        if decision.allowed and cost:
            for table, client, s in zip(tables, client_keys, steps):
                self._insert(table, client, s[1], now)
        return decision

    # -- fast path used by the Limiter: tables per (scope, rule), keyed by client hash ------

    def hit_client(self, client: Hashable, quota: Quota, cost: int, now: float) -> Decision:
        """:meth:`hit` for a hashed client and a prepared quota, without building keys.

        The quota's tables are remembered per Quota object (routes keep theirs), so a
        route with several limits (say a burst and a daily cap) costs one lookup for
        all of them: two rules went from 5.7-7.2 us to 3.4 us per check (timeit).
        """
        with self._lock:
            entry = self._quota_tables.get(id(quota))
            if entry is None or entry[0] is not quota:
                entry = self._remember_tables(quota)
            tables = entry[1]
            if len(tables) == 1:
                return self._run(tables, (client,), cost, now)
            if now >= self._next_sweep:
                self._sweep(now)
            steps = []  # a loop, not a comprehension: in 3.11 that is one more frame
            for t in tables:
                steps.append(t.step(t.states.get(client), now, t.rule, cost))
            decision = combine(quota.rules, steps)
            if decision[0] and cost:  # allowed: every rule's new state, or none
                for table, step in zip(tables, steps):
                    states = table.states
                    if client not in states:
                        if self._size >= self.max_keys:
                            self._make_room(now)
                        self._size += 1
                    states[client] = step[1]
            return decision

    def _remember_tables(self, quota: Quota) -> tuple[Quota, tuple[_Table, ...]]:
        if len(self._quota_tables) >= 1024:  # quotas are per route: past this, start over
            self._quota_tables.clear()
        entry = (quota, tuple(self._table(slot, rule) for slot, rule in zip(quota.slots, quota.rules)))
        self._quota_tables[id(quota)] = entry  # the entry keeps the quota alive: its id stays its own
        return entry

    def client_check(
        self, to_quota: Callable[[Any, str], Quota], clock: Callable[[], float]
    ) -> Callable[..., Decision]:
        """``Limiter.check`` on this backend as one function (the Limiter binds it once).

        ``check(key, limits, *, cost=1, scope="", on_error=None)``: the key is hashed
        with Python's keyed ``hash()``, ``limits`` turned into a Quota by ``to_quota``
        unless it is one, and the time read from ``clock``. A single-rule quota (most
        routes) runs the critical section written out here, in this one frame: it is
        the in-process hot path, where each Python call costs a noticeable share. For
        gcra and the token bucket the frame holds the algorithm too (the call and its
        step tuple were ~10% of a check); the other algorithms are called.
        Several rules go through :meth:`hit_client`. ``on_error`` is accepted and
        ignored: memory cannot fail.
        """
        from ratelimit_mw.limiter import Quota

        lock = self._lock
        acquire, release = lock.acquire, lock.release  # not ``with``: __enter__/__exit__ cost more
        tables = self._tables
        hit_client = self.hit_client

        def check(key: str, limits: Any, *, cost: int = 1, scope: str = "", on_error: str | None = None) -> Decision:
            quota = limits if type(limits) is Quota else to_quota(limits, scope)
            table_id = quota.single
            if table_id is None:
                return hit_client(hash(key), quota, cost, clock())
            client = hash(key)
            now = clock()
            acquire()
            try:
                if now >= self._next_sweep:
                    self._sweep(now)
                table = tables.get(table_id) or self._table(table_id, quota.rules[0])
                states = table.states
                state = states.get(client)  # a stored state is never None: one lookup tells a new client
                rule = table.rule
                step = table.step
                if step is gcra:
                    # core.algorithms.gcra written out, line for line (no call, no step tuple);
                    # tests/core/test_memory_fast_path.py holds the two bit-identical
                    interval = rule.interval
                    tolerance = rule.tolerance
                    tat = state if state is not None and state > now else now
                    new_state = tat + cost * interval
                    ahead = new_state - now
                    if ahead > tolerance + EPS:
                        used = tat - now
                        remaining = _floor((tolerance - used + EPS) / interval)
                        return _new(Decision, (False, table.capacity, max(remaining, 0), used, ahead - tolerance,
                                               rule, 0.0, table.denied, False))
                    remaining = _floor((tolerance - ahead + EPS) / interval)
                    reset_after = ahead
                    retry_after = delay = 0.0
                elif step is token_bucket:
                    # core.algorithms.token_bucket written out, likewise
                    interval = rule.interval
                    capacity = rule.capacity_float
                    slack = rule.slack
                    if state is None:
                        tokens = capacity
                    else:
                        tokens = (now - state) / interval
                        if tokens > capacity:
                            tokens = capacity
                    if tokens + slack < cost:
                        missing = (capacity - tokens) * interval
                        return _new(Decision, (False, table.capacity, max(_floor(tokens + slack), 0), missing,
                                               (cost - tokens) * interval, rule, 0.0, table.denied, False))
                    tokens -= cost
                    reset_after = (capacity - tokens) * interval
                    new_state = now - tokens * interval
                    remaining = _floor(tokens + slack)
                    retry_after = delay = 0.0
                else:
                    allowed, new_state, remaining, reset_after, retry_after, _, delay = step(state, now, rule, cost)
                    if not allowed:
                        return _new(Decision, (False, table.capacity, remaining, reset_after, retry_after, rule,
                                               0.0, table.denied, False))
                if cost:
                    if state is None:
                        if self._size >= self.max_keys:
                            self._make_room(now)
                        self._size += 1
                    states[client] = new_state
                return _new(Decision, (True, table.capacity, remaining, reset_after, retry_after, rule, delay, (),
                                       False))
            finally:
                release()

        return check

    def lane(
        self,
        quota: Quota,
        cost: int,
        key_of: Callable[[Any], str | None],
        clock: Callable[[], float],
        renders: Sequence[Callable[[int, float], Any]],
    ) -> Callable[[Any], Any] | None:
        """A route's allowed path as one function: ``lane(source) -> headers`` or ``None``.

        ``key_of(source)`` gives the client key (``None``: not for this lane), which is
        hashed and checked against the quota's rules as :meth:`client_check` and
        :meth:`hit_client` do, at ``clock()``. An allowed request is stored, and the rule
        ``combine`` would report (the fewest remaining; ties: the later reset) renders
        the answer: ``renders[i](remaining, reset_after)``, one renderer per rule.
        Anything else returns ``None`` *before storing anything*: no key, a denial, a
        sweep due, the key cap reached, a table not created yet, a shaping delay. The
        caller then takes the general path, which decides afresh. So a lane changes what
        runs, never what is decided.

        Why: inside a server, between two requests, the server and the kernel evict our
        code and data from the CPU's caches, and every Python frame a request crosses
        costs several times its hot-loop price (``Engine.admit``: 2.2 us in a loop, 6.0
        us inside uvicorn). A lane crosses four frames (this, the key, the algorithm,
        the renderer) instead of a dozen; for gcra (the default algorithm) three, as
        the algorithm is written out here as in :meth:`client_check` (with the caches
        cold, ``benchmarks.profile cold-parts``, its frame cost ~1.1 us;
        tests/core/test_memory_fast_path.py holds the two bit-identical). No lane
        (``None``) for a leaky bucket (it shapes: the caller must wait) or ``cost < 1``.
        """
        if cost < 1 or any(rule.algorithm == "leaky_bucket" for rule in quota.rules):
            return None
        table_id = quota.single
        if table_id is None:
            return self._lane_of_several(quota, cost, key_of, clock, renders)
        render = renders[0]
        tables = self._tables
        acquire, release = self._lock.acquire, self._lock.release

        def lane(source: Any) -> Any:
            key = key_of(source)
            if key is None:
                return None
            client = hash(key)
            now = clock()
            acquire()
            try:
                if now >= self._next_sweep:
                    return None
                table = tables.get(table_id)
                if table is None:
                    return None
                states = table.states
                state = states.get(client)
                if table.step is gcra:  # core.algorithms.gcra written out (see the docstring)
                    rule = table.rule
                    interval = rule.interval
                    tat = state if state is not None and state > now else now
                    new_state = tat + cost * interval
                    reset_after = new_state - now
                    if reset_after > rule.tolerance + EPS:
                        return None
                    remaining = _floor((rule.tolerance - reset_after + EPS) / interval)
                else:
                    allowed, new_state, remaining, reset_after, _, _, delay = table.step(state, now, table.rule, cost)
                    if not allowed or delay:
                        return None
                if state is None:
                    if self._size >= self.max_keys:
                        return None
                    self._size += 1
                states[client] = new_state
            finally:
                release()
            return render(remaining, reset_after)

        return lane

    def _lane_of_several(
        self,
        quota: Quota,
        cost: int,
        key_of: Callable[[Any], str | None],
        clock: Callable[[], float],
        renders: Sequence[Callable[[int, float], Any]],
    ) -> Callable[[Any], Any]:
        """:meth:`lane` for a quota of several rules (a burst and a daily cap, say)."""
        quota_tables = self._quota_tables
        acquire, release = self._lock.acquire, self._lock.release

        def lane(source: Any) -> Any:
            key = key_of(source)
            if key is None:
                return None
            client = hash(key)
            now = clock()
            acquire()
            try:
                entry = quota_tables.get(id(quota))
                if now >= self._next_sweep or entry is None or entry[0] is not quota:
                    return None
                tables = entry[1]
                steps: list[StepTuple] = []
                fresh = 0
                best = 0
                for i, table in enumerate(tables):
                    state = table.states.get(client)
                    step = table.step(state, now, table.rule, cost)
                    if not step[0] or step[6]:
                        return None
                    if state is None:
                        fresh += 1
                    if i and (step[2] < steps[best][2] or (step[2] == steps[best][2] and step[3] > steps[best][3])):
                        best = i
                    steps.append(step)
                if self._size + fresh > self.max_keys:  # an insertion would have to make room first
                    return None
                self._size += fresh
                for table, step in zip(tables, steps):
                    table.states[client] = step[1]
            finally:
                release()
            reported = steps[best]
            return renders[best](reported[2], reported[3])

        return lane

    def peek_client(self, client: Hashable, quota: Quota, now: float) -> Decision:
        """:meth:`peek` for a hashed client and a prepared quota."""
        with self._lock:
            tables = [self._table(slot, rule) for slot, rule in zip(quota.slots, quota.rules)]
            return inspect(quota.rules, [t.states.get(client) for t in tables], now)

    def reset_client(self, client: Hashable, quota: Quota) -> None:
        """:meth:`reset` for a hashed client and a prepared quota."""
        with self._lock:
            for slot in quota.slots:
                table = self._tables.get(slot)
                if table is not None and table.states.pop(client, None) is not None:
                    self._size -= 1

    # -- Backend: arbitrary keys, one table per rule's maths ----------------------------

    def _generic(self, keys: Sequence[str], rules: Sequence[Rule]) -> list[_Table]:
        return [self._table("\0" + rule.signature, rule) for rule in rules]

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            return self._run(self._generic(keys, rules), keys, cost, now)

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        if now is None:
            raise ConfigError("the memory backend needs the caller's time (now=None given)")
        with self._lock:
            tables = self._generic(keys, rules)
            return inspect(rules, [t.states.get(k) for t, k in zip(tables, keys)], now)

    def reset(self, keys: Sequence[str]) -> None:
        with self._lock:
            for table in self._tables.values():
                for key in keys:
                    if table.states.pop(key, None) is not None:
                        self._size -= 1

    def clear(self) -> None:
        """Forget everything (tests, admin 'reset all')."""
        with self._lock:
            self._tables.clear()
            self._quota_tables.clear()
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
