"""Protocol-level edges, driven with hand-built ASGI scopes and WSGI environs."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.testing import FakeClock

POLICIES = """
version: 1
defaults: {key: ip}
routes:
  - match: "/users/{id}"
    limits: ["2/minute"]
  - match: "/shaped"
    limits: ["10/second; algorithm=leaky_bucket; max_delay=1s"]
unmatched: {limits: ["3/minute"]}
"""


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def run_asgi(app: Any, scope: dict[str, Any], inbound: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(inbound or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path: str, raw_path: bytes | None = None, client: Any = ("127.0.0.1", 5000)) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": raw_path or path.encode("utf-8", "surrogateescape"),
        "root_path": "", "query_string": b"", "headers": [(b"host", b"test")], "client": client,
        "server": ("127.0.0.1", 80),
    }


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/users/\udcff\udcfe", id="surrogate-escaped-bytes"),
        pytest.param("/users/caf\u00e9", id="unicode"),
        pytest.param("/users/%ZZ", id="bad-percent"),
        pytest.param("/" + "a" * 10000, id="very-long"),
        pytest.param("", id="empty"),
    ],
)
def test_asgi_odd_paths_never_crash(path: str) -> None:
    app = RateLimitMiddleware(echo_app, policies=POLICIES, clock=FakeClock())
    statuses = [run_asgi(app, http_scope(path))[0]["status"] for _ in range(4)]
    assert statuses[:2] == [200, 200]
    assert statuses[-1] == 429  # still limited: the odd path matched a route or the unmatched rule


@pytest.mark.parametrize(
    "client",
    [pytest.param(None, id="no-peer"), pytest.param(("testclient", 50000), id="opaque-peer"),
     pytest.param(("/tmp/app.sock", None), id="unix-socket")],
)
def test_asgi_peer_that_is_not_an_ip_is_still_limited(client: Any) -> None:
    app = RateLimitMiddleware(echo_app, policies=POLICIES, clock=FakeClock())
    statuses = [run_asgi(app, http_scope("/users/1", client=client))[0]["status"] for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_lifespan_and_websocket_pass_through_untouched() -> None:
    app = RateLimitMiddleware(echo_app, policies=POLICIES, clock=FakeClock())
    sent = run_asgi(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, [{"type": "lifespan.startup"}])
    assert sent == [{"type": "lifespan.startup.complete"}]
    scope = {**http_scope("/users/1"), "type": "websocket"}
    for _ in range(5):  # websockets are not limited unless limit_websockets is set
        sent = run_asgi(app, dict(scope), [{"type": "websocket.connect"}])
        assert sent[0]["type"] == "websocket.accept"


def test_websocket_handshakes_limited_when_asked() -> None:
    policies = POLICIES + "limit_websockets: true\n"
    app = RateLimitMiddleware(echo_app, policies=policies, clock=FakeClock())
    scope = {**http_scope("/users/1"), "type": "websocket"}
    first = [run_asgi(app, dict(scope), [{"type": "websocket.connect"}])[0]["type"] for _ in range(3)]
    assert first == ["websocket.accept", "websocket.accept", "websocket.close"]


def test_asgi_leaky_bucket_delays_instead_of_rejecting() -> None:
    clock = FakeClock()
    app = RateLimitMiddleware(echo_app, policies=POLICIES, clock=clock)
    start = clock.now
    statuses = [run_asgi(app, http_scope("/shaped"))[0]["status"] for _ in range(10)]
    assert statuses == [200] * 10
    # each request after the first waited 0.1 s for its slot in a queue draining at 10/s
    # (FakeClock.asleep advances the clock instead of sleeping)
    assert clock.now - start == pytest.approx(0.9, abs=1e-6)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "1")])
    return [b"ok"]


def wsgi_call(app: Any, path: str, remote: str | None = "127.0.0.1") -> tuple[str, list[tuple[str, str]]]:
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
        "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
    }
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    body = app(environ, start_response)
    b"".join(body)
    return seen["status"], seen["headers"]


@pytest.mark.parametrize(
    "path",
    [pytest.param("/users/\xff\xfe", id="latin1-non-utf8"), pytest.param("/users/caf\xc3\xa9", id="utf8-as-latin1"),
     pytest.param("", id="empty")],
)
def test_wsgi_odd_paths_never_crash(path: str) -> None:
    app = WSGIRateLimitMiddleware(wsgi_app, policies=POLICIES, clock=FakeClock())
    statuses = [wsgi_call(app, path)[0] for _ in range(4)]
    assert statuses[:2] == ["200 OK", "200 OK"]
    assert statuses[-1] == "429 Too Many Requests"


def test_wsgi_without_remote_addr_shares_one_unknown_bucket() -> None:
    app = WSGIRateLimitMiddleware(wsgi_app, policies=POLICIES, clock=FakeClock())
    assert [wsgi_call(app, "/users/1", remote=None)[0][:3] for _ in range(3)] == ["200", "200", "429"]


def test_wsgi_close_is_forwarded_for_streaming_iterables() -> None:
    closed = []

    class Body:
        def __iter__(self) -> Any:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def streaming(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    app = WSGIRateLimitMiddleware(streaming, policies=POLICIES, clock=FakeClock())
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/1", "REMOTE_ADDR": "1.2.3.4",
               "wsgi.input": io.BytesIO()}
    headers: list[Any] = []
    result = app(environ, lambda status, h, exc=None: headers.extend(h))
    assert b"".join(result) == b"ab"
    result.close()  # type: ignore[attr-defined]
    assert closed == [True]
    assert ("X-RateLimit-Remaining", "1") in headers


def test_configured_from_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_RATE_LIMIT", "2")
    monkeypatch.setenv("DEFAULT_WINDOW_SECONDS", "60")
    monkeypatch.delenv("RATELIMIT_POLICIES", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = RateLimitMiddleware(echo_app, clock=FakeClock())
    statuses = [run_asgi(app, http_scope("/anything"))[0]["status"] for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_no_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEFAULT_RATE_LIMIT", "RATELIMIT_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="RATELIMIT_POLICIES"):
        RateLimitMiddleware(echo_app)
