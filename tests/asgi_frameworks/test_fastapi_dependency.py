"""FastAPI with an OAuth2 bearer dependency: RateLimit dependencies and YAML plans in one engine.

User A exhausts their limit while user B and anonymous IPs keep theirs; a plan change
through the admin API moves a user to another limit; the 429 carries the headers and
the problem+json body and is in the OpenAPI schema; RATELIMIT_ENABLED=false disables
limiting; bad input is a clear error or a limited request, never a 500.
"""

from __future__ import annotations

import json

import pytest
from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from ratelimit_mw.errors import ConfigError
from ratelimit_mw.fastapi import RateLimit, identity_of, setup
from ratelimit_mw.metrics import RateLimitMetrics
from ratelimit_mw.testing import FakeClock
from tests.asgi_frameworks.apps import make_fastapi_app
from tests.asgi_frameworks.client import ADMIN, Client

LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy")


@pytest.fixture
def client() -> Client:
    return Client(make_fastapi_app(clock=FakeClock()))


def test_user_a_exhausts_their_limit_while_b_and_anonymous_ips_keep_theirs(client: Client) -> None:
    assert client.statuses("/me", 4, token="token-alice") == [200, 200, 200, 429]
    assert client.statuses("/me", 3, token="token-bob") == [200, 200, 200]
    assert client.statuses("/me", 3, ip="198.51.100.1") == [200, 200, 200]
    assert client.statuses("/me", 3, ip="198.51.100.2") == [200, 200, 200]
    assert client.get("/me", token="token-alice", ip="198.51.100.3").status_code == 429  # the user, not the IP


def test_headers_state_and_the_429(client: Client) -> None:
    first = client.get("/me", token="token-alice")
    assert first.json() == {"user": "alice", "remaining": 2}  # request.state.ratelimit
    assert all(name in first.headers for name in LIMIT_HEADERS) and first.headers["X-RateLimit-Limit"] == "3"
    client.statuses("/me", 2, token="token-alice")
    denied = client.get("/me", token="token-alice")
    assert denied.status_code == 429
    assert all(name in denied.headers for name in (*LIMIT_HEADERS, "Retry-After"))
    assert int(denied.headers["Retry-After"]) >= 1
    assert denied.headers["Content-Type"] == "application/problem+json"
    body = denied.json()
    assert body["status"] == 429 and body["violated-policies"] == ["3-per-minute"]


def test_a_router_dependency_limits_each_route_with_both_limits(client: Client) -> None:
    assert client.statuses("/team/a", 2, token="token-bob") == [200, 429]  # 1/second
    assert client.statuses("/team/b", 1, token="token-bob") == [200]  # its own buckets


def test_a_plan_change_through_the_admin_api_moves_a_user_to_another_limit(client: Client) -> None:
    assert client.statuses("/reports", 3, token="token-alice") == [200, 200, 429]  # team -> free: 2/minute
    answer = client.patch_policies({"plans": {"team": "pro"}})
    assert answer.status_code == 200, answer.text
    assert client.statuses("/reports", 5, token="token-alice") == [200, 200, 200, 200, 429]  # pro: 4/minute
    assert client.statuses("/reports", 3, token="token-bob") == [200, 200, 429]  # bob stays free


def test_a_plan_resolver_that_raises_gives_the_default_plan(client: Client) -> None:
    with capture_logs() as events:
        assert client.statuses("/reports", 3, token="token-carol") == [200, 200, 429]
    assert [e["event"] for e in events].count("plan_error") == 3


def test_ratelimit_enabled_false_disables_limiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    client = Client(make_fastapi_app(clock=FakeClock()))
    responses = [client.get("/me", token="token-alice") for _ in range(6)]
    assert {r.status_code for r in responses} == {200}
    assert not any("X-RateLimit-Limit" in r.headers for r in responses)
    assert responses[0].json()["remaining"] is None
    assert client.statuses("/reports", 4, token="token-alice") == [200] * 4


def test_a_rate_that_does_not_parse_fails_at_import() -> None:
    with pytest.raises(ConfigError, match=r"RateLimit\('5/fortnight'\).*unknown unit"):
        RateLimit("5/fortnight")


def test_no_engine_is_a_clear_error_on_the_first_request() -> None:
    app = FastAPI()

    @app.get("/x", dependencies=[Depends(RateLimit("1/minute"))])
    async def x() -> dict[str, str]:
        return {}

    with pytest.raises(ConfigError, match="no rate-limit engine"):
        Client(app).get("/x")


