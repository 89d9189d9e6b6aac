"""What a check answers when its backend cannot decide: the failure policy.

``allow`` admits and ``deny`` refuses (for the breaker's recovery time), both marked
``degraded``; ``memory`` decides on a per-process memory backend. A circuit breaker
stops calling a failing backend, so an outage adds no latency (see docs/failures.md).
"""

from __future__ import annotations

from collections.abc import Callable

from ratelimit_mw import log
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.breaker import CircuitBreaker
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.lease import LeaseStats, leased
from ratelimit_mw.core.quota import Quota
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.observe import Observer
from ratelimit_mw.policy.model import FAILURE_MODES

__all__ = ["FailurePolicy", "failure_mode"]


def failure_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`FAILURE_MODES`; else a :class:`ConfigError`."""
    if mode not in FAILURE_MODES:
        raise ConfigError(f"on_backend_error must be one of {', '.join(FAILURE_MODES)}, got {mode!r}")
    return mode


class FailurePolicy:
    """A limiter's answers for checks its backend could not decide, and its breaker.

    Args:
        mode: the default failure mode (a check may name its own).
        breaker: the circuit breaker's ``(threshold, recovery_time)``.
        clock: the limiter's clock (the memory fallback decides at its time).
        breaker_clock: the breaker's clock (monotonic, unless a clock was injected).
        lease_stats: where the fallback's in-flight leases are counted.
        observer: the limiter's observer of the moment (metrics may attach later).
        backend_name: named in the breaker's log lines.

    Attributes:
        fallback: the ``memory`` mode's backend, made on its first use.
    """

    def __init__(self, mode: str, breaker: tuple[int, float], clock: Callable[[], float],
                 breaker_clock: Callable[[], float], lease_stats: LeaseStats,
                 observer: Callable[[], Observer | None], backend_name: str) -> None:
        self.mode = failure_mode(mode)
        self.fallback: MemoryBackend | None = None
        self._clock, self._lease_stats, self._observer, self._backend = clock, lease_stats, observer, backend_name
        self.breaker = CircuitBreaker(threshold=breaker[0], recovery_time=breaker[1], clock=breaker_clock,
                                      on_change=self._breaker_changed)

    def _breaker_changed(self, old: str, new: str) -> None:
        event = log.BREAKER_OPENED if new == "open" else log.BREAKER_CLOSED if new == "closed" else log.BREAKER_CHANGED
        log.logger.warning(event, old=old, new=new, backend=self._backend)
        observer = self._observer()
        if observer is not None:
            observer.breaker(new)
            if self.mode == "memory":
                observer.fallback(new != "closed")

    def degraded(self, quota: Quota, key: str, cost: int, mode: str, exc: BaseException | None) -> Decision:
        """The answer of ``mode`` for ``key``; ``exc``: the backend's error (``None``:
        the breaker is open), logged and counted."""
        if exc is not None:
            log.logger.error(
                log.BACKEND_ERROR, error=type(exc).__name__, detail=str(exc)[:200], mode=mode, scope=quota.scope,
            )
            observer = self._observer()
            if observer is not None:
                observer.backend_error(type(exc).__name__)
        if mode == "memory":
            if self.fallback is None:
                self.fallback = MemoryBackend()
            if quota.in_flight:  # the fallback's counter is given back like the backend's lease
                decision = self.fallback.bind_leased(quota, self._clock, self._lease_stats)(key, cost)
                marked = decision._replace(degraded=True)
                return marked if decision.lease is None else leased(marked, decision.lease)
            return self.fallback.bind(quota, self._clock)(key, cost)._replace(degraded=True)
        rule = quota.rules[0]
        if mode == "deny":
            wait = max(self.breaker.recovery_time, 1.0)
            return Decision(False, rule.capacity, 0, wait, wait, rule, 0.0, (), True)
        return Decision(True, rule.capacity, rule.capacity, 0.0, 0.0, rule, 0.0, (), True)
