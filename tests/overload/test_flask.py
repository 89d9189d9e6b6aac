"""Overload protection through the Flask extension: the slot is given back when the
response closes (streamed or not), or at teardown when the view raised; a shed is 503."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Flask, Response, stream_with_context
from werkzeug.exceptions import ServiceUnavailable

from ratelimit_mw.flask import EXTENSION, Overloaded, RateLimiter

POLICIES = """
version: 1
overload:
  algorithm: fixed
  initial: 1
  min: 1
  max: 1
routes:
  - match: "/**"
    priority: critical
"""


def make_app() -> tuple[Flask, RateLimiter]:
    limiter = RateLimiter()
    app = Flask("overload_flask")
    app.config.update(RATELIMIT_POLICIES=POLICIES)

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failure")

    limiter.init_app(app)
    return app, limiter


def inflight(app: Flask) -> int:
    overload = app.extensions[EXTENSION].engine.overload
    assert overload is not None
    return overload.gates["default"].inflight  # type: ignore[no-any-return]


def test_flask_releases_on_close_and_at_teardown_and_sheds_with_503() -> None:
    app, _ = make_app()
    client = app.test_client()
    response = client.get("/ok")
    assert response.status_code == 200
    assert inflight(app) == 1  # werkzeug's test client closes the body when told, as a server does at the end
    response.close()
    assert inflight(app) == 0
    streamed = client.get("/stream", buffered=False)
    assert inflight(app) == 1  # held while the body is not read and closed
    shed = client.get("/ok")
    shed.close()
    assert shed.status_code == 503
    assert json.loads(shed.data)["type"].endswith("#temporary-reduced-capacity")
    assert shed.headers["Cache-Control"] == "no-store" and int(shed.headers["Retry-After"]) >= 1
    streamed.close()
    assert inflight(app) == 0
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failed = client.get("/boom")
    failed.close()
    assert failed.status_code == 500
    assert inflight(app) == 0


def test_a_shed_is_a_503_exception_that_an_errorhandler_429_does_not_catch() -> None:
    app, _ = make_app()
    caught: list[str] = []

    @app.errorhandler(429)
    def too_many(exc: Exception) -> tuple[str, int]:
        caught.append("429")
        return "slow down", 429

    @app.errorhandler(503)
    def unavailable(exc: Exception) -> tuple[str, int, dict[str, str]]:
        assert isinstance(exc, Overloaded) and isinstance(exc, ServiceUnavailable)
        assert not exc.verdict.decision.allowed
        caught.append("503")
        return "overloaded", 503, {"Retry-After": "1"}

    client = app.test_client()
    held = client.get("/stream", buffered=False)  # the only slot
    shed = client.get("/ok")
    shed.close()
    held.close()
    assert caught == ["503"]
    assert shed.status_code == 503 and shed.data == b"overloaded"
    assert inflight(app) == 0


def test_a_shed_without_a_handler_keeps_the_problem_answer() -> None:
    app, _ = make_app()
    client = app.test_client()
    held = client.get("/stream", buffered=False)
    shed = client.get("/ok")
    shed.close()
    held.close()
    assert shed.status_code == 503
    assert shed.headers["Content-Type"].startswith("application/problem+json")
