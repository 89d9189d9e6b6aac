"""The framework-agnostic limiter: keys, time, backend, failure policy.

Usable directly, without any web framework::

    limiter = Limiter("memory://")
    decision = limiter.check("user-42", "10/second")
    if not decision.allowed:
        ...  # decision.retry_after seconds

and for outbound calls to a third-party API::

    limiter.acquire("openai", "3000/minute")      # waits (sleeps) until allowed
    await limiter.aacquire("openai", "3000/minute")

Failure policy: when the backend raises or times out, ``on_backend_error``
decides: ``allow`` (fail open, the default), ``deny`` (fail closed) or ``memory``
(a per-process memory limiter with the same rules). A circuit breaker stops
calling a failing backend so an outage adds no per-request latency, and lets a
probe through every ``breaker_recovery`` seconds to recover by itself.
"""

from __future__ import annotations

import asyncio
import time
from binascii import b2a_base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from time import perf_counter
from typing import Any, cast

from ratelimit_mw import log
from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.breaker import CircuitBreaker
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.hashing import KeyHasher
from ratelimit_mw.core.rates import Rule, parse_rate, rule_from_mapping
from ratelimit_mw.errors import ConfigError, RateLimitExceeded
from ratelimit_mw.observe import Observer

__all__ = ["Limiter", "Limits", "Quota", "open_backend"]

FAILURE_MODES = ("allow", "deny", "memory")


@dataclass(frozen=True, slots=True)
class Quota:
    """Rules bound to a scope: what one check applies, with storage-key suffixes.

    Built once per route (or per distinct ``limits`` argument) and reused.

    Attributes:
        rules: the limits, checked together.
        scope: bucket namespace (the route label, or a shared ``scope``).
        slots: one short id per rule, unique per (scope, rule maths).
    """

    rules: tuple[Rule, ...]
    scope: str
    slots: tuple[str, ...]
    #: the one slot of a single-rule quota (the common case), else ``None``
    single: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "single", self.slots[0] if len(self.slots) == 1 else None)


Limits = Quota | Rule | str | Sequence[Rule | str]


def _slot_id(scope: str, rule: Rule) -> str:
    """7 characters (42 bits) naming one (scope, rule): short keys save Redis memory
    (``rl:{2-char tag}14-char rest:7-char slot`` is 29 bytes, under an allocator step at 30)."""
    digest = blake2b(f"{scope}\0{rule.signature}".encode(), digest_size=6).digest()
    return b2a_base64(digest, newline=False).decode()[:7].replace("+", "-").replace("/", "_")


@lru_cache(maxsize=4096)
def _make_quota(rules: tuple[Rule, ...], scope: str) -> Quota:
    if not rules:
        raise ConfigError("at least one limit is required")
    return Quota(rules, scope, tuple(_slot_id(scope, r) for r in rules))


def _to_rule(item: Rule | str | Any) -> Rule:
    if isinstance(item, Rule):
        return item
    if isinstance(item, str):
        return parse_rate(item)
    if isinstance(item, dict):
        return rule_from_mapping(item)
    raise ConfigError(f"expected a rate string or Rule, got {item!r}")


