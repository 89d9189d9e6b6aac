"""RateLimitMiddleware and @ratelimit in a real Django project: users logged in through
django.contrib.auth (SQLite), Django's test client, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.testing import FakeClock
from tests.django_integration.conftest import client_for, project_settings, statuses

pytestmark = pytest.mark.usefixtures("project")


def test_user_a_exhausts_their_limit_while_user_b_and_anonymous_ips_keep_theirs() -> None:
    alice, bob = client_for("alice"), client_for("bob")
    answers = [alice.get("/reports") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].json() == {"user": "alice", "remaining": 2}
    assert bob.get("/reports").json() == {"user": "bob", "remaining": 2}  # same IP, own bucket
    assert client_for(ip="203.0.113.7").get("/reports").json() == {"user": None, "remaining": 2}
    assert client_for(ip="203.0.113.8").get("/reports").json() == {"user": None, "remaining": 2}


def test_the_429_carries_the_headers_and_allowed_responses_too() -> None:
    alice = client_for("alice")
    first = alice.get("/reports")
    assert first["X-RateLimit-Limit"] == "3" and first["X-RateLimit-Remaining"] == "2"
    assert "RateLimit-Policy" in first
    alice.get("/reports")
    alice.get("/reports")
    denied = alice.get("/reports")
    assert denied.status_code == 429
    assert denied["Content-Type"] == "application/problem+json"
    assert int(denied["Retry-After"]) >= 1
    assert denied["X-RateLimit-Remaining"] == "0" and "RateLimit" in denied


def test_the_decorator_limits_a_function_view_by_user() -> None:
    alice, bob = client_for("alice"), client_for("bob")
    assert statuses(alice, "/search", 4) == [200, 200, 200, 429]
    assert bob.get("/search").json() == {"user": "bob", "remaining": 2}
    assert client_for(ip="198.51.100.1").get("/search").json() == {"user": None, "remaining": 2}


def test_the_decorator_on_class_based_views_counts_each_class_apart() -> None:
    alice = client_for("alice")
    assert statuses(alice, "/profile", 3) == [200, 200, 429]
    settings_page = alice.get("/settings")  # another class, same inherited dispatch: its own limit
    assert settings_page.status_code == 200 and settings_page["X-RateLimit-Limit"] == "4"
    assert client_for("bob").get("/profile").json() == {"user": "bob", "remaining": 1}


def test_a_yaml_route_and_a_decorator_both_apply_and_the_stricter_headers_win() -> None:
    client = client_for(ip="192.0.2.10")
    first = client.get("/both")
    assert first["X-RateLimit-Limit"] == "2"  # the decorator's 2/minute, not the route's 4/minute
    assert first.json()["remaining"] == 1
    assert statuses(client, "/both", 2) == [200, 429]


def test_stacked_decorators_are_two_checks_with_their_own_keys() -> None:
    from ratelimit_mw.django import engine

    client = client_for(ip="192.0.2.60")
    assert [client.get("/stacked", HTTP_X_TEAM="red").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/stacked", HTTP_X_TEAM="blue").status_code == 200  # another team: by IP, 4th of 5
    greens = [client.get("/stacked", HTTP_X_TEAM="green").status_code for _ in range(2)]
    assert greens == [200, 429]  # 5/minute by IP: the 6th request is refused
    names = [n for n in engine().declared if n.startswith("view:tests.django_integration.project.views.stacked")]
    assert sorted(names) == ["view:tests.django_integration.project.views.stacked",
                             "view:tests.django_integration.project.views.stacked#2"]


def test_the_decorator_adds_the_headers_without_the_middleware(clock: FakeClock) -> None:
    auth_only = ["django.contrib.sessions.middleware.SessionMiddleware",
                 "django.contrib.auth.middleware.AuthenticationMiddleware"]
    with project_settings(clock, MIDDLEWARE=auth_only):
        alice = client_for("alice")
        answers = [alice.get("/search") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0]["X-RateLimit-Limit"] == "3" and answers[0].json()["remaining"] == 2
        assert answers[3]["X-RateLimit-Remaining"] == "0" and int(answers[3]["Retry-After"]) >= 1
        assert alice.get("/reports").json() == {"user": "alice", "remaining": None}  # no middleware: no YAML


def test_the_decorator_joins_the_engine_of_the_middleware() -> None:
    from ratelimit_mw.django import engine

    declared = engine().declared
    assert "view:tests.django_integration.project.views.search" in declared
    assert "view:tests.django_integration.project.views.Profile.dispatch" in declared
    assert declared["view:tests.django_integration.project.views.search"].extra["source"] == "decorator"


def test_async_views_under_the_async_client() -> None:
    from django.test import AsyncClient

    async def run() -> list[Any]:
        client = AsyncClient(REMOTE_ADDR="192.0.2.20")
        anonymous = AsyncClient(REMOTE_ADDR="192.0.2.21")
        await client.aforce_login(await _user("alice"))
        answers = [await client.get("/async-search") for _ in range(3)]
        answers.append(await anonymous.get("/async-search"))
        answers.append(await client.get("/reports"))  # a sync view under the async handler
        return answers

    answers = asyncio.run(run())
    assert [a.status_code for a in answers[:3]] == [200, 200, 429]
    assert answers[0].json() == {"user": "alice", "remaining": 1}
    assert answers[2]["Retry-After"]
    assert answers[3].json() == {"user": None, "remaining": 1}
    assert answers[4].json() == {"user": "alice", "remaining": 2}


async def _user(name: str) -> Any:
    from django.contrib.auth.models import User

    return await User.objects.aget(username=name)


def test_ratelimit_enabled_false_disables_every_limit(clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_ENABLED=False):
        alice = client_for("alice")
        for path in ("/reports", "/search", "/profile"):
            answers = [alice.get(path) for _ in range(6)]
            assert [a.status_code for a in answers] == [200] * 6
            assert "X-RateLimit-Limit" not in answers[0]
        assert alice.get("/reports").json() == {"user": "alice", "remaining": None}


def test_ratelimit_view_renders_the_429_with_the_headers(clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_VIEW="tests.django_integration.project.views.too_many"):
        alice = client_for("alice")
        answers = [alice.get("/search") for _ in range(4)]
        denied = answers[3]
        assert denied.status_code == 429 and b"Slow down" in denied.content
        assert denied["Content-Type"].startswith("text/html")
        assert denied["X-RateLimit-Remaining"] == "0" and int(denied["Retry-After"]) >= 1


def test_a_failing_ratelimit_view_falls_back_to_the_default_429(clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_VIEW="tests.django_integration.project.views.broken_page"):
        alice = client_for("alice")
        with capture_logs() as events:
            answers = [alice.get("/reports") for _ in range(4)]
        assert answers[3].status_code == 429
        assert answers[3]["Content-Type"] == "application/problem+json"
        assert [e["error"] for e in events if e["event"] == log.INTERNAL_ERROR] == ["RuntimeError"]


def test_a_key_function_that_raises_still_limits_and_never_gives_a_500() -> None:
    client = client_for(ip="192.0.2.30")
    with capture_logs() as events:
        assert statuses(client, "/broken-key", 3) == [200, 200, 429]
    errors = [e for e in events if e["event"] == log.KEY_ERROR]
    assert len(errors) == 3 and errors[0]["error"] == "RuntimeError"
    assert client_for(ip="192.0.2.31").get("/broken-key").status_code == 200  # the next key: by IP


def test_a_user_key_without_authentication_middleware_falls_to_the_next_key(clock: FakeClock) -> None:
    from django.core.checks import run_checks

    without_auth = ["django.contrib.sessions.middleware.SessionMiddleware", "ratelimit_mw.django.RateLimitMiddleware"]
    with project_settings(clock, MIDDLEWARE=without_auth):
        warnings = [m for m in run_checks(tags=["ratelimit_mw"]) if m.id == "ratelimit_mw.W001"]
        assert warnings and "AuthenticationMiddleware" in warnings[0].msg
        from django.test import Client

        with capture_logs() as events:
            answers = [Client(REMOTE_ADDR="192.0.2.40").get("/reports") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]  # by IP: limited, no 500
        reported = [e for e in events if e["event"] == log.KEY_ERROR]
        assert len(reported) == 1 and "AuthenticationMiddleware" in reported[0]["detail"]  # once, not per request
        assert Client(REMOTE_ADDR="192.0.2.41").get("/reports").status_code == 200


def test_a_path_scan_that_reaches_no_view_is_limited() -> None:
    client = client_for(ip="192.0.2.50")
    answers = [client.get(f"/missing/{n}") for n in range(3)]
    assert [a.status_code for a in answers] == [404, 429, 429]
    assert answers[0]["X-RateLimit-Limit"] == "1"


def test_each_user_gets_the_limits_of_their_plan() -> None:
    assert statuses(client_for("alice"), "/plan-data", 3) == [200, 200, 429]
    assert statuses(client_for("bob"), "/plan-data", 6) == [200] * 5 + [429]
    assert statuses(client_for(ip="203.0.113.77"), "/plan-data", 3) == [200, 200, 429]  # default: free


def test_a_plan_change_through_the_admin_api_moves_a_user_to_another_limit() -> None:
    import httpx

    from ratelimit_mw.admin import admin_wsgi_app
    from ratelimit_mw.django import engine

    token = "admin-token-0123456789"
    alice = client_for("alice")
    assert statuses(alice, "/plan-data", 3) == [200, 200, 429]
    with httpx.Client(transport=httpx.WSGITransport(app=admin_wsgi_app(engine(), token=token)),
                      base_url="http://admin") as admin:
        changed = admin.patch("/policies", json={"plans": {"free": "pro"}},
                              headers={"Authorization": f"Bearer {token}"})
    assert changed.status_code == 200, changed.text
    answer = alice.get("/plan-data")
    assert answer.status_code == 200 and answer["X-RateLimit-Limit"] == "5"
    assert alice.get("/search")["X-RateLimit-Limit"] == "3"  # the decorated view kept its limit


def test_limits_come_back_when_the_clock_moves(clock: FakeClock) -> None:
    alice = client_for("alice")
    assert statuses(alice, "/reports", 4) == [200, 200, 200, 429]
    clock.advance(61)
    assert alice.get("/reports").status_code == 200


def test_a_view_decorated_after_the_engine_exists_is_limited() -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from ratelimit_mw.django import engine, ratelimit

    engine()  # built

    @ratelimit("1/minute", key="ip")
    def late(request: Any) -> HttpResponse:
        return HttpResponse("ok")

    factory = RequestFactory(REMOTE_ADDR="192.0.2.70")
    answers = [late(factory.get("/late")) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[0]["X-RateLimit-Limit"] == "1"  # no middleware here: the decorator adds them


OVERLOAD = """
version: 1
overload: {algorithm: fixed, initial: 1, min: 1, max: 1, warmup: 0s, mode: enforce}
defaults: {key: [user, ip]}
routes:
  - match: "GET /reports"
    limits: ["100/minute"]
"""


def test_overload_slots_go_back_when_the_response_is_closed(clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_POLICIES=OVERLOAD):
        alice = client_for("alice")
        # one request in flight at most: each one's slot must be given back for the next to pass
        answers = [alice.get(path) for path in ("/reports", "/reports", "/search", "/search", "/reports")]
        assert [a.status_code for a in answers] == [200] * 5
        assert answers[2].json()["remaining"] == 2


IN_FLIGHT = """
version: 1
defaults: {key: [user, ip]}
routes:
  - match: "GET /reports"
    limits: ["1 concurrent", "100/minute"]
"""


def test_in_flight_slots_go_back_when_the_response_is_closed(clock: FakeClock) -> None:
    with project_settings(clock, RATELIMIT_POLICIES=IN_FLIGHT):
        alice = client_for("alice")
        # one of alice's requests in flight at most: each one's slot must come back for the next
        answers = [alice.get("/reports") for _ in range(3)]
        assert [a.status_code for a in answers] == [200] * 3
        assert 'qu="concurrent-requests"' in answers[0]["RateLimit-Policy"]
