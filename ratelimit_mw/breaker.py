"""A small circuit breaker so a backend outage adds no per-request latency.

closed --(``threshold`` consecutive failures)--> open --(``recovery_time``)--> half-open
half-open lets one probe through: success closes, failure re-opens.
While open, callers skip the backend and apply their failure policy at once.
State changes are reported once each through ``on_change`` (logs, gauge).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with a single half-open probe.

    Args:
        threshold: consecutive failures that open the breaker.
        recovery_time: seconds the breaker stays open before a probe.
        clock: monotonic time source (injectable for exact tests).
        on_change: called with ``(old_state, new_state)`` on every transition.
    """

    def __init__(
        self,
        *,
        threshold: int = 3,
        recovery_time: float = 2.0,
        clock: Callable[[], float],
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.recovery_time = recovery_time
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probing = False

    def _set(self, state: str) -> None:
        old, self.state = self.state, state
        if old != state and self._on_change is not None:
            self._on_change(old, state)

    def allow(self) -> bool:
        """May the caller try the backend now?"""
        if self.state == CLOSED:
            return True
        with self._lock:
            if self.state == OPEN and self._clock() - self._opened_at >= self.recovery_time:
                self._set(HALF_OPEN)
                self._probing = False
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        """The backend answered."""
        if self.state == CLOSED and not self.failures:
            return
        with self._lock:
            self.failures = 0
            self._probing = False
            self._set(CLOSED)

    def failure(self) -> None:
        """The backend failed (error or timeout)."""
        with self._lock:
            self.failures += 1
            self._probing = False
            if self.state == HALF_OPEN or self.failures >= self.threshold:
                self._opened_at = self._clock()
                self._set(OPEN)
