"""Outbound limits: pace calls *to* third-party APIs, fairly, across threads, tasks and processes.

::

    outbound = OutboundLimiter({"api.openai.com": "3000/minute"}, backend="redis://...")

    @outbound.limit("openai", "3000/minute")        # sync or async functions
    def complete(prompt: str) -> str: ...

    outbound.acquire("api.openai.com")               # or wait by hand
    client = httpx.Client(transport=RateLimitTransport(outbound=outbound))  # ratelimit_mw.httpx

What it adds to :meth:`Limiter.acquire <ratelimit_mw.limiter.Limiter.acquire>`:

* **Fair waiting.** Per rule and process, callers that must wait queue in arrival
  order, threads and asyncio tasks alike. Only the head of the queue sleeps on the
  quota and checks it; when it is admitted it wakes the next one. So returning
  quota wakes one waiter, never a herd, and a later caller never overtakes an
  earlier one. A caller that gives up (its ``max_wait`` runs out, or its task is
  cancelled) leaves the queue and, if it was the head, hands the turn on. Across
  processes the backend (Redis) decides; the order there is first checked, first
  served.
* **Remote signals.** :meth:`OutboundLimiter.observe_response` reads ``Retry-After``,
  ``RateLimit`` (draft-11) and ``X-RateLimit-*`` (:mod:`ratelimit_mw.core.signals`)
  and pauses the rule: locally at once, and, on Redis, for every process (a key
  holding the end of the pause by the server's clock, read before each check).
* **Failure policy.** Each check passes the rule's ``on_backend_error`` to the
  Limiter, which applies it (``allow``, ``deny``, ``memory``) as for inbound routes.
  A failed read of the shared pause counts as "not paused".
* **Observability.** Metrics through an observer (``outbound_decision``,
  ``outbound_pause``; see :class:`ratelimit_mw.metrics.RateLimitMetrics`) and
  structlog lines with ``direction="outbound"``, labelled by rule name and host
  pattern, never by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.signals import RemotePause, remote_pause
from ratelimit_mw.errors import ConfigError, RateLimitExceeded
from ratelimit_mw.limiter import Limiter, Quota
from ratelimit_mw.policy.outbound import OutboundIndex, OutboundRule, outbound_rules

__all__ = ["ON_LIMIT", "OutboundLimiter", "OutboundObserver"]

P = ParamSpec("P")
R = TypeVar("R")

#: What a caller does when the quota is spent: wait for it (up to ``max_wait``) or raise.
ON_LIMIT = ("wait", "raise")
#: Shortest sleep between two checks of the head of a queue, in seconds.
_MIN_WAIT = 0.001
_EPS = 1e-6
_UNSET: Any = object()


class OutboundObserver(Protocol):
    """What :class:`OutboundLimiter` reports; :class:`~ratelimit_mw.metrics.RateLimitMetrics` implements it."""

    def outbound_decision(self, rule: str, host: str, outcome: str, seconds: float) -> None:
        """One call decided: ``allowed``, ``waited``, ``limited`` or ``degraded``, after ``seconds`` of waiting."""

    def outbound_pause(self, rule: str, signal: str) -> None:
        """The remote side asked for a pause (``retry-after``, ``ratelimit``, ``x-ratelimit``, ``manual``)."""


class _Waiter:
    """One caller in a queue: a thread (``event``) or a task (``future`` on ``loop``)."""

    __slots__ = ("event", "future", "loop", "ready")

    def __init__(self) -> None:
        self.ready = False
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Gate:
    """The FIFO queue of one rule in this process, and the rule's pause."""

    __slots__ = ("lock", "pause_read", "paused_until", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: deque[_Waiter] = deque()
        #: end of the pause, by the limiter's clock
        self.paused_until = 0.0
        #: when the shared pause was last read from the backend
        self.pause_read = -math.inf

    def join(self) -> _Waiter:
        waiter = _Waiter()
        with self.lock:
            self.queue.append(waiter)
            if self.queue[0] is waiter:
                waiter.ready = True
        return waiter

    def leave(self, waiter: _Waiter) -> None:
        """Leave the queue; a head that leaves hands the turn to the next waiter."""
        with self.lock:
            queue = self.queue
            head = bool(queue) and queue[0] is waiter
            try:
                queue.remove(waiter)
            except ValueError:
                return
            if head and queue:
                _wake(queue[0])

    def wait_turn(self, waiter: _Waiter, timeout: float) -> bool:
        with self.lock:
            if waiter.ready:
                return True
            event = waiter.event = threading.Event()
        return event.wait(max(timeout, 0.0)) or waiter.ready

    async def await_turn(self, waiter: _Waiter, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        with self.lock:
            if waiter.ready:
                return True
            waiter.loop, future = loop, loop.create_future()
            waiter.future = future
        try:
            await asyncio.wait_for(future, max(timeout, 0.0))
        except asyncio.TimeoutError:
            return waiter.ready
        return True


def _wake(waiter: _Waiter) -> None:
    waiter.ready = True
    if waiter.event is not None:
        waiter.event.set()
    if waiter.future is not None and waiter.loop is not None:
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future)


class OutboundLimiter:
    """Named outbound rules on a shared :class:`~ratelimit_mw.limiter.Limiter`, with fair waiting.

    Args:
        rules: rules from code, ``{"api.openai.com": "3000/minute", "twilio":
            {"limit": 100, "window": 1, "host": "api.twilio.com"}}`` (see
            :mod:`ratelimit_mw.policy.outbound`), or built :class:`OutboundRule` s.
        policies: a policy file, YAML text, mapping or ``PolicySet`` whose
            ``outbound:`` section adds rules (after those of ``rules``).
        limiter: the limiter holding the quotas; default: a new one on ``backend``.
        backend: backend URL or object for that new limiter (``memory://``, ``redis://...``).
        clock: time source for waits and pauses (``time.monotonic``); a
            :class:`~ratelimit_mw.testing.FakeClock` makes waits instant, and is handed to
            the new limiter too.
        max_wait: default longest wait for quota, in seconds, before
            :class:`~ratelimit_mw.errors.RateLimitExceeded`.
        on_limit: default behaviour when the quota is spent: ``wait`` or ``raise``.
        max_pause: the longest pause a remote signal may impose, in seconds.
        pause_refresh: seconds a "not paused" answer read from a shared backend is
            trusted before it is read again (0: read before every check).
        **limiter_options: passed to the new limiter (``prefix``, ``on_backend_error``...).
    """

    def __init__(
        self,
        rules: Mapping[str, Any] | Sequence[OutboundRule] | None = None,
        *,
        policies: Any = None,
        limiter: Limiter | None = None,
        backend: Any = "memory://",
        clock: Callable[[], float] | None = None,
        max_wait: float = 30.0,
        on_limit: str = "wait",
        max_pause: float = 300.0,
        pause_refresh: float = 0.0,
        **limiter_options: Any,
    ) -> None:
        if on_limit not in ON_LIMIT:
            raise ConfigError(f"on_limit must be 'wait' or 'raise', got {on_limit!r}")
        if not max_wait >= 0:
            raise ConfigError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
        if limiter is not None and (limiter_options or backend != "memory://"):
            raise TypeError("give either limiter= or backend= and limiter options, not both")
        self.limiter = limiter if limiter is not None else Limiter(backend, clock=clock, **limiter_options)
        self.max_wait = float(max_wait)
        self.on_limit = on_limit
        self.max_pause = max_pause
        self.pause_refresh = pause_refresh
        self._clock = clock or time.monotonic
        self._sleep: Callable[[float], None] = getattr(clock, "sleep", None) or time.sleep
        self._asleep: Callable[[float], Awaitable[Any]] = getattr(clock, "asleep", None) or asyncio.sleep
        #: Optional observer (metrics); ``None`` costs one test per call.
        self.observer: OutboundObserver | None = None
        self._denials = log.DenialLog()
        backend_obj = self.limiter.backend
        pause = getattr(backend_obj, "pause", None)
        apause = getattr(backend_obj, "apause", None)
        self._shared_pause: Callable[[str, float], float] | None = pause if callable(pause) else None
        self._ashared_pause: Callable[[str, float], Awaitable[float]] | None = apause if callable(apause) else None
        found = list(outbound_rules(rules))
        if policies is not None:
            from ratelimit_mw.policy.loader import load_policies

            found += load_policies(policies).outbound
        self._lock = threading.Lock()
        self._index = OutboundIndex(found)
        self._gates: dict[str, _Gate] = {}
        self._quotas: dict[str, Quota] = {}
        self._pause_keys: dict[str, str] = {}
        for rule in found:
            self._prepare(rule)

    # -- rules -------------------------------------------------------------------------

    @property
    def rules(self) -> tuple[OutboundRule, ...]:
        """Every rule, in match order."""
        return self._index.rules

    def _prepare(self, rule: OutboundRule) -> None:
        self._gates.setdefault(rule.name, _Gate())
        self._quotas[rule.name] = self.limiter.quota(rule.rules, f"outbound:{rule.name}")
        self._pause_keys[rule.name] = f"{self.limiter.prefix}:pause:{self.limiter.hash_key(rule.name)}"

    def add(self, name: str, limits: Any) -> OutboundRule:
        """Add (or replace, keeping its place) the rule ``name``: the seeds' ``configure_limit``.

        Args:
            name: a target (``"api.openai.com/v1/**"``) or a plain name (``"openai"``).
            limits: a rate, list of rates, or mapping (``{"limit": 3000, "window": 60,
                "host": "api.openai.com"}``), as in the ``rules`` argument.
        """
        (rule,) = outbound_rules({name: limits})
        with self._lock:
            current = list(self._index.rules)
            names = [r.name for r in current]
            if rule.name in names:
                current[names.index(rule.name)] = rule
            else:
                current.append(rule)
            self._prepare(rule)
            self._index = OutboundIndex(current)
        return rule

    def rule(self, name: str) -> OutboundRule:
        """The rule named ``name``.

        Raises:
            ConfigError: there is none.
        """
        found = self._index.get(name)
        if found is None:
            known = ", ".join(r.name for r in self._index.rules) or "none"
            raise ConfigError(f"no outbound rule named {name!r} (known: {known})")
        return found

    def match(self, method: str, scheme: str, host: str, port: int | None, path: str) -> OutboundRule | None:
        """The first rule that applies to a request, or ``None`` (see :class:`OutboundIndex`)."""
        return self._index.match(method, scheme, host, port, path)

    def _resolve(self, rule: OutboundRule | str) -> OutboundRule:
        if isinstance(rule, OutboundRule) and rule.name in self._quotas:
            return rule
        return self.rule(rule.name if isinstance(rule, OutboundRule) else rule)

    # -- waiting for quota ------------------------------------------------------------

    def acquire(
        self, rule: OutboundRule | str, *, cost: int | None = None, max_wait: float | None = None,
        on_limit: str | None = None,
    ) -> Decision:
        """Take ``cost`` units of ``rule``'s quota, waiting in turn if it is spent.

        Args:
            rule: the rule or its name.
            cost: units (default: the rule's ``cost``).
            max_wait: longest wait in seconds (default: the limiter's).
            on_limit: ``wait`` or ``raise`` (default: the limiter's).

        Raises:
            RateLimitExceeded: the quota is spent and ``on_limit`` is ``raise``, or it
                would not return within ``max_wait``; ``decision.retry_after`` says when
                it might.
        """
        found = self._resolve(rule)
        name = found.name
        units = found.cost if cost is None else cost
        quota, gate = self._quotas[name], self._gates[name]
        started = self._clock()
        queued = bool(gate.queue)
        decision = self._queued(found, gate) if queued else self._try(found, quota, gate, units, started)
        if decision.allowed:
            return self._admitted(found, decision, started, waited=False)
        budget = self.max_wait if max_wait is None else max_wait
        if (on_limit or self.on_limit) == "raise" or budget <= 0:
            raise self._refused(found, decision, started)
        deadline = started + budget
        waiter = gate.join()
        try:
            # the head at once sleeps out the denial it just got (a queue estimate is no denial)
            wait = decision.retry_after if waiter.ready and not queued else 0.0
            if not waiter.ready and not gate.wait_turn(waiter, deadline - self._clock()):
                raise self._refused(found, decision, started)
            while True:
                if wait > 0:
                    if self._clock() + wait > deadline + _EPS:
                        raise self._refused(found, decision, started)
                    self._sleep(wait)
                decision = self._try(found, quota, gate, units, self._clock())
                if decision.allowed:
                    return self._admitted(found, decision, started, waited=True)
                wait = max(decision.retry_after, _MIN_WAIT)
        finally:
            gate.leave(waiter)

    async def aacquire(
        self, rule: OutboundRule | str, *, cost: int | None = None, max_wait: float | None = None,
        on_limit: str | None = None,
    ) -> Decision:
        """Async :meth:`acquire`: awaits in turn; a cancelled task leaves the queue."""
        found = self._resolve(rule)
        name = found.name
        units = found.cost if cost is None else cost
        quota, gate = self._quotas[name], self._gates[name]
        started = self._clock()
        queued = bool(gate.queue)
        if queued:
            decision = self._queued(found, gate)
        else:
            decision = await self._atry(found, quota, gate, units, started)
        if decision.allowed:
            return await self._aadmitted(found, decision, started, waited=False)
        budget = self.max_wait if max_wait is None else max_wait
        if (on_limit or self.on_limit) == "raise" or budget <= 0:
            raise self._refused(found, decision, started)
        deadline = started + budget
        waiter = gate.join()
        try:
            # the head at once sleeps out the denial it just got (a queue estimate is no denial)
            wait = decision.retry_after if waiter.ready and not queued else 0.0
            if not waiter.ready and not await gate.await_turn(waiter, deadline - self._clock()):
                raise self._refused(found, decision, started)
            while True:
                if wait > 0:
                    if self._clock() + wait > deadline + _EPS:
                        raise self._refused(found, decision, started)
                    await self._asleep(wait)
                decision = await self._atry(found, quota, gate, units, self._clock())
                if decision.allowed:
                    return await self._aadmitted(found, decision, started, waited=True)
                wait = max(decision.retry_after, _MIN_WAIT)
        finally:
            gate.leave(waiter)

    def try_acquire(self, rule: OutboundRule | str, *, cost: int | None = None) -> Decision:
        """One check, never a wait: the seeds' ``allow_request()``/``check_limit()``.

        Waiting callers keep their turn: while any wait for this rule, the answer is
        "denied" without consuming anything.
        """
        found = self._resolve(rule)
        gate = self._gates[found.name]
        started = self._clock()
        units = found.cost if cost is None else cost
        decision = self._queued(found, gate) if gate.queue else self._try(
            found, self._quotas[found.name], gate, units, started
        )
        self._report(found, decision, started, waited=False)
        return decision

    async def atry_acquire(self, rule: OutboundRule | str, *, cost: int | None = None) -> Decision:
        """Async :meth:`try_acquire`."""
        found = self._resolve(rule)
        gate = self._gates[found.name]
        started = self._clock()
        units = found.cost if cost is None else cost
        if gate.queue:
            decision = self._queued(found, gate)
        else:
            decision = await self._atry(found, self._quotas[found.name], gate, units, started)
        self._report(found, decision, started, waited=False)
        return decision

    def usage(self, rule: OutboundRule | str) -> dict[str, Any]:
        """The rule's quota now, consuming nothing: the seeds' ``get_current_usage``."""
        found = self._resolve(rule)
        decision = self.limiter.peek(found.name, self._quotas[found.name])
        return self._usage(found, decision, self._paused_for(found, self._gates[found.name], self._clock()))

    async def ausage(self, rule: OutboundRule | str) -> dict[str, Any]:
        """Async :meth:`usage`."""
        found = self._resolve(rule)
        decision = await self.limiter.apeek(found.name, self._quotas[found.name])
        paused = await self._apaused_for(found, self._gates[found.name], self._clock())
        return self._usage(found, decision, paused)

    def _usage(self, rule: OutboundRule, decision: Decision, paused: float) -> dict[str, Any]:
        return {
            "rule": rule.name,
            "limit": decision.limit,
            "remaining": decision.remaining,
            "reset_after": decision.reset_after,
            "paused_for": paused,
            "waiting": len(self._gates[rule.name].queue),
        }

    # -- the decorator ----------------------------------------------------------------

    def limit(
        self, name: str, limits: Any = None, *, cost: int | None = None, max_wait: float | None = None,
        on_limit: str | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function (sync or async) so each call first takes quota from ``name``.

        Args:
            name: the rule's name; registered with ``limits`` if it does not exist yet.
            limits: the rule's limits (a rate, list or mapping), when it is new here.
            cost: units per call (default: the rule's).
            max_wait: longest wait per call (default: the limiter's).
            on_limit: ``wait`` or ``raise`` (default: the limiter's).

        Raises:
            ConfigError: ``name`` is unknown and no ``limits`` are given, or an existing
                rule of that name has other limits.
        """
        existing = self._index.get(name)
        if limits is not None:
            (wanted,) = outbound_rules({name: limits})
            if existing is None:
                self.add(name, limits)
            elif [r.signature for r in existing.rules] != [r.signature for r in wanted.rules]:
                raise ConfigError(f"outbound rule {name!r} already exists with other limits")
        elif existing is None:
            self.rule(name)  # raises, naming the known rules
        if on_limit is not None and on_limit not in ON_LIMIT:
            raise ConfigError(f"on_limit must be 'wait' or 'raise', got {on_limit!r}")

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def limited_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                    await self.aacquire(name, cost=cost, max_wait=max_wait, on_limit=on_limit)
                    return await func(*args, **kwargs)

                return cast("Callable[P, R]", limited_async)

            @functools.wraps(func)
            def limited(*args: P.args, **kwargs: P.kwargs) -> R:
                self.acquire(name, cost=cost, max_wait=max_wait, on_limit=on_limit)
                return func(*args, **kwargs)

            return limited

        return decorate

    # -- remote signals -----------------------------------------------------------------

    def observe_response(
        self, rule: OutboundRule | str, status: int, headers: Mapping[str, str]
    ) -> RemotePause | None:
        """Pause ``rule`` if the response asks for it (see :mod:`ratelimit_mw.core.signals`).

        Args:
            rule: the rule the request went out under.
            status: the response status.
            headers: its headers (case-insensitive, like ``httpx.Headers``).
        """
        found = remote_pause(status, headers, time.time(), max_pause=self.max_pause)
        if found is not None:
            self.pause(rule, found.seconds, signal=found.signal, status=status)
        return found

    async def aobserve_response(
        self, rule: OutboundRule | str, status: int, headers: Mapping[str, str]
    ) -> RemotePause | None:
        """Async :meth:`observe_response`."""
        found = remote_pause(status, headers, time.time(), max_pause=self.max_pause)
        if found is not None:
            await self.apause(rule, found.seconds, signal=found.signal, status=status)
        return found

    def pause(self, rule: OutboundRule | str, seconds: float, *, signal: str = "manual", status: int = 0) -> None:
        """Hold every caller of ``rule`` back for ``seconds`` (all processes, on Redis).

        A pause only ever grows: a shorter one while a longer runs changes nothing.
        """
        found = self._resolve(rule)
        self._pause_here(found, seconds, signal, status)
        if self._shared_pause is not None:
            try:
                self._shared_pause(self._pause_keys[found.name], seconds)
            except Exception as exc:
                self._pause_failed(found, exc)

    async def apause(self, rule: OutboundRule | str, seconds: float, *, signal: str = "manual",
                     status: int = 0) -> None:
        """Async :meth:`pause`."""
        found = self._resolve(rule)
        self._pause_here(found, seconds, signal, status)
        if self._ashared_pause is not None:
            try:
                await self._ashared_pause(self._pause_keys[found.name], seconds)
            except Exception as exc:
                self._pause_failed(found, exc)

    def paused_for(self, rule: OutboundRule | str) -> float:
        """Seconds left in ``rule``'s pause (0 when it is not paused)."""
        found = self._resolve(rule)
        return self._paused_for(found, self._gates[found.name], self._clock())

    async def apaused_for(self, rule: OutboundRule | str) -> float:
        """Async :meth:`paused_for`."""
        found = self._resolve(rule)
        return await self._apaused_for(found, self._gates[found.name], self._clock())

    def _pause_here(self, rule: OutboundRule, seconds: float, signal: str, status: int) -> None:
        gate = self._gates[rule.name]
        seconds = min(max(seconds, 0.0), self.max_pause)
        with gate.lock:
            gate.paused_until = max(gate.paused_until, self._clock() + seconds)
        log.logger.warning(log.OUTBOUND_PAUSED, direction="outbound", rule=rule.name, host=rule.host or "",
                           seconds=round(seconds, 3), signal=signal, status=status)
        if self.observer is not None:
            self.observer.outbound_pause(rule.name, signal)

    def _pause_failed(self, rule: OutboundRule, exc: BaseException) -> None:
        log.logger.error(log.BACKEND_ERROR, error=type(exc).__name__, detail=str(exc)[:200],
                         direction="outbound", rule=rule.name, operation="pause")
        if self.limiter.observer is not None:
            self.limiter.observer.backend_error(type(exc).__name__)

    def _paused_for(self, rule: OutboundRule, gate: _Gate, now: float) -> float:
        left = gate.paused_until - now
        if self._shared_pause is not None and now - gate.pause_read >= self.pause_refresh \
                and self.limiter.breaker.state != "open":
            gate.pause_read = now
            try:
                shared = self._shared_pause(self._pause_keys[rule.name], 0.0)
            except Exception as exc:  # fail open: a pause we cannot read is no pause
                self._pause_failed(rule, exc)
                shared = 0.0
            if shared > left:
                with gate.lock:
                    gate.paused_until = max(gate.paused_until, now + shared)
                left = shared
        return max(left, 0.0)

    async def _apaused_for(self, rule: OutboundRule, gate: _Gate, now: float) -> float:
        left = gate.paused_until - now
        if self._ashared_pause is not None and now - gate.pause_read >= self.pause_refresh \
                and self.limiter.breaker.state != "open":
            gate.pause_read = now
            try:
                shared = await self._ashared_pause(self._pause_keys[rule.name], 0.0)
            except Exception as exc:
                self._pause_failed(rule, exc)
                shared = 0.0
            if shared > left:
                with gate.lock:
                    gate.paused_until = max(gate.paused_until, now + shared)
                left = shared
        return max(left, 0.0)

    # -- one check --------------------------------------------------------------------

    def _try(self, rule: OutboundRule, quota: Quota, gate: _Gate, cost: int, now: float) -> Decision:
        paused = self._paused_for(rule, gate, now)
        if paused > 0:
            return _paused(rule, paused)
        return self.limiter.check(rule.name, quota, cost=cost, on_error=rule.on_backend_error)

    async def _atry(self, rule: OutboundRule, quota: Quota, gate: _Gate, cost: int, now: float) -> Decision:
        paused = await self._apaused_for(rule, gate, now)
        if paused > 0:
            return _paused(rule, paused)
        return await self.limiter.acheck(rule.name, quota, cost=cost, on_error=rule.on_backend_error)

    @staticmethod
    def _queued(rule: OutboundRule, gate: _Gate) -> Decision:
        """The answer for a caller behind a queue: denied, with a rough wait (queue x interval)."""
        first = rule.rules[0]
        wait = max(len(gate.queue), 1) * max(r.interval for r in rule.rules)
        return Decision(False, first.capacity, 0, wait, wait, first)

    def _admitted(self, rule: OutboundRule, decision: Decision, started: float, *, waited: bool) -> Decision:
        if decision.delay > 0:  # leaky bucket shaping
            self._sleep(decision.delay)
        self._report(rule, decision, started, waited=waited)
        return decision

    async def _aadmitted(self, rule: OutboundRule, decision: Decision, started: float, *, waited: bool) -> Decision:
        if decision.delay > 0:
            await self._asleep(decision.delay)
        self._report(rule, decision, started, waited=waited)
        return decision

    def _refused(self, rule: OutboundRule, decision: Decision, started: float) -> RateLimitExceeded:
        self._report(rule, decision, started, waited=True)
        return RateLimitExceeded(decision)

    def _report(self, rule: OutboundRule, decision: Decision, started: float, *, waited: bool) -> None:
        observer = self.observer
        if decision.allowed and observer is None:
            return
        seconds = self._clock() - started
        if decision.allowed:
            outcome = "degraded" if decision.degraded else ("waited" if waited else "allowed")
        else:
            outcome = "limited"
            self._denials.denied(
                time.monotonic(), rule.name, "", direction="outbound", host=rule.host or "",
                retry_after=round(decision.retry_after, 3), waited=round(seconds, 3),
                degraded=decision.degraded,
            )
        if observer is not None:
            observer.outbound_decision(rule.name, rule.host or "", outcome, seconds)


def _paused(rule: OutboundRule, seconds: float) -> Decision:
    first = rule.rules[0]
    return Decision(False, first.capacity, 0, seconds, seconds, first, 0.0, ("remote-pause",))

