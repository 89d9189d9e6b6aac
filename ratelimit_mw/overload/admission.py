"""Overload protection in the decision path: one gate per pool, one guarded plan per route.

When the policies load, :class:`Overload` builds (or keeps, when its configuration is
unchanged) one :class:`~ratelimit_mw.overload.OverloadGate` per pool, pre-builds the
503 answers, and wraps each protected route's plan in a :class:`GuardedPlan`. A request
then runs: class (route's ``priority:``, else ``priority_from``, else the default),
one acquire on its pool's gate, and the route's own plan. An admitted request carries
a :class:`Slot` in its verdict; the adapters hand it to :func:`call_asgi` or
:func:`call_wsgi`, which release it exactly once on every way a response can end.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.keys import Access
from ratelimit_mw.core.lease import Slots
from ratelimit_mw.core.problem import TEMPORARY_REDUCED_CAPACITY, Rejection, problem
from ratelimit_mw.overload.gate import LimitChange, OverloadGate, Ticket
from ratelimit_mw.overload.scaling import level
from ratelimit_mw.policy.model import Route
from ratelimit_mw.policy.overload import DEFAULT_POOL, OverloadSpec
from ratelimit_mw.types import Message, Receive, Scope, Send
from ratelimit_mw.verdict import Verdict

__all__ = ["GuardedPlan", "Overload", "Shed", "Slot", "call_asgi", "call_wsgi"]

#: Statuses that mean the app (or what it calls) is overloaded: a failed sample.
OVERLOADED_STATUSES = frozenset({503, 504})
SHED_STATUS = 503
#: Seconds between two log lines about one pool's limit (the changes in between are summed up).
LOG_EVERY = 10.0


class Slot:
    """An admitted request's place in its pool; :meth:`release` gives it back once."""

    __slots__ = ("clock", "gate", "held", "ticket")

    def __init__(self, gate: OverloadGate, ticket: Ticket, clock: Callable[[], float]) -> None:
        self.gate = gate
        self.ticket = ticket
        self.clock = clock
        self.held = True

    def release(self, dropped: bool = False, sample: bool = True) -> None:
        """Give the slot back (later calls do nothing); see :meth:`OverloadGate.release`."""
        if self.held:
            self.held = False
            self.gate.release(self.ticket, self.clock(), dropped, sample)


class Shed:
    """A shed request's answer: 503, problem+json, no-store, a jittered Retry-After."""

    __slots__ = ("answers", "raw")

    def __init__(self, answers: tuple[tuple[Rejection, Rejection], ...], raw: bool) -> None:
        self.answers = answers
        self.raw = raw

    def rejection(self, raw: bool) -> Rejection:
        """One of the pre-built answers, drawn at random: clients told to come back at
        different times do not come back together."""
        pair = self.answers[int(random.random() * len(self.answers))]
        return pair[1] if raw else pair[0]


def _answers(retry_after: int) -> tuple[tuple[Rejection, Rejection], ...]:
    out = []
    for retry in range(1, retry_after + 1):
        body = json.dumps(
            {"type": TEMPORARY_REDUCED_CAPACITY, "title": "Service Unavailable", "status": SHED_STATUS,
             "detail": f"The service is overloaded; retry after {retry} seconds.", "retry_after": retry},
            separators=(",", ":"),
        ).encode()
        body, own, own_raw = problem(body)
        out.append((
            Rejection(SHED_STATUS, [*own, ("Retry-After", str(retry))], body),
            Rejection(SHED_STATUS, [*own_raw, (b"retry-after", str(retry).encode())], body),
        ))
    return tuple(out)


_new = tuple.__new__
SHED_DECISION = Decision(False, 0, 0, 0.0, 1.0)
PASS_DECISION = Decision(True, 0, 0, 0.0, 0.0)


