"""The framework-agnostic limiter: keys, time, backend, failure policy.

``Limiter("memory://").check("user-42", "10/second")`` gives a Decision; ``acquire``
waits until allowed (outbound calls). When the backend fails, ``on_backend_error``
answers (``allow``, ``deny``, or a per-process ``memory`` limiter) and a circuit breaker
stops calling it, probing every ``breaker_recovery`` seconds (see ``docs/failures.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, NamedTuple, cast

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.backends.open import open_backend
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.hashing import KeyHasher
from ratelimit_mw.core.lease import LeaseStats
from ratelimit_mw.core.overlimit import OverLimitCache
from ratelimit_mw.core.quota import Quota, make_quota
from ratelimit_mw.core.rates import Rule, parse_rate, parse_rates, rule_from_mapping
from ratelimit_mw.errors import ConfigError, RateLimitExceeded
from ratelimit_mw.failure import FailurePolicy, failure_mode
from ratelimit_mw.observe import Observer

__all__ = ["BoundCheck", "Limiter", "Limits", "Quota", "open_backend"]

Limits = Quota | Rule | str | Sequence[Rule | str]


class BoundCheck(NamedTuple):
    """One quota's check bound to the limiter's backend, clock and failure policy.

    Both take ``(raw client key, cost)``; ``acheck`` returns an awaitable. Built once
    per quota (routes bind theirs when policies are set) and used by every caller:
    the middlewares' plans and :meth:`Limiter.check`/:meth:`Limiter.acheck` alike.
    """

    check: Callable[[str, int], Decision]
    acheck: Callable[[str, int], Awaitable[Decision]]
    quota: Quota


def _to_rule(item: Rule | str | Any) -> Rule:
    if isinstance(item, Rule):
        return item
    if isinstance(item, str):
        return parse_rate(item)
    if isinstance(item, dict):
        return rule_from_mapping(item)
    raise ConfigError(f"expected a rate string or Rule, got {item!r}")


def _in_process(check: Callable[[str, int], Decision], quota: Quota) -> BoundCheck:
    """A memory backend's check, and its async twin: the check never waits, so it is called."""

    async def acheck(key: str, cost: int = 1) -> Decision:
        return check(key, cost)

    return BoundCheck(check, acheck, quota)


