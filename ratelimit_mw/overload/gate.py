"""The admission gate of one pool: one in-flight counter, one comparison per request.

A request of class ``c`` is admitted while the pool's in-flight count is below
``share[c] * limit``: a class may fill only its share of the limit, so lower classes
are always shed first, and the highest class (share 1.0) keeps the room above every
other class's share for itself. The limit comes from a controller
(:mod:`ratelimit_mw.overload.controllers`) fed with the latency of the requests this
gate admitted, one window at a time.

The gate never reads a clock: ``acquire`` and ``release`` take ``now``, so the
middleware passes its clock and the simulator its virtual time, and both run this
same code. A lock makes acquire/release atomic across WSGI threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple

from ratelimit_mw.overload.controllers import ControllerConfig, ControllerState, WindowStats, initial_state, update

__all__ = ["LimitChange", "OverloadGate", "Ticket"]

#: A window holding this many samples closes early (bounded memory under any load).
MAX_SAMPLES = 20_000
_new = tuple.__new__
#: Share of a window's samples that must fail before failures alone mean overload.
DROP_SHARE = 0.01


class Ticket(NamedTuple):
    """An admitted request's slot: give it back to :meth:`OverloadGate.release`."""

    started: float
    generation: int
    cls: int


class LimitChange(NamedTuple):
    """A limit change, for the gate's ``on_change`` hook (metrics and the debounced log)."""

    old: float
    new: float
    stats: WindowStats
    now: float


class OverloadGate:
    """One pool's in-flight counter, class ceilings and controller.

    Args:
        config: the controller's configuration.
        shares: the share of the limit each class may fill, by class index.
        now: the time the gate starts (the warm-up counts from here).
        enforce: ``False`` (shadow mode) admits everything and only counts would-be sheds.
        on_change: called (outside the lock) after each limit change.
    """

    def __init__(
        self,
        config: ControllerConfig,
        shares: Sequence[float],
        now: float,
        *,
        enforce: bool = True,
        on_change: Callable[[LimitChange], None] | None = None,
    ) -> None:
        if not shares or any(not 0 < s <= 1 for s in shares):
            raise ValueError("every share must lie in (0, 1]")
        # The limit grows only when the class with the smallest share came near its
        # ceiling: so an app at low load keeps room for every class.
        self.config = config = replace(config, probe_use=config.probe_use * min(shares))
        self.shares = tuple(float(s) for s in shares)
        self.state: ControllerState = initial_state(config, now)
        self.on_change = on_change
        #: Sheds happen from this time on (after the warm-up; never in shadow mode).
        self.enforce_from = now + config.warmup if enforce else math.inf
        self.inflight = 0
        self.by_class = [0] * len(shares)
        #: Requests refused, by class; ``observed``: those that would have been (shadow, warm-up).
        self.shed = [0] * len(shares)
        self.observed = [0] * len(shares)
        #: Limit changes so far: (increases, decreases).
        self.changes = [0, 0]
        self.generation = 0
        self._ceilings = [s * self.state.limit for s in self.shares]
        self._lock = threading.Lock()
        self._window_start = now
        self._window_end = now + config.window
        self._samples: list[float] = []
        self._dropped = 0
        self._shed = 0
        self._peak = 0

    @property
    def limit(self) -> float:
        """The current limit."""
        return self.state.limit

    def acquire(self, cls: int, now: float) -> Ticket | None:
        """A slot for a request of class ``cls``, or ``None``: shed it."""
        with self._lock:
            inflight = self.inflight
            if inflight >= self._ceilings[cls]:
                self._shed += 1
                if now >= self.enforce_from:
                    self.shed[cls] += 1
                    return None
                self.observed[cls] += 1
            self.inflight = inflight = inflight + 1
            self.by_class[cls] += 1
            if inflight > self._peak:
                self._peak = inflight
            return _new(Ticket, (now, self.generation, cls))  # type: ignore[no-any-return]

    def release(self, ticket: Ticket, now: float, dropped: bool = False, sample: bool = True) -> None:
        """Give the slot back; its latency is a sample unless the limit changed since it started.

        Args:
            ticket: what :meth:`acquire` returned.
            now: the time the response ended.
            dropped: the request failed in a way that means overload (timed out, 503).
            sample: ``False`` when its latency says nothing about the app (answered
                by the limiter itself, client gone, app raised).
        """
        started, generation, cls = ticket
        with self._lock:
            self.inflight -= 1
            self.by_class[cls] -= 1
            if sample and generation == self.generation:
                samples = self._samples
                samples.append(now - started)
                if dropped:
                    self._dropped += 1
                if len(samples) < MAX_SAMPLES and now < self._window_end:
                    return
            elif now < self._window_end:
                return
            change = self._close(now)
        if change is not None and self.on_change is not None:
            self.on_change(change)

    def _close(self, now: float) -> LimitChange | None:
        """Close the window (when it has enough to say) and run the controller."""
        samples, config = self._samples, self.config
        count = len(samples)
        dropped = self._dropped
        failing = dropped > 0 and dropped >= count * DROP_SHARE
        if count < config.min_samples and not failing and now - self._window_start < config.window * 10:
            return None  # too few to judge yet: the window runs on
        samples.sort()
        stats = WindowStats(
            count,
            samples[min(count - 1, int(count * 0.99))] if count else 0.0,
            samples[count // 2] if count else 0.0,
            dropped if failing else 0,
            self._peak,
            self._shed,
        )
        self._samples, self._dropped, self._shed, self._peak = [], 0, 0, self.inflight
        self._window_start, self._window_end = now, now + config.window
        old = self.state.limit
        if not failing and count < config.min_samples:
            stats = stats._replace(samples=0)  # the window ran long and still says nothing
        self.state = update(config, self.state, stats, now)
        new = self.state.limit
        if new == old:
            return None
        self.generation += 1
        self.changes[0 if new > old else 1] += 1
        self._ceilings = [s * new for s in self.shares]
        return LimitChange(old, new, stats, now)