class _ChangeLog:
    """One log event per limit change of a pool, debounced: at most one line per
    ``LOG_EVERY`` seconds, carrying how many changes it sums up."""

    __slots__ = ("last", "pending", "pool")

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.last = -float("inf")
        self.pending = 0

    def __call__(self, change: LimitChange) -> None:
        self.pending += 1
        if change.now - self.last < LOG_EVERY:
            return
        log.logger.info(
            log.OVERLOAD_LIMIT_CHANGED, pool=self.pool, limit=round(change.new, 2), previous=round(change.old, 2),
            changes=self.pending, p99_ms=round(change.stats.p99 * 1000, 1), samples=change.stats.samples,
            dropped=change.stats.dropped, shed=change.stats.shed,
        )
        self.last, self.pending = change.now, 0


class Overload:
    """The gates of one policy set's ``overload:`` section.

    Args:
        spec: the validated section.
        clock: time for latency samples and windows.
        previous: the engine's former instance: a pool whose configuration and classes
            did not change keeps its gate (and its learned limit) across a reload.
        on_change: also called on every limit change (metrics), after the log.
    """

    def __init__(
        self,
        spec: OverloadSpec,
        clock: Callable[[], float],
        previous: Overload | None,
        on_change: Callable[[str, LimitChange], None] | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.on_change = on_change
        self.classes = {name: i for i, name in enumerate(spec.priorities)}
        self.default = self.classes[spec.default_priority]
        self.answers = _answers(spec.retry_after)
        self.gates: dict[str, OverloadGate] = {}
        now = clock()
        for pool, config in spec.pools.items():
            old = previous.gates.get(pool) if previous is not None else None
            enforce = spec.modes[pool] == "enforce"
            if (old is not None and previous is not None and old.config.algorithm == config.algorithm
                    and previous.spec.pools.get(pool) == config and old.shares == spec.shares
                    and previous.spec.modes.get(pool) == spec.modes[pool]):
                self.gates[pool] = old
                old.on_change = self._reporter(pool)
                continue
            self.gates[pool] = OverloadGate(config, spec.shares, now, enforce=enforce, on_change=self._reporter(pool))

    def _reporter(self, pool: str) -> Callable[[LimitChange], None]:
        changes = _ChangeLog(pool)

        def report(change: LimitChange) -> None:
            try:
                changes(change)
                if self.on_change is not None:
                    self.on_change(pool, change)
            except Exception as exc:  # a failing hook must not fail the request releasing its slot
                log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=pool)

        return report

    def guard(self, route: Route, plan: Any, access: Access, priority_key: Any, raw: bool,
              ladder: tuple[Any, ...] | None = None) -> GuardedPlan:
        """``plan`` (or nothing, for a route without limits) behind its pool's gate; with
        ``scale_rates:``, ``ladder`` holds the route's plans per scale factor (the first
        is ``plan``), see :mod:`ratelimit_mw.overload.scaling`."""
        if route.priority is not None:
            fixed = self.classes[route.priority]
            classify: Callable[[Any], int] = lambda source: fixed  # noqa: E731
        elif priority_key is not None:
            classify = self._classifier(priority_key.bind(access))
        else:
            default = self.default
            classify = lambda source: default  # noqa: E731
        gate = self.gates[route.pool or DEFAULT_POOL]
        return GuardedPlan(self, route, plan, gate, classify, Shed(self.answers, raw), ladder)

    def _classifier(self, read: Callable[[Any], str]) -> Callable[[Any], int]:
        """The class named by the key's value (the part after its last ``:``); an
        unknown or missing value is the default class."""
        classes, default = self.classes, self.default
        known: dict[str, int] = {}

        def classify(source: Any) -> int:
            key = read(source)
            cls = known.get(key)
            if cls is None:
                cls = classes.get(key.rpartition(":")[2].strip().lower(), default)
                if len(known) < 64:  # values are client-chosen: remember a bounded few
                    known[key] = cls
            return cls

        return classify


