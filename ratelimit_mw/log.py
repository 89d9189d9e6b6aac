"""Structured log events (structlog), named in one place.

The library never configures structlog: it logs through a lazy module-level
logger, and the application decides rendering (JSON or console) and levels.
Client keys appear only as their keyed hash. Denials are aggregated per
(route, key hash) over ``RATE_LIMITED_WINDOW`` seconds so a flood of 429s costs a
bounded number of lines; counters (metrics) stay exact.
"""

from __future__ import annotations

import structlog

__all__ = [
    "BACKEND_ERROR",
    "BREAKER_CHANGED",
    "BREAKER_CLOSED",
    "BREAKER_OPENED",
    "DenialLog",
    "INTERNAL_ERROR",
    "OUTBOUND_PAUSED",
    "POLICIES_RELOADED",
    "POLICIES_RELOAD_FAILED",
    "RATE_LIMITED",
    "logger",
]

RATE_LIMITED = "rate_limited"
BACKEND_ERROR = "backend_error"
BREAKER_CHANGED = "breaker_state_changed"
BREAKER_OPENED = "breaker_opened"
BREAKER_CLOSED = "breaker_closed"
INTERNAL_ERROR = "internal_error"
POLICIES_RELOADED = "policies_reloaded"
POLICIES_RELOAD_FAILED = "policies_reload_failed"
#: A remote API asked an outbound rule to pause (Retry-After, RateLimit, X-RateLimit-*).
OUTBOUND_PAUSED = "outbound_paused"

logger = structlog.get_logger("ratelimit_mw")


class DenialLog:
    """Logs denials without flooding: one line per (route, key hash) per window.

    The first denial in a window is logged at once; the ones after it are counted
    and reported as ``suppressed`` on the next line for that pair. Bounded: the
    table is cleared when it holds ``max_entries`` pairs.
    """

    def __init__(self, window: float = 10.0, max_entries: int = 10_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], list[float]] = {}

    def denied(self, now: float, route: str, key_hash: str, **fields: object) -> None:
        """Record one denial; log it unless its pair was logged within ``window``."""
        pair = (route, key_hash)
        entry = self._seen.get(pair)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return
        suppressed = int(entry[1]) if entry is not None else 0
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        self._seen[pair] = [now, 0]
        logger.info(RATE_LIMITED, route=route, key=key_hash, suppressed=suppressed, **fields)
