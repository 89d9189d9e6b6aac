"""Target 3: WSGI (Flask, memory backend): ours and flask-limiter vs bare Flask.

Two harnesses, both reported against the 90% bound:

* Flask's test client, as the issue states the target: each request goes through
  ``app.test_client().get(...)``, which builds the environ and wraps the response
  the way Flask's own test suites (and most users' load checks) do.
* Direct calls, stricter: each request is one call of the app with a fresh copy
  of a prepared environ (as a WSGI server builds it), and the response iterable is
  consumed and closed. Without the test client's own work, the middleware's cost
  is a larger share of each request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.apps import flask_app
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult, interleave

NAME = "wsgi"
TITLE = "WSGI (Flask, memory backend): direct calls and test client, requests/s (target 3)"


def _environ(api_key: str = "client-1") -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path="/resource", method="GET", headers=[("X-API-Key", api_key)],
                             environ_base={"REMOTE_ADDR": "127.0.0.1"})
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _call(app: Callable[..., Any], template: dict[str, Any]) -> str:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return None

    body = app(template.copy(), start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0]


def _requests(app: Callable[..., Any], template: dict[str, Any], count: int) -> float:
    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    start = time.perf_counter()
    for _ in range(count):
        body = app(template.copy(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return time.perf_counter() - start


def _client_requests(app: Any, count: int) -> float:
    get = app.test_client().get
    headers = {"X-API-Key": "client-1"}
    start = time.perf_counter()
    for _ in range(count):
        get("/resource", headers=headers).close()
    return time.perf_counter() - start


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(5_000, 200)
    template = _environ()
    variants = [
        ("bare Flask", "baseline", "bare", False, "200"),
        ("ours, allowed", "ours", "ours", False, "200"),
        ("ours, 429", "ours", "ours", True, "429"),
        ("flask-limiter, allowed", "peer", "flask-limiter", False, "200"),
        ("flask-limiter, 429", "peer", "flask-limiter", True, "429"),
    ]
    subjects = []
    for label, kind, variant, deny, status in variants:
        if variant == "flask-limiter" and (reason := missing_peer("flask-limiter")):
            result.notes.append(f"{label}: skipped, {reason}")
            continue
        app = flask_app(variant, deny=deny)
        _call(app, template)
        got = _call(app, template)
        if not got.startswith(status):
            raise RuntimeError(f"{label}: expected status {status}, got {got}")
        _requests(app, template, max(count // 10, 10))  # warm-up
        sample = result.sample(label, "req/s", kind=kind)
        subjects.append((sample, lambda app=app: count / _requests(app, template, count)))
    client_count = max(count // 4, 50)
    for label, kind, variant in (("bare Flask (test client)", "baseline", "bare"),
                                 ("ours, allowed (test client)", "ours", "ours")):
        app = flask_app(variant)
        response = app.test_client().get("/resource", headers={"X-API-Key": "client-1"})
        if response.status_code != 200 or (variant == "ours") != ("X-RateLimit-Remaining" in response.headers):
            raise RuntimeError(f"{label}: unexpected response {response.status} {dict(response.headers)}")
        _client_requests(app, max(client_count // 10, 10))  # warm-up
        sample = result.sample(label, "req/s", kind=kind)
        subjects.append((sample, lambda app=app: client_count / _client_requests(app, client_count)))
    interleave(subjects, ctx.repeats)
    result.add_ratio_target(3, "WSGI allowed path vs bare Flask, Flask test client (the issue's harness)",
                            "ours, allowed (test client)", "bare Flask (test client)", 0.90, ">=")
    result.add_ratio_target(3, "WSGI allowed path vs bare Flask, direct WSGI calls (stricter)",
                            "ours, allowed", "bare Flask", 0.90, ">=")
    if result.has("flask-limiter, allowed"):
        result.notes.append("flask-limiter sends no rate-limit headers by default; ours sends 5 (x-ratelimit + ietf)")
    return result
