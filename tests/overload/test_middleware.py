"""Overload protection through real ASGI (Starlette) and WSGI apps: sheds, classes, and
the slot released on every way a response ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware, log
from ratelimit_mw.overload import OverloadGate
from ratelimit_mw.testing import FakeClock

POLICIES = """
version: 1
overload:
  algorithm: fixed
  initial: 2
  min: 1
  max: 2
  priorities: {critical: 1.0, normal: 0.5}
  default_priority: normal
  priority_from: header:X-Priority
  mode: %(mode)s
routes:
  - match: /health
    exempt: true
  - match: /limited
    limits: ["1/minute"]
  - match: /pay
    priority: critical
  - match: "/**"
    pool: default             # no class of its own: X-Priority, else normal
"""


def policies(mode: str = "enforce") -> str:
    return POLICIES % {"mode": mode}


def gate_of(mw: Any) -> OverloadGate:
    overload = mw.engine.overload
    assert overload is not None
    return overload.gates["default"]  # type: ignore[no-any-return]


entered = [0]


def starlette_app(release: asyncio.Event) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def slow(request: Request) -> PlainTextResponse:
        entered[0] += 1
        await release.wait()
        return PlainTextResponse("done")

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("app failure")

    return Starlette(routes=[Route("/slow", slow), Route("/pay", slow), Route("/health", slow),
                             Route("/boom", boom), Route("/limited", slow)])


async def _concurrently(mw: Any, release: asyncio.Event, first: list[tuple[str, dict[str, str]]],
                        then: tuple[str, dict[str, str]]) -> tuple[list[httpx.Response], httpx.Response, int]:
    transport = httpx.ASGITransport(app=mw)
    entered[0] = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = [asyncio.create_task(client.get(path, headers=headers)) for path, headers in first]
        await _until(lambda: entered[0] >= len(first))
        inflight = gate_of(mw).inflight
        last = asyncio.create_task(client.get(then[0], headers=then[1]))
        await _until(lambda: last.done() or entered[0] > len(first))  # answered, or in the app
        release.set()
        return list(await asyncio.gather(*held)), await last, inflight


async def _until(condition: Any) -> None:
    for _ in range(10_000):  # bounded: a few scheduler turns are enough
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_a_class_past_its_share_gets_503_problem_json_and_a_higher_class_passes() -> None:
    async def main() -> None:
        release = asyncio.Event()
        mw = RateLimitMiddleware(starlette_app(release), policies=policies(), backend="memory://")
        held, shed, inflight = await _concurrently(mw, release, [("/slow", {})], ("/slow", {}))
        assert inflight == 1
        assert [r.status_code for r in held] == [200]
        assert shed.status_code == 503
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.headers["cache-control"] == "no-store"
        assert 1 <= int(shed.headers["retry-after"]) <= 5
        body = json.loads(shed.content)
        assert body["type"].endswith("#temporary-reduced-capacity")
        assert body["status"] == 503 and body["retry_after"] == int(shed.headers["retry-after"])
        assert gate_of(mw).inflight == 0
        assert gate_of(mw).shed == [0, 1]

        release.clear()  # critical, by route or by header, still fits
        held, passed, _ = await _concurrently(mw, release, [("/slow", {})], ("/pay", {}))
        assert passed.status_code == 200
        release.clear()
        held, passed, _ = await _concurrently(mw, release, [("/slow", {})], ("/slow", {"X-Priority": "critical"}))
        assert passed.status_code == 200
        assert gate_of(mw).inflight == 0

    asyncio.run(main())


def test_exempt_routes_are_not_counted_and_shadow_mode_never_sheds() -> None:
    async def main() -> None:
        release = asyncio.Event()
        mw = RateLimitMiddleware(starlette_app(release), policies=policies(), backend="memory://")
        _, answer, inflight = await _concurrently(mw, release, [("/health", {}), ("/health", {})], ("/health", {}))
        assert inflight == 0 and answer.status_code == 200
        release = asyncio.Event()
        shadow = RateLimitMiddleware(starlette_app(release), policies=policies("shadow"), backend="memory://")
        held, answer, _ = await _concurrently(shadow, release, [("/slow", {}), ("/slow", {})], ("/slow", {}))
        assert [r.status_code for r in held] == [200, 200] and answer.status_code == 200
        assert gate_of(shadow).shed == [0, 0] and gate_of(shadow).observed == [0, 2]

    asyncio.run(main())


def test_a_request_the_route_limits_reject_gives_its_slot_back() -> None:
    async def main() -> None:
        release = asyncio.Event()
        release.set()
        mw = RateLimitMiddleware(starlette_app(release), policies=policies(), backend="memory://")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as client:
            assert (await client.get("/limited")).status_code == 200
            assert (await client.get("/limited")).status_code == 429
        assert gate_of(mw).inflight == 0

    asyncio.run(main())


# -- raw ASGI: every exit path ------------------------------------------------------------


def _scope(path: str = "/slow") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 5000), "server": ("t", 80), "scheme": "http",
            "http_version": "1.1", "root_path": ""}


async def _streaming_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"a", b"b"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_asgi_releases_on_the_last_body_message_not_before() -> None:
    async def main() -> None:
        mw = RateLimitMiddleware(_streaming_app, policies=policies(), backend="memory://")
        seen: list[tuple[bool, int]] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.body":
                seen.append((message.get("more_body", False), gate_of(mw).inflight))

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        await mw(_scope(), receive, send)
        # the slot is held while the body streams, and free once the last part is sent
        assert seen == [(True, 1), (True, 1), (False, 0)]

    asyncio.run(main())


@pytest.mark.parametrize("how", ["exception", "disconnect", "cancelled", "client-gone-mid-stream"])
def test_asgi_releases_on_every_early_exit(how: str) -> None:
    async def main() -> None:
        started = asyncio.Event()
        during: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            during.append(gate_of(mw).inflight)
            started.set()
            if how == "exception":
                raise RuntimeError("app failure")
            if how == "disconnect":
                while (await receive())["type"] != "http.disconnect":
                    pass
                assert gate_of(mw).inflight == 0  # released when the disconnect arrived
                return
            if how == "cancelled":
                await asyncio.Event().wait()
            await _streaming_app(scope, receive, send)

        mw = RateLimitMiddleware(app, policies=policies(), backend="memory://")
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}])

        async def receive() -> Any:
            return next(messages)

        async def send(message: Any) -> None:
            if how == "client-gone-mid-stream" and message.get("more_body"):
                raise OSError("client went away")

        call = asyncio.create_task(mw(_scope(), receive, send))
        await started.wait()
        assert during == [1]
        if how == "cancelled":
            call.cancel()
        with pytest.raises((RuntimeError, OSError, asyncio.CancelledError)) if how != "disconnect" else _nothing():
            await call
        assert gate_of(mw).inflight == 0

    asyncio.run(main())


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- WSGI --------------------------------------------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("app failure")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    return body()


def _environ(path: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}


def test_wsgi_holds_the_slot_until_the_iterable_is_closed_even_early() -> None:
    mw = WSGIRateLimitMiddleware(_wsgi_app, policies=policies(), backend="memory://")
    statuses: list[str] = []
    result = mw(_environ("/slow"), lambda status, headers, exc_info=None: statuses.append(status))
    first = iter(result)
    assert next(first) == b"a"
    assert gate_of(mw).inflight == 1
    shed_body = b"".join(mw(_environ("/slow"), lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["200 OK", "503 Service Unavailable"]
    assert json.loads(shed_body)["type"].endswith("#temporary-reduced-capacity")
    result.close()  # closed before the body was read to the end
    assert gate_of(mw).inflight == 0


def test_wsgi_releases_when_the_app_raises_and_after_a_full_response() -> None:
    mw = WSGIRateLimitMiddleware(_wsgi_app, policies=policies(), backend="memory://")
    with pytest.raises(RuntimeError):
        mw(_environ("/boom"), lambda *a: None)
    assert gate_of(mw).inflight == 0
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        assert client.get("/slow").content == b"ab"
    assert gate_of(mw).inflight == 0


def test_latency_is_sampled_at_response_end_and_a_limit_change_is_logged_once() -> None:
    """Slow responses (by the injected clock) cut an aimd limit; the change is one log line."""
    clock = FakeClock(1000.0)
    doc = """
