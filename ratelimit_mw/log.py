"""Structured log events (structlog), named in one place.

The library never configures structlog or logging: it logs through a lazy
module-level logger, and the application decides rendering (JSON or console),
handlers and levels.

Where an event goes:

- the application configured structlog (``structlog.is_configured()``): through
  structlog, as any other event of the app, with the event name and fields;
- otherwise: to the standard :mod:`logging` module, logger ``ratelimit_mw``, so it
  lands in the application's own handlers (until it configures logging, Python's
  last-resort handler prints warnings and errors to stderr, as for any library's
  logger). The message reads
  ``event key=value ...``; the record also carries ``record.event`` (the event
  name) and ``record.fields`` (a dict of the fields) for structured handlers.

Client keys appear only as their keyed hash. Denials are aggregated per
(route, key hash) over a window (``DenialLog``) so a flood of 429s costs a
bounded number of lines; counters (metrics) stay exact.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = [
    "BACKEND_ERROR",
    "BACKEND_PATH",
    "BREAKER_CHANGED",
    "BREAKER_CLOSED",
    "BREAKER_OPENED",
    "DenialLog",
    "INTERNAL_ERROR",
    "KEY_ERROR",
    "EXEMPT_ERROR",
    "PLAN_ERROR",
    "PLAN_UNKNOWN",
    "USER_KEY_UNAVAILABLE",
    "OUTBOUND_PAUSED",
    "OVERLOAD_LIMIT_CHANGED",
    "LEASE_ERROR",
    "POLICIES_RELOADED",
    "POLICIES_RELOAD_FAILED",
    "LOGGER_NAME",
    "RATE_LIMITED",
    "EventLogger",
    "logger",
]

RATE_LIMITED = "rate_limited"
BACKEND_ERROR = "backend_error"
#: Which path a Redis backend's commands take (fast, or redis-py's public API), once.
BACKEND_PATH = "backend_path"
BREAKER_CHANGED = "breaker_state_changed"
BREAKER_OPENED = "breaker_opened"
BREAKER_CLOSED = "breaker_closed"
INTERNAL_ERROR = "internal_error"
#: A key function raised; the request was limited by the next key or the shared bucket.
KEY_ERROR = "key_error"
#: A route's ``plan:`` resolver raised; the request was limited by the default plan.
PLAN_ERROR = "plan_error"
#: A plan resolver answered a plan the policies do not define (once per value and route).
PLAN_UNKNOWN = "plan_unknown"
#: A route's ``exempt_when`` raised; the request was not exempted.
EXEMPT_ERROR = "exempt_error"
#: A route keys by ``user`` on a protocol that never knows users: the next key decides.
USER_KEY_UNAVAILABLE = "user_key_unavailable"
POLICIES_RELOADED = "policies_reloaded"
POLICIES_RELOAD_FAILED = "policies_reload_failed"
#: A remote API asked an outbound rule to pause (Retry-After, RateLimit, X-RateLimit-*).
OUTBOUND_PAUSED = "outbound_paused"
#: An overload pool's adaptive limit changed (debounced: one line sums up the changes since the last).
OVERLOAD_LIMIT_CHANGED = "overload_limit_changed"
#: A batch of in-flight lease renewals or releases failed; the leases run out by themselves.
LEASE_ERROR = "lease_error"

#: Name of the logger, for structlog and for the standard ``logging`` module alike.
LOGGER_NAME = "ratelimit_mw"


def _render(value: object) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' "=\\') or any(ch < " " for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class EventLogger:
    """structlog when the application configured it, else the standard ``logging`` module.

    The choice is made per event (``structlog.is_configured()`` is one attribute
    read), so an application that configures structlog after importing this
    package still gets every event through structlog.

    Args:
        name: the logger name on both sides.
    """

    def __init__(self, name: str = LOGGER_NAME) -> None:
        self.name = name
        self._structlog: Any = structlog.get_logger(name)
        self._stdlib = logging.getLogger(name)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if structlog.is_configured():
            getattr(self._structlog, method)(event, **fields)
            return
        std = self._stdlib
        if not std.isEnabledFor(level):
            return
        message = " ".join([event, *(f"{key}={_render(value)}" for key, value in fields.items())])
        std.log(level, "%s", message, exc_info=exc_info, extra={"event": event, "fields": fields}, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled (its traceback)."""
        self._emit(logging.ERROR, "exception", event, fields, exc_info=True)


logger = EventLogger()


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
