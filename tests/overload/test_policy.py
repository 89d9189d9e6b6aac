"""The overload: section: validation with locations, reloads, explain, threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ratelimit_mw import WSGIRateLimitMiddleware
from ratelimit_mw.errors import PolicyError
from ratelimit_mw.policy.loader import load_policies

BASE = """version: 1
overload:
  algorithm: aimd
  initial: 20
  min: 2
  max: 200
  latency_target: 250ms
  pools:
    reports: {max: 50}
routes:
  - match: /a
    priority: critical
  - match: /b
    pool: reports
    limits: ["5/second"]
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        pytest.param("algorithm: aimd", "algorithm: vegas", 3, "overload.algorithm", "expected one of", id="algorithm"),
        pytest.param("min: 2", "min: 500", 6, "overload.max", "below min", id="min-above-max"),
        pytest.param("latency_target: 250ms", "latency_target: soon", 7, "overload.latency_target", "invalid",
                     id="latency-target"),
        pytest.param("latency_target: 250ms", "latency_taget: 250ms", 7, "overload.latency_taget",
                     "did you mean 'latency_target'", id="typo"),
        pytest.param("reports: {max: 50}", "reports: {max: 0}", 9, "overload.pools.reports.max", ">= 1",
                     id="pool-max"),
        pytest.param("priority: critical", "priority: urgent", 12, "routes[0].priority", "expected one of",
                     id="unknown-class"),
        pytest.param("pool: reports", "pool: report", 14, "routes[1].pool", "did you mean 'reports'",
                     id="unknown-pool"),
    ],
)
def test_errors_name_file_line_and_field(old: str, new: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policies(BASE.replace(old, new))
    error = caught.value
    assert (error.line, error.field) == (line, field)
    assert message in str(error)


def test_priority_and_pool_need_an_overload_section() -> None:
    with pytest.raises(PolicyError, match="'priority' needs an 'overload:' section"):
        load_policies("version: 1\nroutes:\n  - {match: /a, priority: critical}\n")


def test_explain_shows_pool_and_class() -> None:
    policies = load_policies(BASE)
    assert policies.explain("GET", "/a")["priority"] == "critical"
    assert policies.explain("GET", "/b")["pool"] == "reports"
    assert policies.explain("GET", "/b")["priority"] == "from default_priority"


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"x"]


def _environ(path: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}


def test_a_reload_keeps_an_unchanged_pool_and_rebuilds_a_changed_one() -> None:
    mw = WSGIRateLimitMiddleware(_app, policies=BASE, backend="memory://")
    overload = mw.engine.overload
    assert overload is not None
    default, reports = overload.gates["default"], overload.gates["reports"]
    mw.engine.set_policies(load_policies(BASE.replace("{max: 50}", "{max: 60}")))
    after = mw.engine.overload
    assert after is not None
    assert after.gates["default"] is default  # its learned limit survives the reload
    assert after.gates["reports"] is not reports and after.gates["reports"].config.max == 60
    mw.engine.set_policies(load_policies("version: 1\nroutes:\n  - {match: /a, limits: ['5/second']}\n"))
    assert mw.engine.overload is None


def test_threads_never_hold_more_slots_than_the_limit() -> None:
    """16 WSGI threads, each holding up to 3 responses open: the app never sees more
    than the limit in flight, and every slot is back at the end."""
    doc = ("version: 1\noverload: {algorithm: fixed, initial: 4, min: 1, max: 4}\n"
           "routes:\n  - {match: /a, priority: critical}\n")
    seen: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        overload = mw.engine.overload
        assert overload is not None
        seen.append(overload.gates["default"].inflight)
        start_response("200 OK", [])
        return [b"x"]

    mw = WSGIRateLimitMiddleware(app, policies=doc, backend="memory://")
    statuses: list[str] = []
    holding = threading.Barrier(16, timeout=10)

    def worker() -> None:
        for _ in range(10):  # each round: 16 threads each hold one response open at once
            result = mw(_environ("/a"), lambda status, headers, exc_info=None: statuses.append(status))
            holding.wait()
            getattr(result, "close", lambda: None)()  # a 503 is a plain list
            holding.wait()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    overload = mw.engine.overload
    assert overload is not None
    assert max(seen) <= 4
    assert statuses.count("200 OK") == len(seen) == 40  # exactly the limit, every round
    assert statuses.count("503 Service Unavailable") == 120
    assert overload.gates["default"].inflight == 0


def test_exempt_when_gives_the_slot_back_and_a_disabled_engine_guards_nothing() -> None:
    doc = {
        "version": 1,
        "overload": {"algorithm": "fixed", "initial": 1, "min": 1, "max": 1},
        "routes": [{"match": "/a", "limits": ["100/second"], "priority": "critical",
                    "exempt_when": lambda request: request.headers.get("x-staff") == "1"}],
    }
    mw = WSGIRateLimitMiddleware(_app, policies=doc, backend="memory://")
    overload = mw.engine.overload
    assert overload is not None
    staff = dict(_environ("/a"), HTTP_X_STAFF="1")
    result = mw(staff, lambda *a: None)
    assert overload.gates["default"].inflight == 0  # exempt: not held while it runs
    held = mw(_environ("/a"), lambda *a: None)
    assert overload.gates["default"].inflight == 1
    statuses: list[str] = []
    mw(_environ("/a"), lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["503 Service Unavailable"]
    held.close()
    getattr(result, "close", lambda: None)()
    mw.engine.enabled = False
    for _ in range(3):
        mw(_environ("/a"), lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses[1:] == ["200 OK"] * 3 and overload.gates["default"].inflight == 0
