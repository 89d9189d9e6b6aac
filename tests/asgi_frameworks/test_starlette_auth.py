"""Starlette with AuthenticationMiddleware in front of the rate-limit middleware: ``key: [user, ip]``
reads ``scope["user"]``, plans come from the user's billing data, and bad set-ups stay limited."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from ratelimit_mw.testing import FakeClock
from tests.asgi_frameworks.apps import make_starlette_app
from tests.asgi_frameworks.client import Client


@pytest.fixture
def client() -> Client:
    return Client(make_starlette_app(clock=FakeClock()))


def test_user_a_exhausts_their_limit_while_b_and_anonymous_ips_keep_theirs(client: Client) -> None:
    assert client.statuses("/data", 4, token="token-alice") == [200, 200, 200, 429]
    assert client.statuses("/data", 3, token="token-bob") == [200, 200, 200]
    assert client.statuses("/data", 3, ip="198.51.100.1") == [200, 200, 200]
    assert client.statuses("/data", 1, ip="198.51.100.2") == [200]
    assert client.get("/data", token="token-alice", ip="198.51.100.9").status_code == 429


def test_the_429_carries_the_headers(client: Client) -> None:
    client.statuses("/data", 3, token="token-alice")
    denied = client.get("/data", token="token-alice")
    assert denied.status_code == 429
    for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "RateLimit", "RateLimit-Policy"):
        assert name in denied.headers
    assert denied.headers["Content-Type"] == "application/problem+json"


def test_a_plan_change_through_the_admin_api_moves_a_user_to_another_limit(client: Client) -> None:
    assert client.statuses("/reports", 3, token="token-alice") == [200, 200, 429]
    assert client.patch_policies({"plans": {"team": "pro"}}).status_code == 200
    assert client.statuses("/reports", 5, token="token-alice") == [200, 200, 200, 200, 429]
    assert client.statuses("/reports", 3, token="token-bob") == [200, 200, 429]


def test_a_plan_resolver_that_raises_gives_the_default_plan(client: Client) -> None:
    with capture_logs() as events:
        assert client.statuses("/reports", 3, token="token-carol") == [200, 200, 429]
    assert {e["event"] for e in events} >= {"plan_error"}


def test_ratelimit_enabled_false_disables_limiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATELIMIT_ENABLED", "0")
    client = Client(make_starlette_app(clock=FakeClock()))
    responses = [client.get("/data", token="token-alice") for _ in range(5)]
    assert {r.status_code for r in responses} == {200}
    assert not any("X-RateLimit-Limit" in r.headers for r in responses)


def test_user_key_without_authentication_is_logged_once_and_limits_by_ip() -> None:
    with capture_logs() as events:
        client = Client(make_starlette_app(authentication=False, clock=FakeClock()))
        assert client.statuses("/data", 4, token="token-alice") == [200, 200, 200, 429]
        assert client.statuses("/data", 1, token="token-bob", ip="198.51.100.4") == [200]
    errors = [e for e in events if e["event"] == "key_error"]
    assert len(errors) == 1 and "AuthenticationMiddleware" in errors[0]["detail"]