def test_user_key_without_authentication_stays_limited() -> None:
    app = FastAPI()
    setup(app, backend="memory://", clock=FakeClock())

    @app.get("/x", dependencies=[Depends(RateLimit("2/minute", key=["user", "ip"]))])
    async def x() -> dict[str, str]:
        return {}

    client = Client(app)
    with capture_logs() as events:
        assert client.statuses("/x", 3) == [200, 200, 429]
        assert client.statuses("/x", 1, ip="198.51.100.7") == [200]
    errors = [e for e in events if e["event"] == "key_error"]
    assert len(errors) == 1 and "AuthenticationMiddleware" in errors[0]["detail"]


def test_the_429_is_in_the_openapi_schema() -> None:
    schema = make_fastapi_app(clock=FakeClock()).openapi()
    for path in ("/me", "/team/a", "/reports"):  # dependency, router dependency, YAML route
        answer = schema["paths"][path]["get"]["responses"]["429"]
        assert {"Retry-After", "X-RateLimit-Remaining", "RateLimit"} <= set(answer["headers"])
        assert "application/problem+json" in answer["content"]
    assert "429" not in schema["paths"]["/health"]["get"]["responses"]


def test_metrics_and_admin_usage_and_reset_see_the_dependency_route() -> None:
    metrics = RateLimitMetrics(CollectorRegistry())
    client = Client(make_fastapi_app(metrics=metrics, clock=FakeClock()))
    client.statuses("/me", 4, token="token-alice")
    limited = metrics.registry.get_sample_value(
        "ratelimit_decisions_total", {"route": "dependency:GET /me", "policy": "", "outcome": "limited"})
    assert limited == 1
    query = {"route": "dependency:GET /me", "key": "user:alice"}
    auth = {"Authorization": f"Bearer {ADMIN}"}
    usage = client.get("/admin/usage", params=query, headers=auth)
    assert usage.status_code == 200 and json.loads(usage.text)["limits"][0]["remaining"] == 0
    assert client.request("DELETE", "/admin/usage", params=query, headers=auth).status_code == 200
    assert client.get("/me", token="token-alice").status_code == 200


def test_yaml_route_and_dependency_are_two_checks() -> None:
    app = FastAPI()
    setup(app, policies="version: 1\nroutes:\n  - {match: 'GET /both', limits: ['3/minute']}\n",
          backend="memory://", clock=FakeClock())

    @app.get("/both", dependencies=[Depends(RateLimit("1/minute", key="ip"))])
    async def both() -> dict[str, str]:
        return {}

    client = Client(app)
    first = client.get("/both")
    assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == "1"  # the stricter check's
    assert client.statuses("/both", 3) == [429, 429, 429]  # the dependency denies; YAML counted 3, denies the 4th
    assert client.get("/both").json()["violated-policies"] == ["3-per-minute"]


def test_the_stricter_checks_headers_win() -> None:
    app = FastAPI()
    setup(app, policies="version: 1\nroutes:\n  - {match: 'GET /yaml-stricter', limits: ['2/minute']}\n",
          backend="memory://", clock=FakeClock())

    @app.get("/yaml-stricter", dependencies=[Depends(RateLimit("5/minute", key="ip"))])
    async def yaml_stricter(request: Request) -> dict[str, int]:
        return {"limit": request.state.ratelimit.decision.limit}

    first = Client(app).get("/yaml-stricter")
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert first.json() == {"limit": 2}  # request.state.ratelimit holds the stricter decision too


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("alice", "alice"), (7, 7), ({"sub": "s1"}, "s1"),
])
def test_identity_of(value: object, expected: object) -> None:
    assert identity_of(value) == expected


def test_identity_of_an_unidentifiable_value_raises() -> None:
    with pytest.raises(TypeError):
        identity_of(object())


def test_user_key_reads_starlettes_authentication_middleware() -> None:
    from starlette.middleware.authentication import AuthenticationMiddleware

    from tests.asgi_frameworks.apps import BearerBackend

    app = FastAPI()
    setup(app, backend="memory://", clock=FakeClock(), middleware=False)
    app.add_middleware(AuthenticationMiddleware, backend=BearerBackend())

    @app.get("/x", dependencies=[Depends(RateLimit("2/minute", key=["user", "ip"]))])
    async def x() -> dict[str, str]:
        return {}

    client = Client(app)
    assert client.statuses("/x", 3, token="token-alice") == [200, 200, 429]
    assert client.statuses("/x", 2, token="token-bob") == [200, 200]
    assert client.statuses("/x", 2, ip="198.51.100.20") == [200, 200]