def open_backend(spec: Any, *, prefix: str = "rl", **options: Any) -> Backend | AsyncBackend:
    """Turn a URL or client object into a backend.

    ``memory://`` (``?max_keys=N``), ``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``, a redis-py client, or a backend.
    """
    if isinstance(spec, (Backend, AsyncBackend)):
        return spec
    if spec is None or (isinstance(spec, str) and spec.split("://", 1)[0] in ("memory", "")):
        max_keys = options.pop("max_keys", None)
        if isinstance(spec, str) and "max_keys=" in spec:
            try:
                max_keys = int(spec.split("max_keys=", 1)[1].split("&", 1)[0])
            except ValueError:
                raise ConfigError(f"invalid max_keys in backend URL {spec!r}") from None
        return MemoryBackend(max_keys=max_keys or 100_000)
    try:
        from ratelimit_mw.backends.redis import open_redis_backend
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"backend {spec!r} needs the redis extra: pip install 'ratelimit_mw[redis]' ({exc})"
        ) from exc
    return open_redis_backend(spec, prefix=prefix, **options)


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

        if on_backend_error not in FAILURE_MODES:
            raise ConfigError(
                f"on_backend_error must be one of {', '.join(FAILURE_MODES)}, got {on_backend_error!r}"
            )
        self.prefix = prefix if prefix is not None else os.environ.get("REDIS_PREFIX", "rl")
        self.backend = open_backend(backend, prefix=self.prefix, **backend_options)
        self._clock = clock or time.time
        # Memory needs our time; a remote backend uses its own unless a clock was injected.
        self._pass_time = clock is not None or not self.backend.has_clock
        self._local = isinstance(self.backend, MemoryBackend)
        # Which APIs the backend serves, decided once (an ABC isinstance per check costs ~0.3 us).
        self._sync_ok = isinstance(self.backend, Backend) and getattr(self.backend, "supports_sync", True)
        self._async_ok = isinstance(self.backend, AsyncBackend) and getattr(self.backend, "supports_async", True)
        # The backend's check as a plain function returning an awaitable where it offers
        # one (RedisBackend.ahit_nowait: one coroutine frame fewer each way per check).
        self._ahit: Callable[..., Awaitable[Decision]] = cast(
            "Callable[..., Awaitable[Decision]]",
            getattr(self.backend, "ahit_nowait", None) or getattr(self.backend, "ahit", None),
        )
        self._memory: MemoryBackend = self.backend if isinstance(self.backend, MemoryBackend) else MemoryBackend()
        self._hit_local = self._memory.hit_client
        self.on_backend_error = on_backend_error
        self._hash = KeyHasher(key_secret)
        self._sleep = sleep or getattr(clock, "sleep", None) or time.sleep
        self._asleep = asleep or getattr(clock, "asleep", None) or asyncio.sleep
        self._fallback: MemoryBackend | None = None
        self._occ_size = 0 if self._local else over_limit_cache
        self._occ: dict[str, tuple[float, int, Decision]] = {}
        self.breaker = CircuitBreaker(
            threshold=breaker_threshold,
            recovery_time=breaker_recovery,
            clock=time.monotonic if clock is None else clock,
            on_change=self._breaker_changed,
        )
        #: Optional :class:`~ratelimit_mw.observe.Observer` (metrics); ``None``: no cost.
        self.observer: Observer | None = None
        if self._local:
            # In process, :meth:`check` is the backend's one-frame function with the same
            # signature and answers (see MemoryBackend.client_check): the method below
            # would add a call, a noticeable share of a ~1.3 us check.
            self.check = self._memory.client_check(self.quota, self._clock)  # type: ignore[method-assign]

    @property
    def in_process(self) -> bool:
        """The backend is this process's memory: a check never waits on I/O."""
        return self._local

    # -- keys ------------------------------------------------------------------------

    def lane(
        self,
        quota: Quota,
        cost: int,
        key_of: Callable[[Any], str | None],
        renders: Sequence[Callable[[int, float], Any]],
    ) -> Callable[[Any], Any] | None:
        """An in-process fast lane for one route (see :meth:`MemoryBackend.lane`), or ``None``.

        Only the in-process backend has lanes: a remote check waits on I/O anyway.
        """
        if not self._local:
            return None
        return self._memory.lane(quota, cost, key_of, self._clock, renders)

    def quota(self, limits: Limits, scope: str = "") -> Quota:
        """Bind ``limits`` to ``scope``; cached, so passing strings each call is cheap."""
        if isinstance(limits, Quota):
            return limits
        if isinstance(limits, (Rule, str)):
            return _make_quota((_to_rule(limits),), scope)
        return _make_quota(tuple(_to_rule(x) for x in limits), scope)

    def hash_key(self, key: str) -> str:
        """The keyed BLAKE2b hash under which ``key`` is stored in Redis and logged.

        The in-process memory backend keys its tables with Python's ``hash()`` instead:
        SipHash keyed with a random per-process secret, never stored or shown outside
        this process, and cheaper than BLAKE2b (see README, Design).
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

    # -- failure policy --------------------------------------------------------------

    def _breaker_changed(self, old: str, new: str) -> None:
        event = log.BREAKER_OPENED if new == "open" else log.BREAKER_CLOSED if new == "closed" else log.BREAKER_CHANGED
        log.logger.warning(event, old=old, new=new, backend=type(self.backend).__name__)
        if self.observer is not None:
            self.observer.breaker(new)
            if self.on_backend_error == "memory":
                self.observer.fallback(new != "closed")

    def _fallback_backend(self) -> MemoryBackend:
        if self._fallback is None:
            self._fallback = MemoryBackend()
        return self._fallback

    def _degraded(
        self, quota: Quota, keys: list[str], cost: int, mode: str, exc: BaseException | None
    ) -> Decision:
        if exc is not None:
            log.logger.error(
                log.BACKEND_ERROR, error=type(exc).__name__, detail=str(exc)[:200], mode=mode,
                scope=quota.scope,
            )
            if self.observer is not None:
                self.observer.backend_error(type(exc).__name__)
        if mode == "memory":
            d = self._fallback_backend().hit(keys, quota.rules, cost, self._clock())
            return Decision(d.allowed, d.limit, d.remaining, d.reset_after, d.retry_after,
                            d.rule, d.delay, d.violated, True)
        rule = quota.rules[0]
        if mode == "deny":
            wait = max(self.breaker.recovery_time, 1.0)
            return Decision(False, rule.capacity, 0, wait, wait, rule, 0.0, (), True)
        return Decision(True, rule.capacity, rule.capacity, 0.0, 0.0, rule, 0.0, (), True)

    def _occ_get(self, keys: list[str], cost: int, now: float) -> Decision | None:
        for key in keys:
            entry = self._occ.get(key)
            if entry is not None:
                until, denied_cost, d = entry
                if now >= until:
                    del self._occ[key]
                elif cost >= denied_cost:
                    left = until - now
                    return Decision(False, d.limit, d.remaining, max(d.reset_after - (d.retry_after - left), 0.0),
                                    left, d.rule, 0.0, d.violated, False)
        return None

    def _occ_put(self, quota: Quota, keys: list[str], cost: int, decision: Decision, now: float) -> None:
        if decision.retry_after <= 0 or decision.rule is None:
            return
        if len(self._occ) >= self._occ_size:
            self._occ.clear()
        index = quota.rules.index(decision.rule)
        self._occ[keys[index]] = (now + decision.retry_after, cost, decision)

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
        quota = limits if type(limits) is Quota else self.quota(limits, scope)
        if self._local:
            return self._hit_local(hash(key), quota, cost, self._clock())
        keys = self.storage_keys(key, quota)
        now = self._clock()
        if self._occ:
            cached = self._occ_get(keys, cost, now)
            if cached is not None:
                return cached
        mode = on_error or self.on_backend_error
        if not self.breaker.allow():
            return self._degraded(quota, keys, cost, mode, None)
        if not self._sync_ok:
            raise ConfigError("this backend is async-only: use acheck()")
        backend = cast(Backend, self.backend)
        observer = self.observer
        started = perf_counter() if observer is not None else 0.0
        try:
            decision = backend.hit(keys, quota.rules, cost, now if self._pass_time else None)
        except Exception as exc:
            self.breaker.failure()
            return self._degraded(quota, keys, cost, mode, exc)
        if observer is not None:
            observer.backend_call(perf_counter() - started)
        self.breaker.success()
        if not decision.allowed and self._occ_size:
            self._occ_put(quota, keys, cost, decision, now)
        return decision

    async def acheck(
        self, key: str, limits: Limits, *, cost: int = 1, scope: str = "", on_error: str | None = None
    ) -> Decision:
        """Async :meth:`check`; never blocks the event loop on a remote backend."""
        quota = limits if type(limits) is Quota else self.quota(limits, scope)
        if self._local:
            return self._memory.hit_client(hash(key), quota, cost, self._clock())
        keys = self.storage_keys(key, quota)
        now = self._clock()
        if self._occ:
            cached = self._occ_get(keys, cost, now)
            if cached is not None:
                return cached
        mode = on_error or self.on_backend_error
        if not self.breaker.allow():
            return self._degraded(quota, keys, cost, mode, None)
        if not self._async_ok:
            raise ConfigError("this backend is sync-only: use check()")
        observer = self.observer
        started = perf_counter() if observer is not None else 0.0
        try:
            decision = await self._ahit(keys, quota.rules, cost, now if self._pass_time else None)
        except Exception as exc:
            self.breaker.failure()
            return self._degraded(quota, keys, cost, mode, exc)
        if observer is not None:
            observer.backend_call(perf_counter() - started)
        self.breaker.success()
        if not decision.allowed and self._occ_size:
            self._occ_put(quota, keys, cost, decision, now)
        return decision

    hit = check
    ahit = acheck

    def check_or_raise(self, key: str, limits: Limits, *, cost: int = 1, scope: str = "") -> Decision:
        """Like :meth:`check`, but raise :class:`RateLimitExceeded` when denied."""
        decision = self.check(key, limits, cost=cost, scope=scope)
        if not decision.allowed:
            raise RateLimitExceeded(decision)
        return decision

    def peek(self, key: str, limits: Limits, *, scope: str = "") -> Decision:
        """Usage without consuming: ``remaining``/``reset_after`` now, and whether a
        request of cost 1 would pass (``allowed``, ``retry_after``)."""
        quota = self.quota(limits, scope)
        if self._local:
            return self._memory.peek_client(hash(key), quota, self._clock())
        backend = self.backend
        if not isinstance(backend, Backend) or not getattr(backend, "supports_sync", True):
            raise ConfigError("this backend is async-only: use apeek()")
        return backend.peek(self.storage_keys(key, quota), quota.rules,
                            self._clock() if self._pass_time else None)

    async def apeek(self, key: str, limits: Limits, *, scope: str = "") -> Decision:
        """Async :meth:`peek`."""
        quota = self.quota(limits, scope)
        if self._local:
            return self._memory.peek_client(hash(key), quota, self._clock())
        backend = self.backend
        if not isinstance(backend, AsyncBackend) or not getattr(backend, "supports_async", True):
            raise ConfigError("this backend is sync-only: use peek()")
        return await backend.apeek(self.storage_keys(key, quota), quota.rules,
                                   self._clock() if self._pass_time else None)

    usage = peek
    ausage = apeek

    def reset(self, key: str, limits: Limits, *, scope: str = "") -> None:
        """Make ``key``'s quota whole again for these limits."""
        quota = self.quota(limits, scope)
        if self._local:
            self._memory.reset_client(hash(key), quota)
            return
        keys = self.storage_keys(key, quota)
        for k in keys:
            self._occ.pop(k, None)
        backend = self.backend
        if not isinstance(backend, Backend) or not getattr(backend, "supports_sync", True):
            raise ConfigError("this backend is async-only: use areset()")
        backend.reset(keys)

    async def areset(self, key: str, limits: Limits, *, scope: str = "") -> None:
        """Async :meth:`reset`."""
        quota = self.quota(limits, scope)
        if self._local:
            self._memory.reset_client(hash(key), quota)
            return
        keys = self.storage_keys(key, quota)
        for k in keys:
            self._occ.pop(k, None)
        backend = self.backend
        if not isinstance(backend, AsyncBackend) or not getattr(backend, "supports_async", True):
            raise ConfigError("this backend is sync-only: use reset()")
        await backend.areset(keys)

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
        """Close the backend's connections."""
        if isinstance(self.backend, Backend):
            self.backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        if isinstance(self.backend, AsyncBackend):
            await self.backend.aclose()
