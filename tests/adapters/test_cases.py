"""One case table, driven through every adapter and framework.

ASGI apps (Starlette, FastAPI) go through ``httpx.ASGITransport``; WSGI apps
(Flask, Django) through ``httpx.WSGITransport``. A fake clock makes every
limit exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ratelimit_mw.testing import FakeClock
from tests.adapters import apps

Call = Callable[..., httpx.Response]


def _asgi_client(factory: Callable[..., Any], clock: FakeClock) -> Call:
    app = factory(clock=clock)

    def call(method: str, path: str, headers: dict[str, str] | None = None, peer: str = "127.0.0.1") -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=(peer, 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, headers=headers)

        return asyncio.run(go())

    return call


def _wsgi_client(factory: Callable[..., Any], clock: FakeClock) -> Call:
    app = factory(clock=clock)

    def call(method: str, path: str, headers: dict[str, str] | None = None, peer: str = "127.0.0.1") -> httpx.Response:
        transport = httpx.WSGITransport(app=app, remote_addr=peer)
        with httpx.Client(transport=transport, base_url="http://test") as client:
            return client.request(method, path, headers=headers)

    return call


ADAPTERS = [
    pytest.param(lambda c: _asgi_client(apps.starlette_app, c), id="starlette"),
    pytest.param(lambda c: _asgi_client(apps.fastapi_app, c), id="fastapi"),
    pytest.param(lambda c: _wsgi_client(apps.flask_app, c), id="flask"),
    pytest.param(lambda c: _wsgi_client(apps.django_wsgi, c), id="django"),
]


@pytest.fixture(params=ADAPTERS)
def client(request: pytest.FixtureRequest) -> tuple[Call, FakeClock]:
    clock = FakeClock()
    return request.param(clock), clock


def test_allowed_then_429_with_headers(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    key = {"X-API-Key": "demo"}
    first = call("GET", "/resource", key)
    assert first.status_code == 200
    assert first.headers["X-App"] == "1"  # the app's own header is kept
    assert first.headers["X-RateLimit-Limit"] == "40"
    assert first.headers["X-RateLimit-Remaining"] == "39"
    assert first.headers["X-RateLimit-Reset"] == "1"
    assert first.headers["RateLimit-Policy"] == '"10-per-second";q=40;w=4'
    assert first.headers["RateLimit"] == '"10-per-second";r=39;t=1'
    assert "Retry-After" not in first.headers
    statuses = [call("GET", "/resource", key).status_code for _ in range(40)]
    assert statuses == [200] * 39 + [429]
    denied = call("GET", "/resource", key)
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "1"
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert denied.headers["Cache-Control"] == "no-store"
    assert denied.headers["Content-Type"] == "application/problem+json"
    body = json.loads(denied.content)
    assert body["status"] == 429 and body["violated-policies"] == ["10-per-second"]
    assert body["type"].endswith("#quota-exceeded") and body["retry_after"] == 1
    assert "X-App" not in denied.headers  # the app was not called


def test_refill_after_time_passes(client: tuple[Call, FakeClock]) -> None:
    call, clock = client
    for _ in range(40):
        call("GET", "/resource", {"X-API-Key": "k"})
    assert call("GET", "/resource", {"X-API-Key": "k"}).status_code == 429
    clock.advance(0.1)
    assert call("GET", "/resource", {"X-API-Key": "k"}).status_code == 200
    assert call("GET", "/resource", {"X-API-Key": "k"}).status_code == 429


def test_keys_are_per_api_key_then_ip(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    for _ in range(40):
        call("GET", "/resource", {"X-API-Key": "a"})
    assert call("GET", "/resource", {"X-API-Key": "a"}).status_code == 429
    assert call("GET", "/resource", {"X-API-Key": "b"}).status_code == 200
    assert call("GET", "/resource").status_code == 200  # falls back to the client IP


def test_route_template_shares_one_bucket(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    statuses = [call("GET", f"/users/{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_exempt_and_unmatched_routes_pass_untouched(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    for path in ("/health", "/other"):
        responses = [call("GET", path) for _ in range(60)]
        assert {r.status_code for r in responses} == {200}
        assert "X-RateLimit-Limit" not in responses[-1].headers


def test_two_limits_all_or_nothing(client: tuple[Call, FakeClock]) -> None:
    call, clock = client
    assert [call("GET", "/two").status_code for _ in range(3)] == [200, 200, 429]
    assert call("GET", "/two").headers["RateLimit-Policy"] == '"burst";q=2;w=1,"sustained";q=3;w=60'
    clock.advance(1.0)
    ok = call("GET", "/two")
    assert ok.status_code == 200  # the denials above consumed nothing from "sustained"
    assert ok.headers["RateLimit"].startswith('"sustained";r=0')
    clock.advance(1.0)
    denied = call("GET", "/two")
    assert denied.status_code == 429
    assert json.loads(denied.content)["violated-policies"] == ["sustained"]


def test_cost_per_route(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    responses = [call("GET", "/costly") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["X-RateLimit-Remaining"] == "6"


def test_streaming_response_keeps_body(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    response = call("GET", "/stream")
    assert response.status_code == 200 and response.content == b"abc"
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_app_header_is_not_duplicated(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    response = call("GET", "/own-headers")
    assert response.headers.get_list("X-RateLimit-Limit") == ["999"]
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_shadow_route_never_rejects(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    responses = [call("GET", "/shadow") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[-1].headers["X-RateLimit-Remaining"] == "0"


def test_cors_preflight_is_not_counted(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    preflight = {"Origin": "http://a", "Access-Control-Request-Method": "GET", "X-API-Key": "p"}
    for _ in range(50):
        response = call("OPTIONS", "/resource", preflight)
        assert response.status_code != 429
    assert call("GET", "/resource", {"X-API-Key": "p"}).headers["X-RateLimit-Remaining"] == "39"


def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    for i in range(3):
        call("GET", "/users/1", {"X-Forwarded-For": f"203.0.113.{i}"}, peer="198.51.100.7")
    assert call("GET", "/users/1", {"X-Forwarded-For": "203.0.113.99"}, peer="198.51.100.7").status_code == 429


def test_trusted_proxy_forwarded_for_identifies_clients(client: tuple[Call, FakeClock]) -> None:
    call, _ = client
    for _ in range(3):
        call("GET", "/users/1", {"X-Forwarded-For": "203.0.113.1"}, peer="10.0.0.5")
    assert call("GET", "/users/1", {"X-Forwarded-For": "203.0.113.1"}, peer="10.0.0.5").status_code == 429
    assert call("GET", "/users/1", {"X-Forwarded-For": "203.0.113.2"}, peer="10.0.0.5").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Forwarded-For": "garbage, ,,[::zz], 999.1.1.1"}, id="garbage-xff"),
        pytest.param({"X-Forwarded-For": ", ".join(["10.0.0.1"] * 5000)}, id="huge-xff"),
        pytest.param({"X-API-Key": "k" * 20000}, id="oversized-key"),
        pytest.param({"X-API-Key": "   "}, id="blank-key"),
        pytest.param({"Cookie": "a=b; ;;=; c"}, id="odd-cookie"),
        pytest.param({"Forwarded": 'for="[::1'}, id="broken-forwarded"),
    ],
)
def test_malformed_headers_never_crash(client: tuple[Call, FakeClock], headers: dict[str, str]) -> None:
    call, _ = client
    response = call("GET", "/resource", headers, peer="10.0.0.9")
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "40"
