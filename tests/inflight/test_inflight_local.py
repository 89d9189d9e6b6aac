"""In-flight limits in process: the limit syntax, the 429 they answer, and the slot given
back on every way a response ends (ASGI, WSGI, Flask), alone or with an overload slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ratelimit_mw import Limiter, RateLimitMiddleware, WSGIRateLimitMiddleware
from ratelimit_mw.core.rates import parse_rate, parse_rates, rule_from_mapping
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock

POLICIES = """
version: 1
routes:
  - match: "/**"
    limits: ["1 concurrent"]
"""

WITH_OVERLOAD = """
version: 1
overload:
  algorithm: fixed
  initial: 5
  min: 1
  max: 5
routes:
  - match: "/**"
    limits: ["1 concurrent; lease=10s"]
"""


# -- syntax --------------------------------------------------------------------------


def test_the_limit_syntax() -> None:
    rule = parse_rate("5 concurrent; lease=15s")
    assert (rule.in_flight, rule.limit, rule.period, rule.name) == (True, 5, 15.0, "5-concurrent")
    assert parse_rate("5 concurrent").period == 30.0  # the default lease
    both = parse_rates("2 concurrent, 10/second")
    assert [r.in_flight for r in both] == [True, False]
    assert rule_from_mapping({"concurrent": 3, "lease": "5s"}) == parse_rate("3 concurrent; lease=5s")
    assert str(rule) == "5 concurrent; lease=15s"
    for bad, says in (("0 concurrent", ">= 1"), ("5 concurrent; burst=2", "lease, name"),
                      ("5 concurrent; lease=0.2s", "at least 1 second"),
                      ("5/second; algorithm=concurrency", "N concurrent")):
        with pytest.raises(ConfigError, match=says):
            parse_rate(bad)


def test_a_bad_in_flight_limit_in_a_policy_names_file_line_and_field() -> None:
    text = 'version: 1\nroutes:\n  - match: "/x"\n    limits: ["0 concurrent"]\n'
    with pytest.raises(ConfigError) as error:
        load_policies(text)
    message = str(error.value)
    assert message.startswith("<string>:4: routes[0].limits[0]:") and ">= 1" in message


# -- the limiter ---------------------------------------------------------------------------


def test_check_holds_a_slot_until_its_lease_is_released() -> None:
    limiter = Limiter(clock=FakeClock())
    first, second = limiter.check("k", "2 concurrent"), limiter.check("k", "2 concurrent")
    third = limiter.check("k", "2 concurrent")
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert (first.remaining, second.remaining, third.remaining) == (1, 0, 0)
    assert third.retry_after >= 1 and third.violated == ("2-concurrent",)
    assert limiter.check("other", "2 concurrent").allowed  # per key
    first.lease.release()
    first.lease.release()  # twice gives back once
    assert limiter.check("k", "2 concurrent").allowed
    assert not limiter.check("k", "2 concurrent").allowed


def test_all_or_nothing_with_a_rate() -> None:
    limiter = Limiter(clock=FakeClock())
    limits = "1 concurrent, 2/minute"
    held = limiter.check("k", limits)
    assert held.allowed
    denied = limiter.check("k", limits)  # by the in-flight limit: the rate is not consumed
    assert not denied.allowed and denied.violated == ("1-concurrent",)
    held.lease.release()
    again = limiter.check("k", limits)
    assert again.allowed  # the second of 2/minute
    again.lease.release()
    by_rate = limiter.check("k", limits)  # denied by the rate: no slot is taken
    assert not by_rate.allowed and by_rate.violated == ("2-per-minute",)
    assert by_rate.lease is None
    assert limiter.peek("k", limits).allowed is False  # the rate still says no
    assert limiter.peek("k", "1 concurrent, 2/minute").remaining == 0


def test_a_cost_takes_that_many_slots() -> None:
    limiter = Limiter(clock=FakeClock())
    big = limiter.check("k", "3 concurrent", cost=2)
    assert big.allowed and big.remaining == 1
    assert not limiter.check("k", "3 concurrent", cost=2).allowed
    big.lease.release()
    assert limiter.check("k", "3 concurrent", cost=3).allowed


# -- the 429 and its headers ---------------------------------------------------------


def _scope(path: str = "/slow") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 5000), "server": ("t", 80), "scheme": "http",
            "http_version": "1.1", "root_path": ""}


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _probe(mw: Any) -> tuple[int, dict[str, str]]:
    """A complete request to ``/probe`` (answered at once): 200 when a slot is free."""
    out: dict[str, Any] = {}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await mw(_scope("/probe"), _receive, send)
    return out["status"], out["headers"]


async def _quick(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


def test_over_the_limit_is_a_429_with_concurrent_requests_policy_and_retry_after() -> None:
    async def main() -> None:
        started, finish = asyncio.Event(), asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/probe":
                return await _quick(scope, receive, send)
            started.set()
            await finish.wait()
            await _quick(scope, receive, send)

        mw = RateLimitMiddleware(app, policies=POLICIES, backend="memory://")
        call = asyncio.create_task(mw(_scope(), _receive, lambda m: asyncio.sleep(0)))
        await started.wait()
        status, headers = await _probe(mw)
        assert status == 429
        assert headers["ratelimit-policy"] == '"1-concurrent";q=1;qu="concurrent-requests"'
        assert int(headers["retry-after"]) >= 1
        finish.set()
        await call
        status, headers = await _probe(mw)
        assert status == 200 and headers["ratelimit-policy"].endswith('qu="concurrent-requests"')

    asyncio.run(main())


# -- ASGI: every exit path -------------------------------------------------------------


@pytest.mark.parametrize("policies", [POLICIES, WITH_OVERLOAD], ids=["alone", "with-overload"])
@pytest.mark.parametrize("how", ["complete", "exception", "disconnect", "cancelled", "client-gone-mid-stream"])
def test_asgi_gives_the_slot_back_on_every_exit(how: str, policies: str) -> None:
    async def main() -> None:
        started = asyncio.Event()
        during: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/probe":
                return await _quick(scope, receive, send)
            during.append((await _probe(mw))[0])
            started.set()
            if how == "exception":
                raise RuntimeError("app failure")
            if how == "disconnect":
                while (await receive())["type"] != "http.disconnect":
                    pass
                during.append((await _probe(mw))[0])  # free as soon as the client is gone
                return
            if how == "cancelled":
                await asyncio.Event().wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            during.append((await _probe(mw))[0])  # still streaming: still held
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        mw = RateLimitMiddleware(app, policies=policies, backend="memory://")
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}])

        async def receive() -> Any:
            return next(messages)

        async def send(message: Any) -> None:
            if how == "client-gone-mid-stream" and message.get("more_body"):
                raise OSError("client went away")

        call = asyncio.create_task(mw(_scope(), receive, send))
        await started.wait()
        if how == "cancelled":
            call.cancel()
        if how in ("complete", "disconnect"):
            await call
        else:
            with pytest.raises((RuntimeError, OSError, asyncio.CancelledError)):
                await call
        assert during[0] == 429
        if how == "complete":
            assert during == [429, 429]
        if how == "disconnect":
            assert during == [429, 200]
        assert (await _probe(mw))[0] == 200
        overload = mw.engine.overload
        if overload is not None:  # both slots came back, the overload one too
            assert overload.gates["default"].inflight == 0

    asyncio.run(main())


# -- WSGI ------------------------------------------------------------------------------


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


@pytest.mark.parametrize("policies", [POLICIES, WITH_OVERLOAD], ids=["alone", "with-overload"])
def test_wsgi_holds_the_slot_until_close_and_gives_it_back_when_the_app_raises(policies: str) -> None:
    mw = WSGIRateLimitMiddleware(_wsgi_app, policies=policies, backend="memory://")
    statuses: list[str] = []

    def start(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    result = mw(_environ("/slow"), start)
    assert next(iter(result)) == b"a"
    b"".join(mw(_environ("/slow"), start))
    assert statuses == ["200 OK", "429 Too Many Requests"]
    result.close()  # closed before the end of the body
    with pytest.raises(RuntimeError):
        mw(_environ("/boom"), start)
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        assert client.get("/slow").content == b"ab"
        assert client.get("/slow").status_code == 200
    overload = mw.engine.overload
    if overload is not None:
        assert overload.gates["default"].inflight == 0


# -- Flask -----------------------------------------------------------------------------


def test_flask_decorator_holds_the_slot_while_the_body_streams() -> None:
    from flask import Flask, Response, stream_with_context

    from ratelimit_mw.flask import RateLimiter

    limiter = RateLimiter()
    app = Flask("inflight_flask")
    app.config.update(RATELIMIT_POLICIES="version: 1\nroutes: []\n")

    @app.get("/stream")
    @limiter.limit("1 concurrent")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(body()))

    @app.get("/boom")
    @limiter.limit("1 concurrent")
    def boom() -> str:
        raise RuntimeError("view failure")

    limiter.init_app(app)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    held = client.get("/stream", buffered=False)
    refused = client.get("/stream")
    assert refused.status_code == 429 and 'qu="concurrent-requests"' in refused.headers["RateLimit-Policy"]
    held.close()
    again = client.get("/stream")
    again.close()
    assert again.status_code == 200
    for _ in range(2):  # the slot of a failed view comes back at teardown
        failed = client.get("/boom")
        failed.close()
        assert failed.status_code == 500


# -- FastAPI dependency --------------------------------------------------------------------


def test_fastapi_dependency_holds_the_slot_until_the_response_is_done() -> None:
    from fastapi import Depends, FastAPI

    from ratelimit_mw.fastapi import InFlightRateLimit, RateLimit, setup

    app = FastAPI()
    setup(app, backend="memory://", clock=FakeClock())
    guard = RateLimit("1 concurrent", key="ip")
    assert isinstance(guard, InFlightRateLimit)
    assert not isinstance(RateLimit("5/minute"), InFlightRateLimit)

    async def main() -> None:
        started, finish = asyncio.Event(), asyncio.Event()

        @app.get("/slow", dependencies=[Depends(guard)])
        async def slow() -> dict[str, str]:
            started.set()
            await finish.wait()
            return {}

        @app.get("/boom", dependencies=[Depends(guard)])
        async def boom() -> dict[str, str]:
            raise RuntimeError("endpoint failure")

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = asyncio.create_task(client.get("/slow"))
            await started.wait()
            refused = await client.get("/slow")
            assert refused.status_code == 429
            assert refused.headers["RateLimit-Policy"].endswith('qu="concurrent-requests"')
            finish.set()
            assert (await held).status_code == 200
            for _ in range(2):  # a raising endpoint gives its slot back too
                assert (await client.get("/boom")).status_code == 500
            started.clear()
            again = asyncio.create_task(client.get("/slow"))
            await started.wait()
            assert (await again).status_code == 200

    asyncio.run(main())