class Limiter:
    """Checks keys against limits on a backend, with a failure policy.

    Args:
        backend: URL (``memory://`` default, ``redis://...``), client object or backend.
        clock: time source in seconds (``time.time`` by default); inject a
            :class:`~ratelimit_mw.testing.FakeClock` for exact tests. With Redis and no
            clock given, the server's ``TIME`` is used.
        prefix: storage key prefix (``REDIS_PREFIX`` env or ``"rl"``).
        key_secret: secret for hashing client keys (``RATELIMIT_KEY_SECRET`` env).
        on_backend_error: default failure mode: ``allow``, ``deny`` or ``memory``.
        breaker_threshold: consecutive backend failures that open the breaker.
        breaker_recovery: seconds before a half-open probe.
        over_limit_cache: most denied (key, rule) entries answered locally until their
            retry time, with no backend round trip (remote backends only; 0 disables).
        sleep: blocking sleep used by :meth:`acquire` and shaping (``time.sleep``).
        asleep: async sleep used by :meth:`aacquire` (``asyncio.sleep``).
        backend_options: passed to the backend factory (timeouts, pool size...).
    """

    def __init__(
        self,
        backend: Any = "memory://",
        *,
        clock: Callable[[], float] | None = None,
        prefix: str | None = None,
        key_secret: bytes | str | None = None,
        on_backend_error: str = "allow",
        breaker_threshold: int = 3,
        breaker_recovery: float = 2.0,
        over_limit_cache: int = 10_000,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Any] | None = None,
        **backend_options: Any,
    ) -> None:
        import os

        failure_mode(on_backend_error)  # a typo fails before any connection is made
        self.prefix = prefix if prefix is not None else os.environ.get("REDIS_PREFIX", "rl")
        self.backend = open_backend(backend, prefix=self.prefix, **backend_options)
        self._clock = clock or time.time
        # Memory needs our time; a remote backend uses its own unless a clock was injected.
        self._pass_time = clock is not None or not self.backend.has_clock
        self._local = isinstance(self.backend, MemoryBackend)
        self._hash = KeyHasher(key_secret)
        self._sleep = sleep or getattr(clock, "sleep", None) or time.sleep
        self._asleep = asleep or getattr(clock, "asleep", None) or asyncio.sleep
        self._occ = OverLimitCache(0 if self._local else over_limit_cache)
        #: bound checks by quota (and failure mode), so a repeated quota binds once, and
        #: by rate string (default mode, no scope), so :meth:`check` given one costs a lookup
        self._bound: dict[Any, BoundCheck] = {}
        #: Optional :class:`~ratelimit_mw.observe.Observer` (metrics); ``None``: no cost.
        self.observer: Observer | None = None
        #: Time for intervals (overload latency samples): the injected clock, else monotonic.
        self.interval_clock: Callable[[], float] = time.monotonic if clock is None else clock
        #: In-flight limits' lease expiries and losses (read by the metrics).
        self.lease_stats = LeaseStats()
        self.failure = FailurePolicy(on_backend_error, (breaker_threshold, breaker_recovery), self._clock,
                                     self.interval_clock, self.lease_stats, lambda: self.observer,
                                     type(self.backend).__name__)
        self.on_backend_error = on_backend_error
        self.breaker = self.failure.breaker
        self._degraded = self.failure.degraded
        self._keeper: Any = None  # the LeaseKeeper of a remote backend, made on first use

    @property
    def in_process(self) -> bool:
        """The backend is this process's memory: a check never waits on I/O."""
        return self._local

    @property
    def sleep(self) -> Callable[[float], None]:
        """The blocking sleep used for shaping delays and :meth:`acquire`."""
        return self._sleep

    @property
    def asleep(self) -> Callable[[float], Any]:
        """The async sleep used for shaping delays and :meth:`aacquire`."""
        return self._asleep

    # -- keys ------------------------------------------------------------------------

    def quota(self, limits: Limits, scope: str = "") -> Quota:
        """Bind ``limits`` to ``scope``; cached, so passing strings each call is cheap."""
        if isinstance(limits, Quota):
            return limits
        if isinstance(limits, Rule):
            return make_quota((limits,), scope)
        if isinstance(limits, str):  # "1/second;5/minute" is two limits
            return make_quota(parse_rates(limits), scope)
        return make_quota(tuple(r for x in limits for r in (parse_rates(x) if isinstance(x, str) else (_to_rule(x),))),
                          scope)

    def hash_key(self, key: str) -> str:
        """The keyed BLAKE2b hash under which ``key`` is stored in Redis and logged.

        The in-process memory backend keys its tables with Python's ``hash()`` instead:
        SipHash keyed with a random per-process secret, never stored or shown outside
        this process, and cheaper than BLAKE2b.
        """
        return self._hash(key)

    def storage_keys(self, key: str, quota: Quota) -> list[str]:
        """Backend keys for ``key``: ``<prefix>:{<tag>}<rest>:<slot>``, where ``tag`` and
        ``rest`` are the first 2 and the last 14 characters of the client's hash.

        The hash tag puts every key of a client in one Cluster slot. Time states
        (gcra, token and leaky bucket) live as field ``rest`` of the shared hash
        ``<prefix>:{<tag>}:<slot>`` (see ``backends/lua/state.lua``), so clients whose
        hashes share a tag (1 in 4,096) share that hash.
        """
        hashed = self._hash(key)
        head = f"{self.prefix}:{{{hashed[:2]}}}{hashed[2:]}:"
        return [head + slot for slot in quota.slots]

    # -- binding: one check per quota, used by every caller ---------------------------

    def bind(self, limits: Limits, scope: str = "", on_error: str | None = None) -> BoundCheck:
        """The :class:`BoundCheck` of ``limits`` in ``scope`` (cached per quota and mode).

        Args:
            limits: a rate string, Rule, list of them, or a prepared :class:`Quota`.
            scope: bucket namespace when ``limits`` is not a Quota.
            on_error: failure mode for these checks (default: the limiter's).
        """
        quota = self.quota(limits, scope)
        mode = failure_mode(on_error or self.on_backend_error)
        default = mode == self.on_backend_error
        bound = self._bound.get(quota if default else (quota, mode))
        if bound is None:
            if len(self._bound) >= 4096:  # quotas are per route or per distinct argument
                self._bound.clear()
            if quota.in_flight:
                bound = self._in_flight_check(quota, mode)
            else:
                bound = (_in_process(cast(MemoryBackend, self.backend).bind(quota, self._clock), quota)
                         if self._local else self._remote_check(quota, mode))
            self._bound[quota if default else (quota, mode)] = bound
        if default and not scope and isinstance(limits, str):
            self._bound[limits] = bound
        return bound

    def _in_flight_check(self, quota: Quota, mode: str) -> BoundCheck:
        """The check of a quota holding an in-flight limit (``N concurrent``): an admitted
        request's decision carries the ``lease`` to release when it ends."""
        if self._local:
            return _in_process(cast(MemoryBackend, self.backend).bind_leased(quota, self._clock, self.lease_stats),
                               quota)
        from ratelimit_mw.inflight import LeaseKeeper, remote_checks

        if self._keeper is None:
            clock, pass_time = self._clock, self._pass_time
            self._keeper = LeaseKeeper(self.backend, lambda: clock() if pass_time else None, self.lease_stats)
        def observe(seconds: float) -> None:  # the observer of the moment (metrics may attach later)
            if self.observer is not None:
                self.observer.backend_call(seconds)

        sync, async_ = remote_checks(
            quota, self.backend, self.storage_keys, self._clock, self._pass_time, self.breaker, self._keeper,
            lambda key, cost, exc: self._degraded(quota, key, cost, mode, exc), observe,
        )
        return BoundCheck(sync, async_, quota)

    def flush_leases(self) -> None:
        """Send the in-flight lease releases still queued now (they are otherwise sent
        in batches by a background thread); :meth:`close` calls it."""
        if self._keeper is not None:
            self._keeper.flush()

    async def aflush_leases(self) -> None:
        """Async :meth:`flush_leases`; :meth:`aclose` calls it."""
        if self._keeper is not None:
            await self._keeper.aflush()

    @property
    def leases_held(self) -> int:
        """Requests of this process holding in-flight leases on a remote backend now."""
        return 0 if self._keeper is None else int(self._keeper.held)

    def _remote_check(self, quota: Quota, mode: str) -> BoundCheck:
        """The failure policy around a remote backend's check: the over-limit cache, the
        breaker, the degraded answer, then the backend; sync and async twins share it."""
        rules = quota.rules
        backend = self.backend
        hit = backend.hit if isinstance(backend, Backend) and getattr(backend, "supports_sync", True) else None
        # the backend's check as a plain function returning an awaitable where it offers
        # one (RedisBackend.ahit_nowait: one coroutine frame fewer each way per check)
        ahit = None
        if isinstance(backend, AsyncBackend) and getattr(backend, "supports_async", True):
            ahit = getattr(backend, "ahit_nowait", None) or backend.ahit
        clock, pass_time, occ = self._clock, self._pass_time, self._occ

        def before(key: str, cost: int) -> tuple[list[str], float, Decision | None]:
            keys = self.storage_keys(key, quota)
            now = clock()
            if occ.entries:
                cached = occ.get(keys, cost, now)
                if cached is not None:
                    return keys, now, cached
            if not self.breaker.allow():
                return keys, now, self._degraded(quota, key, cost, mode, None)
            return keys, now, None

        def after(keys: list[str], cost: int, now: float, decision: Decision, started: float) -> Decision:
            if self.observer is not None:
                self.observer.backend_call(perf_counter() - started)
            self.breaker.success()
            if occ.size:
                occ.record(quota, keys, cost, decision, now)
            return decision

        def check(key: str, cost: int = 1) -> Decision:
            keys, now, early = before(key, cost)
            if early is not None:
                return early
            if hit is None:
                raise ConfigError("this backend is async-only: use acheck()")
            started = perf_counter()
            try:
                decision = hit(keys, rules, cost, now if pass_time else None)
            except Exception as exc:
                self.breaker.failure()
                return self._degraded(quota, key, cost, mode, exc)
            return after(keys, cost, now, decision, started)

        async def acheck(key: str, cost: int = 1) -> Decision:
            keys, now, early = before(key, cost)
            if early is not None:
                return early
            if ahit is None:
                raise ConfigError("this backend is sync-only: use check()")
            started = perf_counter()
            try:
                decision = await ahit(keys, rules, cost, now if pass_time else None)
            except Exception as exc:
                self.breaker.failure()
                return self._degraded(quota, key, cost, mode, exc)
            return after(keys, cost, now, decision, started)

        return BoundCheck(check, acheck, quota)

    # -- checks ----------------------------------------------------------------------

    def check(
        self, key: str, limits: Limits, *, cost: int = 1, scope: str = "", on_error: str | None = None
    ) -> Decision:
        """Check ``key`` against every limit and consume ``cost`` if all admit it.

        Args:
            key: the client identity (raw; it is hashed before storage).
            limits: a rate string, Rule, list of them, or a prepared :class:`Quota`.
            cost: units this request consumes.
            scope: bucket namespace when ``limits`` is not a Quota.
            on_error: failure mode for this check (default: the limiter's).
        """
        bound = None
        if on_error is None and not scope:
            try:
                bound = self._bound[limits]  # a Quota or rate string bound before: one lookup
            except (KeyError, TypeError):  # new, or a list (unhashable)
                bound = None
        if bound is None:
            bound = self.bind(limits, scope, on_error)
        return bound.check(key, cost)

    def acheck(
        self, key: str, limits: Limits, *, cost: int = 1, scope: str = "", on_error: str | None = None
    ) -> Awaitable[Decision]:
        """Async :meth:`check`; never blocks the event loop on a remote backend.

        A plain function returning the bound check's awaitable (``await
        limiter.acheck(...)`` as usual): no coroutine frame of its own per check.
        """
        bound = None
        if on_error is None and not scope:
            try:
                bound = self._bound[limits]  # a Quota or rate string bound before: one lookup
            except (KeyError, TypeError):  # new, or a list (unhashable)
                bound = None
        if bound is None:
            bound = self.bind(limits, scope, on_error)
        return bound.acheck(key, cost)

    hit = check
    ahit = acheck

    def check_or_raise(self, key: str, limits: Limits, *, cost: int = 1, scope: str = "") -> Decision:
        """Like :meth:`check`, but raise :class:`RateLimitExceeded` when denied."""
        decision = self.check(key, limits, cost=cost, scope=scope)
        if not decision.allowed:
            raise RateLimitExceeded(decision)
        return decision

    def _sync_backend(self, verb: str) -> Backend:
        backend = self.backend
        if not isinstance(backend, Backend) or not getattr(backend, "supports_sync", True):
            raise ConfigError(f"this backend is async-only: use a{verb}()")
        return backend

    def _async_backend(self, verb: str) -> AsyncBackend:
        backend = self.backend
        if not isinstance(backend, AsyncBackend) or not getattr(backend, "supports_async", True):
            raise ConfigError(f"this backend is sync-only: use {verb}()")
        return backend

    def peek(self, key: str, limits: Limits, *, scope: str = "") -> Decision:
        """Usage without consuming: ``remaining``/``reset_after`` now, and whether a
        request of cost 1 would pass (``allowed``, ``retry_after``)."""
        quota = self.quota(limits, scope)
        if self._local:
            return cast(MemoryBackend, self.backend).peek_key(key, quota, self._clock())
        return self._sync_backend("peek").peek(self.storage_keys(key, quota), quota.rules,
                                               self._clock() if self._pass_time else None)

    async def apeek(self, key: str, limits: Limits, *, scope: str = "") -> Decision:
        """Async :meth:`peek`."""
        quota = self.quota(limits, scope)
        if self._local:
            return cast(MemoryBackend, self.backend).peek_key(key, quota, self._clock())
        return await self._async_backend("peek").apeek(self.storage_keys(key, quota), quota.rules,
                                                       self._clock() if self._pass_time else None)

    usage = peek
    ausage = apeek

    def _forget(self, key: str, quota: Quota) -> list[str]:
        keys = self.storage_keys(key, quota)
        self._occ.forget(keys)
        return keys

    def reset(self, key: str, limits: Limits, *, scope: str = "") -> None:
        """Make ``key``'s quota whole again for these limits."""
        quota = self.quota(limits, scope)
        if self._local:
            cast(MemoryBackend, self.backend).reset_key(key, quota)
            return
        self._sync_backend("reset").reset(self._forget(key, quota))

    async def areset(self, key: str, limits: Limits, *, scope: str = "") -> None:
        """Async :meth:`reset`."""
        quota = self.quota(limits, scope)
        if self._local:
            cast(MemoryBackend, self.backend).reset_key(key, quota)
            return
        await self._async_backend("reset").areset(self._forget(key, quota))

    # -- outbound: wait until allowed ------------------------------------------------

    def acquire(
        self, key: str, limits: Limits, *, cost: int = 1, scope: str = "", timeout: float | None = None
    ) -> Decision:
        """Block until ``cost`` units are granted, for calls to a rate-limited API.

        Raises:
            RateLimitExceeded: if the wait would exceed ``timeout`` seconds.
        """
        waited = 0.0
        while True:
            decision = self.check(key, limits, cost=cost, scope=scope)
            if decision.allowed:
                if decision.delay > 0:
                    self._sleep(decision.delay)
                return decision
            if timeout is not None and waited + decision.retry_after > timeout:
                raise RateLimitExceeded(decision)
            waited += decision.retry_after
            self._sleep(decision.retry_after)

    async def aacquire(
        self, key: str, limits: Limits, *, cost: int = 1, scope: str = "", timeout: float | None = None
    ) -> Decision:
        """Async :meth:`acquire`: awaits instead of blocking."""
        waited = 0.0
        while True:
            decision = await self.acheck(key, limits, cost=cost, scope=scope)
            if decision.allowed:
                if decision.delay > 0:
                    await self._asleep(decision.delay)
                return decision
            if timeout is not None and waited + decision.retry_after > timeout:
                raise RateLimitExceeded(decision)
            waited += decision.retry_after
            await self._asleep(decision.retry_after)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Release the in-flight leases still held, then close the backend's connections."""
        if self._keeper is not None and getattr(self.backend, "supports_sync", False):
            self._keeper.close()
        if isinstance(self.backend, Backend):
            self.backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        if self._keeper is not None:
            await self._keeper.aclose()
        if isinstance(self.backend, AsyncBackend):
            await self.backend.aclose()
