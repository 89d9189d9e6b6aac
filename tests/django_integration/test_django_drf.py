"""RateLimitThrottle in DRF views with token authentication: the policies see the
token's user, DRF answers the 429 with Retry-After, the middleware adds the headers
and does not count the request a second time."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit_mw.testing import FakeClock
from tests.django_integration.conftest import client_for, project_settings

pytestmark = pytest.mark.usefixtures("project")


def token_client(tokens: dict[str, str], user: str, ip: str = "127.0.0.1") -> Any:
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[user]}")
    return client


def test_token_user_a_exhausts_their_limit_while_b_and_anonymous_ips_keep_theirs(tokens: dict[str, str]) -> None:
    alice, bob = token_client(tokens, "alice"), token_client(tokens, "bob")
    answers = [alice.get("/api/me") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    # counted once per request: the middleware leaves the throttled view to the throttle
    assert [a.json()["remaining"] for a in answers[:3]] == [2, 1, 0]
    assert answers[0].json()["user"] == "alice"
    assert bob.get("/api/me").json() == {"user": "bob", "remaining": 2}
    assert client_for(ip="203.0.113.9").get("/api/me").json() == {"user": None, "remaining": 2}


def test_the_429_is_drfs_with_retry_after_from_wait_and_our_headers(tokens: dict[str, str],
                                                                    clock: FakeClock) -> None:
    alice = token_client(tokens, "alice")
    first = alice.get("/api/me")
    assert first["X-RateLimit-Limit"] == "3" and first["X-RateLimit-Remaining"] == "2"
    alice.get("/api/me")
    alice.get("/api/me")
    denied = alice.get("/api/me")
    assert denied.status_code == 429
    assert "throttled" in denied.json()["detail"].lower()  # DRF's own Throttled response
    assert 1 <= int(denied["Retry-After"]) <= 60
    assert denied["X-RateLimit-Remaining"] == "0"
    clock.advance(61)
    assert alice.get("/api/me").status_code == 200


def test_a_throttle_subclass_declares_its_own_limits(tokens: dict[str, str]) -> None:
    from ratelimit_mw.django import engine

    alice = token_client(tokens, "alice")
    assert [alice.get("/api/burst").status_code for _ in range(3)] == [200, 200, 429]
    assert token_client(tokens, "bob").get("/api/burst").json() == {"user": "bob", "remaining": 1}
    assert "throttle:tests.django_integration.project.api.BurstThrottle" in engine().declared


def test_a_view_with_only_a_subclass_throttle_keeps_the_yaml_route_in_the_middleware(
        tokens: dict[str, str]) -> None:
    alice, bob = token_client(tokens, "alice"), token_client(tokens, "bob")
    first = alice.get("/api/only-burst")
    assert first.json() == {"user": "alice", "remaining": 1}  # the stricter: 2/minute by user
    assert alice.get("/api/only-burst").status_code == 200
    # the middleware ran "/api/**" (3/minute) before DRF authentication: by IP, shared by both
    answers = [bob.get("/api/only-burst") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[0].json() == {"user": "bob", "remaining": 0} and answers[1]["X-RateLimit-Limit"] == "3"


def test_ratelimit_enabled_false_disables_the_throttle(tokens: dict[str, str], clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_ENABLED="false"):
        alice = token_client(tokens, "alice")
        for path in ("/api/me", "/api/burst"):
            answers = [alice.get(path) for _ in range(5)]
            assert [a.status_code for a in answers] == [200] * 5
            assert "X-RateLimit-Limit" not in answers[0]


def test_a_plan_change_through_the_admin_api_moves_a_token_user_to_another_limit(tokens: dict[str, str]) -> None:
    import httpx

    from ratelimit_mw.admin import admin_wsgi_app
    from ratelimit_mw.django import engine

    alice, bob = token_client(tokens, "alice"), token_client(tokens, "bob")
    assert [alice.get("/api/plan").status_code for _ in range(3)] == [200, 200, 429]
    assert bob.get("/api/plan")["X-RateLimit-Limit"] == "5"  # pro
    token = "admin-token-0123456789"
    with httpx.Client(transport=httpx.WSGITransport(app=admin_wsgi_app(engine(), token=token)),
                      base_url="http://admin") as admin:
        changed = admin.patch("/policies", json={"plans": {"free": "pro"}},
                              headers={"Authorization": f"Bearer {token}"})
    assert changed.status_code == 200, changed.text
    answer = alice.get("/api/plan")
    assert answer.status_code == 200 and answer["X-RateLimit-Limit"] == "5"
