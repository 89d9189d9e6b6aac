"""The observer interface the engine and limiter report to (metrics live behind it).

Keeping this a tiny protocol keeps ``prometheus_client`` out of the core: the
``ratelimit_mw.metrics`` module implements it, and ``None`` means no metrics and no
per-request cost beyond one ``is None`` test.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["OUTCOMES", "Observer"]

#: Decision outcomes, the ``outcome`` label of the decisions counter.
OUTCOMES = ("allowed", "limited", "shadow", "exempt", "degraded")


class Observer(Protocol):
    """Receives events; every method must be cheap and must never raise."""

    def decision(self, route: str, policy: str, outcome: str, seconds: float) -> None:
        """One request decided: route template, policy name, outcome, limiter latency."""

    def backend_call(self, seconds: float) -> None:
        """One backend round trip completed (latency histogram)."""

    def backend_error(self, kind: str) -> None:
        """A backend call failed; ``kind`` is the exception class name."""

    def breaker(self, state: str) -> None:
        """The circuit breaker changed state: ``closed``, ``open`` or ``half_open``."""

    def fallback(self, active: bool) -> None:
        """The in-memory fallback started (True) or stopped (False) answering."""
