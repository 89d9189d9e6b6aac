"""In-flight limits (``N concurrent``) on a remote backend: leases, renewed and released
off the request path.

On Redis each admitted request holds a lease per in-flight limit: a member (this
process's token) of the key's sorted set, scored by when it expires in the script's
time, written by the route's one check script. A worker that dies holding slots gives
them back when the leases run out (the script drops expired leases). A live worker's
:class:`LeaseKeeper` renews every lease it holds in ONE pipeline per tick (a third of
the shortest lease), and sends the releases of ended requests in batches the same way;
it runs on a daemon thread that ends by itself when nothing is held. A failed renewal
or release is logged and counted, never raised: the lease then expires on its own.

The memory backend needs none of this: its counter is taken and given back under
its lock (:meth:`~ratelimit_mw.backends.memory.MemoryBackend.bind_leased`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.lease import LeaseStats, leased, members, new_token
from ratelimit_mw.core.quota import Quota

__all__ = ["LeaseKeeper", "RedisLease", "remote_checks"]

#: Renewals per lease: a lease is renewed when a third of it has passed, so two ticks
#: may fail (or run late) before it runs out.
RENEWALS_PER_LEASE = 3
#: Longest wait for one pipeline of an async-only backend run on its event loop.
LOOP_TIMEOUT = 10.0


class _Held:
    """One admitted request's leases: its in-flight keys, members, lease length, and
    (local monotonic time) when they run out unless renewed."""

    __slots__ = ("deadline", "keys", "lease", "members")

    def __init__(self, keys: tuple[str, ...], held: tuple[str, ...], lease: float, deadline: float) -> None:
        self.keys = keys
        self.members = held
        self.lease = lease
        self.deadline = deadline


class RedisLease:
    """An admitted request's leases: :meth:`release` hands them to the keeper once."""

    __slots__ = ("held", "ident", "keeper")

    def __init__(self, keeper: LeaseKeeper, ident: int) -> None:
        self.keeper = keeper
        self.ident = ident
        self.held = True

    def release(self, dropped: bool = False, sample: bool = True) -> None:
        if self.held:
            self.held = False
            self.keeper.release(self.ident)