version: 1
overload: {initial: 100, min: 2, max: 100, latency_target: 100ms, window: 1s}
routes:
  - {match: "/**", priority: normal}
"""
    held: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"x"]

    mw = WSGIRateLimitMiddleware(app, policies=doc, backend="memory://", clock=clock)
    with capture_logs() as events:
        for _ in range(60):
            held.append(mw(_environ("/x"), lambda *a: None))
        clock.advance(0.5)  # every response took 500 ms: five times the target
        for result in held:
            result.close()
        clock.advance(1.0)
        mw(_environ("/x"), lambda *a: None).close()
    changes = [e for e in events if e["event"] == log.OVERLOAD_LIMIT_CHANGED]
    assert len(changes) == 1
    assert changes[0]["pool"] == "default" and changes[0]["previous"] == 100 and changes[0]["limit"] == 50
    assert gate_of(mw).limit == 50


def test_metrics_report_limit_inflight_sheds_and_changes_per_pool_and_class() -> None:
    from prometheus_client import CollectorRegistry

    from ratelimit_mw.metrics import RateLimitMetrics

    registry = CollectorRegistry()
    mw = WSGIRateLimitMiddleware(_wsgi_app, policies=policies(), backend="memory://",
                                 metrics=RateLimitMetrics(registry))
    held = mw(_environ("/slow"), lambda *a: None)
    b"".join(mw(_environ("/slow"), lambda *a: None))  # shed: normal's share is full

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("ratelimit_overload_limit", pool="default") == 2
    assert value("ratelimit_overload_inflight", pool="default", **{"class": "normal"}) == 1
    assert value("ratelimit_overload_inflight", pool="default", **{"class": "critical"}) == 0
    assert value("ratelimit_overload_shed_total", pool="default", reason="limit", **{"class": "normal"}) == 1
    assert value("ratelimit_overload_shed_total", pool="default", reason="shadow", **{"class": "normal"}) == 0
    assert value("ratelimit_overload_limit_changes_total", pool="default", direction="down") == 0
    held.close()
    assert value("ratelimit_overload_inflight", pool="default", **{"class": "normal"}) == 0
