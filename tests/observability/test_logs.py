"""Structured log events: bounded under floods, no raw keys, one line per breaker transition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.engine import Engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.metrics import RateLimitMetrics
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock, FakeRequest
from tests.observability.helpers import POLICIES, FlakyBackend

SECRET = "SECRET-abc"


def _engine(clock: FakeClock, backend: object = "memory://", **options: object) -> Engine:
    limiter = Limiter(backend, clock=clock, **options)
    return Engine(load_policies(POLICIES), limiter, wall_clock=clock)


def test_a_flood_of_denials_logs_a_bounded_number_of_lines_but_counts_all() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    engine = RateLimitMetrics(registry).attach(_engine(clock))
    request = FakeRequest("GET", "/resource", {"x-api-key": SECRET})
    with capture_logs() as events:
        for _ in range(5):
            assert not engine.decide(request).reject
        for _ in range(1000):
            assert engine.decide(request).reject
    denials = [e for e in events if e["event"] == log.RATE_LIMITED]
    assert len(denials) == 1
    assert denials[0]["route"] == "GET /resource" and denials[0]["suppressed"] == 0
    limited = registry.get_sample_value(
        "ratelimit_decisions_total", {"route": "GET /resource", "policy": "free", "outcome": "limited"}
    )
    assert limited == 1000

    clock.advance(log.DenialLog().window)  # next window: one line that reports the suppressed ones
    with capture_logs() as events:
        assert engine.decide(request).reject
    assert [(e["event"], e["suppressed"]) for e in events] == [(log.RATE_LIMITED, 999)]


def test_no_raw_key_reaches_any_log_event() -> None:
    clock = FakeClock()
    backend = FlakyBackend()
    engine = _engine(clock, backend, breaker_threshold=2)
    request = FakeRequest("GET", "/resource", {"x-api-key": SECRET})
    with capture_logs() as events:
        for _ in range(8):  # allowed, then denied (logged)
            engine.decide(request)
        backend.failing = True
        other = FakeRequest("GET", "/resource", {"x-api-key": SECRET + "-2"})  # not in the 429 cache
        for _ in range(4):  # backend errors, the breaker opens, degraded answers
            engine.decide(other)
        engine.limiter.check(SECRET, "1/second")
    names = {e["event"] for e in events}
    assert {log.RATE_LIMITED, log.BACKEND_ERROR, log.BREAKER_OPENED} <= names
    denial = next(e for e in events if e["event"] == log.RATE_LIMITED)
    assert denial["key"] == engine.limiter.hash_key(f"header:x-api-key:{SECRET}")
    for event in events:
        assert SECRET not in repr(event)


def test_breaker_transitions_are_logged_once_each() -> None:
    clock = FakeClock()
    backend = FlakyBackend()
    limiter = Limiter(backend, clock=clock, breaker_threshold=2, breaker_recovery=5.0)
    with capture_logs() as events:
        backend.failing = True
        for _ in range(50):  # 2 failures open the breaker; the other 48 skip the backend
            assert limiter.check("k", "10/second").degraded
        clock.advance(5.0)
        backend.failing = False
        for _ in range(50):
            assert not limiter.check("k", "10/second").degraded
    transitions = [
        (e["event"], e["old"], e["new"])
        for e in events
        if e["event"] in (log.BREAKER_OPENED, log.BREAKER_CLOSED, log.BREAKER_CHANGED)
    ]
    assert transitions == [
        (log.BREAKER_OPENED, "closed", "open"),
        (log.BREAKER_CHANGED, "open", "half_open"),
        (log.BREAKER_CLOSED, "half_open", "closed"),
    ]
    # errors are logged per failed backend call, never per request while the breaker is open
    assert sum(e["event"] == log.BACKEND_ERROR for e in events) == 2


def test_a_failed_probe_reopens_with_one_more_line() -> None:
    clock = FakeClock()
    backend = FlakyBackend()
    backend.failing = True
    limiter = Limiter(backend, clock=clock, breaker_threshold=1, breaker_recovery=1.0)
    with capture_logs() as events:
        for _ in range(3):
            for _ in range(10):
                limiter.check("k", "10/second")
            clock.advance(1.0)
    opened = [e for e in events if e["event"] == log.BREAKER_OPENED]
    assert [(e["old"], e["new"]) for e in opened] == [
        ("closed", "open"),
        ("half_open", "open"),
        ("half_open", "open"),
    ]