class LeaseKeeper:
    """Renews and releases one limiter's leases from a daemon thread, batched.

    Args:
        backend: a Redis backend (``leases``/``aleases``).
        now: the time to score renewals with, or ``None`` for the server's ``TIME``.
        stats: where expiries and losses are counted.
        clock: local monotonic time, for the renewal schedule.
    """

    def __init__(self, backend: Any, now: Callable[[], float | None], stats: LeaseStats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.now = now
        self.stats = stats
        self.clock = clock
        self._held: dict[int, _Held] = {}
        self._releases: list[tuple[str, tuple[str, ...]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # held while a batch is sent (by the thread or flush)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def held(self) -> int:
        """Requests of this process holding leases now."""
        return len(self._held)

    @property
    def running(self) -> bool:
        """The renewal thread is alive (it ends by itself when nothing is held)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def hold(self, keys: tuple[str, ...], token: str, cost: int, lease: float) -> RedisLease:
        """Keep the leases of one admitted request alive until :meth:`release`."""
        if not self.backend.supports_sync and self._loop is None:
            with contextlib.suppress(RuntimeError):  # where an async-only client's pipelines run
                self._loop = asyncio.get_running_loop()
        ident = next(self._ids)
        with self._lock:
            self._held[ident] = _Held(keys, members(token, cost), lease, self.clock() + lease)
            self._start()
        return RedisLease(self, ident)

    def release(self, ident: int) -> None:
        """Queue one request's leases for release (sent by the thread, batched)."""
        with self._lock:
            entry = self._held.pop(ident, None)
            if entry is None:  # a renewal found it gone already (and counted it)
                return
            self._releases.extend((key, entry.members) for key in entry.keys)
            self._start()
        self._wake.set()

    def flush(self) -> None:
        """Send the queued releases now, from the calling thread, after any batch the
        thread has under way (shutdown; a caller that needs its releases seen before
        its next check)."""
        with self._sending:
            with self._lock:
                releases, self._releases = self._releases, []
            if releases:
                self._send(releases, [])

    def close(self) -> None:
        """Shutting down: release every lease still held (its requests will not end
        here any more) and stop renewing; the thread ends by itself."""
        self._drop_all()
        self.flush()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self._drop_all()
        await self.aflush()

    def _drop_all(self) -> None:
        with self._lock:
            for held in self._held.values():
                self._releases.extend((key, held.members) for key in held.keys)
            self._held.clear()
        self._wake.set()

    async def aflush(self) -> None:
        """Async :meth:`flush` (an async-only backend's pipeline runs on this loop; a
        batch the thread has under way is not waited for, as that would block the loop)."""
        if self.backend.supports_sync:
            self.flush()
            return
        with self._lock:
            releases, self._releases = self._releases, []
        if releases:
            try:
                replies = await self.backend.aleases(releases, [], self.now())
            except Exception as exc:
                log.logger.warning(log.LEASE_ERROR, error=type(exc).__name__, detail=str(exc)[:200],
                                   releases=len(releases), renewals=0)
                return
            self._count_releases(releases, replies)

    def _start(self) -> None:
        """Start the thread if it is not running (called with the lock held)."""
        pid = os.getpid()
        if pid != self._pid:  # a forked child: the parent's thread is not here
            self._pid, self._thread = pid, None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ratelimit-mw-leases", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_renewal = self.clock() + self._period()
        while True:
            with self._sending:  # a flush() waits for this tick's batch to land
                with self._lock:
                    if not self._held and not self._releases:
                        self._thread = None
                        return
                    releases, self._releases = self._releases, []
                    due = self.clock() >= next_renewal
                    renewals = list(self._held.items()) if due else []
                if releases or renewals:
                    self._send(releases, renewals)
            if due:
                next_renewal = self.clock() + self._period()
            self._wake.wait(max(next_renewal - self.clock(), 0.0))
            self._wake.clear()

    def _period(self) -> float:
        with self._lock:
            shortest = min((h.lease for h in self._held.values()), default=1.0)
        return shortest / RENEWALS_PER_LEASE

    def _execute(self, releases: list[tuple[str, tuple[str, ...]]],
                 renewals: list[tuple[str, float, tuple[str, ...]]]) -> list[Any]:
        now = self.now()
        if self.backend.supports_sync:
            return self.backend.leases(releases, renewals, now)  # type: ignore[no-any-return]
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError("no event loop to run the async-only backend's lease commands on")
        coro: Awaitable[list[Any]] = self.backend.aleases(releases, renewals, now)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(LOOP_TIMEOUT)  # type: ignore[arg-type]

    def _send(self, releases: list[tuple[str, tuple[str, ...]]], renewals: list[tuple[int, _Held]]) -> None:
        """One pipeline for every release and renewal of this tick; a failure is logged,
        never raised (the leases run out by themselves)."""
        commands = [(key, held.lease, held.members) for _, held in renewals for key in held.keys]
        try:
            replies = self._execute(releases, commands)
        except Exception as exc:
            log.logger.warning(log.LEASE_ERROR, error=type(exc).__name__, detail=str(exc)[:200],
                               releases=len(releases), renewals=len(renewals))
            return
        self._count_releases(releases, replies)
        stats = self.stats
        now = self.clock()
        replies = replies[len(releases):]
        j = 0
        for ident, held in renewals:
            kept = True
            for _ in held.keys:
                kept = kept and all(int(flag) == 1 for flag in replies[j])
                j += 1
            if kept:
                held.deadline = now + held.lease
                continue
            with self._lock:
                gone = self._held.pop(ident, None) is not None
            if gone:  # released meanwhile: the release counts it, if it finds nothing
                stats.lost += 1
                if now >= held.deadline:
                    stats.expired += 1


    def _count_releases(self, releases: list[tuple[str, tuple[str, ...]]], replies: list[Any]) -> None:
        for (_, released), removed in zip(releases, replies):
            if int(removed) < len(released):  # expired, and dropped by a check or a renewal
                self.stats.lost += 1


def remote_checks(
    quota: Quota,
    backend: Any,
    storage_keys: Callable[[str, Quota], list[str]],
    clock: Callable[[], float],
    pass_time: bool,
    breaker: Any,
    keeper: LeaseKeeper,
    degraded: Callable[[str, int, BaseException | None], Decision],
    observe: Callable[[float], None] | None = None,
) -> tuple[Callable[[str, int], Decision], Callable[[str, int], Awaitable[Decision]]]:
    """The sync and async checks of a quota holding an in-flight limit on a remote backend.

    As the limiter's other remote checks (breaker, failure policy), minus the
    over-limit cache: a slot can free at any moment, so a denial is not remembered.
    """
    rules = quota.rules
    slots = tuple(i for i, rule in enumerate(rules) if rule.in_flight)
    lease = min(rules[i].period for i in slots)

    def admitted(keys: list[str], token: str, cost: int, decision: Decision) -> Decision:
        breaker.success()
        if decision[0] and cost:
            return leased(decision, keeper.hold(tuple(keys[i] for i in slots), token, cost, lease))
        return decision

    def check(key: str, cost: int = 1) -> Decision:
        if not breaker.allow():
            return degraded(key, cost, None)
        keys, token = storage_keys(key, quota), new_token()
        started = time.perf_counter()
        try:
            decision = backend.hit_leased(keys, rules, cost, clock() if pass_time else None, token)
        except Exception as exc:
            breaker.failure()
            return degraded(key, cost, exc)
        if observe is not None:
            observe(time.perf_counter() - started)
        return admitted(keys, token, cost, decision)

    async def acheck(key: str, cost: int = 1) -> Decision:
        if not breaker.allow():
            return degraded(key, cost, None)
        keys, token = storage_keys(key, quota), new_token()
        started = time.perf_counter()
        try:
            decision = await backend.ahit_leased(keys, rules, cost, clock() if pass_time else None, token)
        except Exception as exc:
            breaker.failure()
            return degraded(key, cost, exc)
        if observe is not None:
            observe(time.perf_counter() - started)
        return admitted(keys, token, cost, decision)

    return check, acheck