class GuardedPlan:
    """A route's plan behind its pool's gate: classify, acquire, then the route's check.

    A request the route's own limits reject gives its slot back at once (no sample:
    the app never ran); an admitted one carries the slot in ``verdict.slot``. With a
    ``ladder`` (``scale_rates:``), the route's plan is the one of the pool's current
    scale factor.
    """

    __slots__ = ("clock", "classify", "gate", "ladder", "maximum", "overload", "plan", "route", "shed")

    def __init__(self, overload: Overload, route: Route, plan: Any, gate: OverloadGate,
                 classify: Callable[[Any], int], shed: Shed, ladder: tuple[Any, ...] | None = None) -> None:
        self.overload = overload
        self.route = route
        self.plan = plan
        self.gate = gate
        self.classify = classify
        self.shed = shed
        self.clock = overload.clock
        self.ladder = ladder if ladder is not None and len(ladder) > 1 else None
        self.maximum = gate.config.max

    def _plan(self) -> Any:
        ladder = self.ladder
        return self.plan if ladder is None else ladder[level(self.gate.limit, self.maximum, len(ladder))]

    def _after(self, slot: Slot, verdict: Verdict | None) -> Verdict | None:
        if verdict is None:  # a CORS preflight the route does not count
            slot.release(False, False)
            return None
        if verdict.reject:
            slot.release(False, False)
            return verdict
        held: Any = slot if verdict[5] is None else Slots(slot, verdict[5])  # the route's in-flight lease too
        return _new(Verdict, (verdict[0], verdict[1], verdict[2], verdict[3], verdict[4], held))  # type: ignore[no-any-return]

    def decide(self, source: Any) -> Verdict | None:
        ticket = self.gate.acquire(self.classify(source), self.clock())
        if ticket is None:
            return Verdict(self.route, SHED_DECISION, [], True, 0.0, self.shed)
        slot = Slot(self.gate, ticket, self.clock)
        plan = self._plan()
        if plan is None:
            return Verdict(self.route, PASS_DECISION, [], False, 0.0, slot)
        try:
            verdict = plan.decide(source)
        except BaseException:
            slot.release(False, False)
            raise
        return self._after(slot, verdict)

    async def adecide(self, source: Any) -> Verdict | None:
        ticket = self.gate.acquire(self.classify(source), self.clock())
        if ticket is None:
            return Verdict(self.route, SHED_DECISION, [], True, 0.0, self.shed)
        slot = Slot(self.gate, ticket, self.clock)
        plan = self._plan()
        if plan is None:
            return Verdict(self.route, PASS_DECISION, [], False, 0.0, slot)
        try:
            verdict = await plan.adecide(source)
        except BaseException:
            slot.release(False, False)
            raise
        return self._after(slot, verdict)


async def call_asgi(app: Any, scope: Scope, receive: Receive, send: Send, slot: Slot) -> None:
    """Run the app, releasing ``slot`` on the last body message (a sample), on client
    disconnect, on an exception or cancellation (no sample), or when the app returns."""
    status = 0

    def send_releasing(message: Message) -> Awaitable[None]:
        nonlocal status
        kind = message["type"]
        if kind == "http.response.start":
            status = message.get("status", 0)
        elif kind == "http.response.body" and not message.get("more_body", False):
            slot.release(status in OVERLOADED_STATUSES)
        return send(message)

    async def receive_releasing() -> Message:
        message = await receive()
        if message["type"] == "http.disconnect":
            slot.release(False, False)
        return message

    try:
        await app(scope, receive_releasing, send_releasing)
    finally:  # an exception, a cancellation, or an app that never finished its body: no sample
        slot.release(False, False)


class _Releasing:
    """The app's response iterable, releasing the slot when the server closes it."""

    __slots__ = ("result", "slot", "status")

    def __init__(self, result: Iterable[bytes], slot: Slot, status: list[int]) -> None:
        self.result = result
        self.slot = slot
        self.status = status

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.slot.release(self.status[0] in OVERLOADED_STATUSES)


def call_wsgi(app: Any, environ: dict[str, Any], start_response: Callable[..., Any], slot: Slot) -> Iterable[bytes]:
    """Run the app; ``slot`` is released when the response iterable is closed (a
    sample), or at once if the app raises."""
    status = [0]

    def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        try:
            status[0] = int(status_line[:3])
        except ValueError:
            status[0] = 0
        if exc_info is not None:
            return start_response(status_line, headers, exc_info)
        return start_response(status_line, headers)

    try:
        result = app(environ, start)
    except BaseException:
        slot.release(False, False)
        raise
    return _Releasing(result, slot, status)
