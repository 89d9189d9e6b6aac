"""The Flask extension on real Flask apps with flask-login: users log in through a
login view and Flask's session cookie, and each request goes through Flask's test
client (the whole WSGI app: context, hooks, error handlers)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from structlog.testing import capture_logs

from ratelimit_mw import ConfigError, PolicyError, log
from ratelimit_mw.flask import EXTENSION, RateLimiter, RateLimitExceeded
from ratelimit_mw.testing import FakeClock
from tests.flask_integration.flask_apps import create_app, limiter

PROBLEM = "application/problem+json"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> Flask:
    return create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})


def client_for(app: Flask, user: str | None = None, ip: str = "198.51.100.1") -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    if user is not None:
        assert client.post("/login", data={"user": user}).status_code == 200
    return client


def statuses(client: FlaskClient, path: str, n: int) -> list[int]:
    return [client.get(path).status_code for _ in range(n)]


# -- users ---------------------------------------------------------------------------


def test_user_a_exhausts_the_limit_while_user_b_and_anonymous_ips_keep_theirs(app: Flask) -> None:
    # alice and bob share one IP (an office NAT): only the user key keeps them apart
    alice, bob = client_for(app, "alice"), client_for(app, "bob")
    anon1, anon2 = client_for(app, ip="203.0.113.7"), client_for(app, ip="203.0.113.8")
    assert statuses(alice, "/search", 4) == [200, 200, 200, 429]
    assert statuses(bob, "/search", 3) == [200, 200, 200]
    assert statuses(anon1, "/search", 3) == [200, 200, 200]
    assert anon1.get("/search").status_code == 429
    assert anon2.get("/search").status_code == 200
    assert alice.get("/search").status_code == 429


def test_a_logged_out_user_is_counted_by_ip(app: Flask) -> None:
    alice = client_for(app, "alice", ip="203.0.113.9")
    assert statuses(alice, "/search", 3) == [200, 200, 200]
    alice.post("/logout")
    assert statuses(alice, "/search", 3) == [200, 200, 200]  # a fresh bucket: ip:203.0.113.9
    assert alice.get("/search").status_code == 429


def test_the_user_key_works_in_yaml_routes_too(app: Flask) -> None:
    alice, bob = client_for(app, "alice"), client_for(app, "bob")
    assert statuses(alice, "/reports", 4) == [200, 200, 200, 429]
    assert bob.get("/reports").status_code == 200


def test_the_decision_is_on_g(app: Flask) -> None:
    alice = client_for(app, "alice")
    assert [alice.get("/search").get_json()["remaining"] for _ in range(3)] == [2, 1, 0]
    assert alice.get("/search").status_code == 429
    assert client_for(app).get("/health").get_json() is None  # exempt: g.ratelimit is None, no error


# -- the 429 ---------------------------------------------------------------------------


def test_the_429_is_problem_json_with_every_header(app: Flask) -> None:
    alice = client_for(app, "alice")
    ok = alice.get("/search")
    assert ok.headers["X-RateLimit-Limit"] == "3" and ok.headers["X-RateLimit-Remaining"] == "2"
    assert "RateLimit-Policy" in ok.headers and "RateLimit" in ok.headers
    statuses(alice, "/search", 2)
    denied = alice.get("/search")
    assert denied.status_code == 429
    assert denied.headers["Content-Type"] == PROBLEM
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert int(denied.headers["Retry-After"]) >= 1
    assert denied.headers["Cache-Control"] == "no-store"
    assert denied.headers.getlist("Retry-After") == [denied.headers["Retry-After"]]  # added once
    body = json.loads(denied.data)
    assert body["status"] == 429 and body["type"].endswith("quota-exceeded")


def test_an_errorhandler_renders_the_429_and_the_headers_are_still_added(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})
    seen: list[RateLimitExceeded] = []

    @app.errorhandler(429)
    def too_many(exc: Any) -> tuple[str, int]:
        seen.append(exc)
        return f"<h1>Slow down</h1><p>{exc.decision.limit} per minute</p>", 429

    alice = client_for(app, "alice")
    statuses(alice, "/search", 3)
    denied = alice.get("/search")
    assert denied.status_code == 429
    assert denied.data == b"<h1>Slow down</h1><p>3 per minute</p>"
    assert denied.headers["Content-Type"].startswith("text/html")
    assert int(denied.headers["Retry-After"]) >= 1 and denied.headers["X-RateLimit-Remaining"] == "0"
    assert isinstance(seen[0], RateLimitExceeded) and not seen[0].decision.allowed


def test_the_limit_refills_with_time(app: Flask, clock: FakeClock) -> None:
    alice = client_for(app, "alice")
    assert statuses(alice, "/search", 4) == [200, 200, 200, 429]
    clock.advance(20.0)  # 3/minute: one request back every 20 s
    assert statuses(alice, "/search", 2) == [200, 429]


# -- configuration ---------------------------------------------------------------------


def test_ratelimit_enabled_false_disables_every_limit() -> None:
    app = create_app(RATELIMIT_ENABLED=False)
    alice = client_for(app, "alice")
    answers = [alice.get(path) for path in ("/search", "/reports", "/api/a") for _ in range(12)]
    assert {r.status_code for r in answers} == {200}
    assert not any("X-RateLimit-Limit" in r.headers for r in answers)


def test_two_apps_from_one_factory_keep_their_own_counts_and_config(clock: FakeClock) -> None:
    first = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})
    second = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})
    off = create_app(RATELIMIT_ENABLED="false")
    assert statuses(client_for(first, "alice"), "/search", 4) == [200, 200, 200, 429]
    assert statuses(client_for(second, "alice"), "/search", 3) == [200, 200, 200]
    assert statuses(client_for(off, "alice"), "/search", 5) == [200] * 5
    assert first.extensions[EXTENSION].engine is not second.extensions[EXTENSION].engine


def test_an_invalid_policy_document_fails_init_app_with_line_and_field() -> None:
    with pytest.raises(PolicyError) as info:
        create_app(RATELIMIT_POLICIES="version: 1\nroutes:\n  - match: /x\n    limits: [\"ten per fortnight\"]\n")
    assert info.value.line == 4 and info.value.field == "routes[0].limits[0]"


def test_initialising_an_app_twice_is_refused(app: Flask) -> None:
    with pytest.raises(ConfigError, match="already initialised"):
        limiter.init_app(app)
    assert statuses(client_for(app, "alice"), "/search", 4) == [200, 200, 200, 429]  # counted once


def test_an_invalid_enabled_value_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="RATELIMIT_ENABLED"):
        create_app(RATELIMIT_ENABLED="perhaps")


def test_a_decorator_rate_that_does_not_parse_fails_at_decoration() -> None:
    local = RateLimiter()
    with pytest.raises(ConfigError) as info:

        @local.limit("5 per fortnight")
        def greedy() -> str:
            return "x"

    assert "greedy" in str(info.value) and "fortnight" in str(info.value)
    with pytest.raises(ConfigError, match=r"on blueprint 'bp'.*header"):
        from flask import Blueprint

        local.limit("5/minute", key="header:")(Blueprint("bp", __name__))
    with pytest.raises(ConfigError, match="usr"):
        local.limit("5/minute", key=["usr", "ip"])(lambda: "x")


def test_decorators_without_policies_need_no_policy_file(clock: FakeClock) -> None:
    local = RateLimiter(clock=clock)
    app = Flask("decorators_only")

    @app.get("/ping")
    @local.limit("2/minute", key="ip")
    def ping() -> str:
        return "pong"

    @app.get("/free")
    def free() -> str:
        return "free"

    local.init_app(app)
    client = client_for(app)
    assert statuses(client, "/ping", 3) == [200, 200, 429]
    assert statuses(client, "/free", 5) == [200] * 5


# -- blueprints and exemptions -----------------------------------------------------------


def test_a_blueprint_limit_is_one_bucket_over_its_views_and_exempt_views_skip_it(app: Flask) -> None:
    alice = client_for(app, "alice")
    assert [alice.get(p).status_code for p in ("/api/a", "/api/b", "/api/a", "/api/b")] == [200, 200, 429, 429]
    assert statuses(alice, "/api/open", 5) == [200] * 5
    assert "X-RateLimit-Limit" not in alice.get("/api/open").headers
    assert client_for(app, "bob").get("/api/b").status_code == 200


def test_the_yaml_route_and_the_decorator_both_apply_and_the_stricter_headers_win(app: Flask) -> None:
    alice = client_for(app, "alice")
    first = alice.get("/both")
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert statuses(alice, "/both", 2) == [200, 429]  # the decorator's 2/minute denies first


def test_an_exempt_blueprint_skips_the_yaml_routes(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock},
                     RATELIMIT_POLICIES={"version": 1, "unmatched": {"limits": ["1/minute"], "key": "ip"}})
    client = client_for(app)
    assert statuses(client, "/quiet/x", 4) == [200] * 4
    assert statuses(client, "/reports", 2) == [200, 429]  # the unmatched limit applies elsewhere


# -- bad input never becomes a 500 ---------------------------------------------------------


def _boom(request: Any) -> str:
    raise RuntimeError("the key function's bug")


def test_a_key_function_that_raises_still_limits_and_is_reported(clock: FakeClock) -> None:
    local = RateLimiter(clock=clock)
    app = Flask("raising_key")

    @app.get("/k")
    @local.limit("2/minute", key=_boom)
    def k() -> str:
        return "k"

    local.init_app(app)
    with capture_logs() as events:
        assert statuses(client_for(app), "/k", 3) == [200, 200, 429]  # the shared "unidentified" bucket
    errors = [e for e in events if e["event"] == log.KEY_ERROR]
    assert len(errors) == 3 and errors[0]["error"] == "RuntimeError" and errors[0]["route"].startswith("view:")


def test_key_functions_get_a_request_view_with_the_flask_request_or_nothing(clock: FakeClock) -> None:
    local = RateLimiter(clock=clock)
    app = Flask("key_functions")
    seen: list[Any] = []

    def by_tenant(req: Any) -> str:
        seen.append(req)
        return str(req.headers.get("x-tenant", ""))

    def by_tenant_flask_limiter_style() -> str:
        from flask import request

        return str(request.headers.get("X-Tenant", ""))

    @app.get("/a")
    @local.limit("1/minute", key=by_tenant)
    def a() -> str:
        return "a"

    @app.get("/b")
    @local.limit("1/minute", key=by_tenant_flask_limiter_style)
    def b() -> str:
        return "b"

    local.init_app(app)
    client = client_for(app)
    for path in ("/a", "/b"):
        assert client.get(path, headers={"X-Tenant": "t1"}).status_code == 200
        assert client.get(path, headers={"X-Tenant": "t1"}).status_code == 429
        assert client.get(path, headers={"X-Tenant": "t2"}).status_code == 200
    from flask import Request

    assert isinstance(seen[0].native, Request) and seen[0].native.path == "/a"
    assert seen[0].client == "198.51.100.1" and seen[0].environ["PATH_INFO"] == "/a"


def test_a_user_key_without_a_login_manager_warns_and_limits_by_the_next_entry(clock: FakeClock) -> None:
    local = RateLimiter(clock=clock)
    app = Flask("no_login_manager")

    @app.get("/u")
    @local.limit("2/minute", key=["user", "ip"])
    def u() -> str:
        return "u"

    local.init_app(app)
    with capture_logs() as events:
        assert statuses(client_for(app, ip="192.0.2.1"), "/u", 3) == [200, 200, 429]
        assert statuses(client_for(app, ip="192.0.2.2"), "/u", 2) == [200, 200]
    reported = [e for e in events if "LoginManager" in str(e.get("detail", ""))]
    assert len(reported) == 1 and reported[0]["key_function"] == "user"


def test_hostile_paths_and_headers_never_500_and_never_escape(app: Flask) -> None:
    alice = client_for(app, "alice")
    answers = [alice.get("/search", headers={"X-Forwarded-For": "garbage, , 1.2.3.4"}) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    for path in ("/%ff%fe", "/caf\u00e9", "/" + "a" * 5000, "/search/", "/SEARCH", "/search?q=%00"):
        assert alice.get(path).status_code < 500
    assert alice.get("/search?q=other").status_code == 429  # a query string is the same route


def test_a_backend_that_is_down_never_becomes_a_500(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_BACKEND="redis://127.0.0.1:1/0",  # the policies' default: allow
                     RATELIMIT_LIMITER_OPTIONS={"socket_timeout": 0.05, "socket_connect_timeout": 0.05})
    alice = client_for(app, "alice")
    assert statuses(alice, "/search", 5) == [200] * 5
    deny = {"version": 1, "defaults": {"key": ["user", "ip"], "on_backend_error": "deny"}}
    strict = create_app(RATELIMIT_BACKEND="redis://127.0.0.1:1/0", RATELIMIT_POLICIES=deny,
                        RATELIMIT_LIMITER_OPTIONS={"socket_timeout": 0.05, "socket_connect_timeout": 0.05})
    assert statuses(client_for(strict, "alice"), "/search", 2) == [429, 429]  # fail closed, never a 500


def test_an_engine_can_be_shared_through_the_config(clock: FakeClock) -> None:
    from ratelimit_mw.engine import build_engine

    engine = build_engine({"version": 1, "defaults": {"key": "ip"}}, "memory://", clock=clock)
    first = create_app(RATELIMIT_ENGINE=engine, RATELIMIT_POLICIES=None)
    second = create_app(RATELIMIT_ENGINE=engine, RATELIMIT_POLICIES=None)
    assert statuses(client_for(first, "alice"), "/search", 2) == [200, 200]
    assert statuses(client_for(second, "alice"), "/search", 2) == [200, 429]  # one engine, one count
    with pytest.raises(ConfigError, match="RATELIMIT_ENGINE"):
        create_app(RATELIMIT_ENGINE=engine)  # and the factory's RATELIMIT_POLICIES


def test_a_custom_response_wins_over_our_headers_it_already_sets(app: Flask) -> None:
    @app.get("/own")
    @limiter.limit("10/minute")
    def own() -> Response:
        return Response("x", headers={"X-RateLimit-Limit": "999"})

    answer = client_for(app).get("/own")
    assert answer.headers.getlist("X-RateLimit-Limit") == ["999"]
    assert answer.headers["X-RateLimit-Remaining"] == "9"


# -- views of every shape, proxies, hooks, the admin API -----------------------------------


def test_class_based_views_are_limited_by_their_decorators(clock: FakeClock) -> None:
    from flask.views import MethodView

    local = RateLimiter(clock=clock)
    app = Flask("class_views")

    class Listed(MethodView):
        decorators: ClassVar[list[Any]] = [local.limit("2/minute", key="ip")]

        def get(self) -> str:
            return "listed"

    @local.limit("1/minute", key="ip")
    class Decorated(MethodView):
        def get(self) -> str:
            return "decorated"

    app.add_url_rule("/listed", view_func=Listed.as_view("listed"))
    app.add_url_rule("/decorated", view_func=Decorated.as_view("decorated"))
    local.init_app(app)
    client = client_for(app)
    assert statuses(client, "/listed", 3) == [200, 200, 429]
    assert statuses(client, "/decorated", 2) == [200, 429]


def test_proxyfix_does_not_widen_whom_the_limiter_trusts(clock: FakeClock) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = client_for(app, ip="192.0.2.50")  # no trusted_proxies: the peer is the client
    forged = [client.get("/search", headers={"X-Forwarded-For": f"10.9.9.{i}"}).status_code for i in range(4)]
    assert forged == [200, 200, 200, 429]


def test_a_hook_that_answers_early_does_not_skip_the_limits(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})

    @app.before_request
    def everyone_is_redirected() -> Response:
        return Response("go away", status=302, headers={"Location": "/elsewhere"})

    client = client_for(app)
    assert statuses(client, "/search", 4) == [302, 302, 302, 429]


def test_the_admin_api_reads_and_resets_a_decorated_view_by_its_route_name(app: Flask) -> None:
    from werkzeug.test import Client

    from ratelimit_mw.admin import admin_wsgi_app

    admin = Client(admin_wsgi_app(app.extensions[EXTENSION].engine, token="admin-token-0123456789"))
    auth = {"Authorization": "Bearer admin-token-0123456789"}
    alice = client_for(app, "alice")
    assert statuses(alice, "/search", 4) == [200, 200, 200, 429]
    route = "view:tests.flask_integration.flask_apps.search"
    usage = admin.get("/usage", query_string={"key": "user:alice", "route": route}, headers=auth)
    assert usage.status_code == 200, usage.get_data(as_text=True)
    assert usage.get_json()["limits"][0]["remaining"] == 0
    assert admin.delete("/usage", query_string={"key": "user:alice", "route": route}, headers=auth).status_code < 300
    assert alice.get("/search").status_code == 200


def test_a_user_key_without_flask_login_installed_warns_at_start_up_and_limits_by_ip() -> None:
    script = """
import logging, sys
sys.modules["flask_login"] = None          # as if it were not installed
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from flask import Flask
from ratelimit_mw.flask import RateLimiter
app = Flask("no_flask_login")
app.config["RATELIMIT_POLICIES"] = {"version": 1, "routes": [{"match": "/u", "limits": ["2/minute"],
                                                              "key": ["user", "ip"]}]}
RateLimiter(app)
app.add_url_rule("/u", "u", lambda: "u")
client = app.test_client()
print("STATUSES", [client.get("/u").status_code for _ in range(3)])
other = app.test_client()
other.environ_base["REMOTE_ADDR"] = "192.0.2.9"
print("OTHER", other.get("/u").status_code)
"""
    import subprocess
    import sys

    from tests.support.http_servers import ROOT

    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STATUSES [200, 200, 429]" in proc.stdout and "OTHER 200" in proc.stdout
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("user_key_unavailable")]
    assert len(warnings) == 1 and "flask-login is not installed" in warnings[0]


# -- plans -------------------------------------------------------------------------------------


def test_each_user_gets_the_limits_of_their_plan(app: Flask) -> None:
    alice, bob = client_for(app, "alice"), client_for(app, "bob")  # free: 2/minute, pro: 5/minute
    assert statuses(alice, "/plan-data", 3) == [200, 200, 429]
    assert statuses(bob, "/plan-data", 6) == [200] * 5 + [429]
    assert statuses(client_for(app, ip="203.0.113.77"), "/plan-data", 3) == [200, 200, 429]  # default: free


def test_a_plan_change_through_the_admin_api_moves_a_user_to_another_limit(app: Flask) -> None:
    from werkzeug.test import Client

    from ratelimit_mw.admin import admin_wsgi_app

    admin = Client(admin_wsgi_app(app.extensions[EXTENSION].engine, token="admin-token-0123456789"))
    auth = {"Authorization": "Bearer admin-token-0123456789"}
    alice = client_for(app, "alice")
    assert statuses(alice, "/plan-data", 3) == [200, 200, 429]
    changed = admin.patch("/policies", json={"plans": {"free": "pro"}}, headers=auth)
    assert changed.status_code == 200, changed.get_data(as_text=True)
    answer = alice.get("/plan-data")
    assert answer.status_code == 200 and answer.headers["X-RateLimit-Limit"] == "5"
    assert alice.get("/search").headers["X-RateLimit-Limit"] == "3"  # the decorated view kept its limit


# -- more shapes: nested blueprints, defaults, error responses -------------------------------


def test_nested_blueprints_inherit_their_parents_limits(clock: FakeClock) -> None:
    from flask import Blueprint

    local = RateLimiter(clock=clock)
    parent, child, quiet = Blueprint("parent", __name__), Blueprint("child", __name__), Blueprint("quiet", __name__)
    local.limit("2/minute", key="ip")(parent)
    local.limit("3/minute", key="header:X-Team")(child)
    local.exempt(quiet)
    child.add_url_rule("/c", "c", lambda: "c")
    quiet.add_url_rule("/q", "q", lambda: "q")
    parent.register_blueprint(child, url_prefix="/child")
    parent.register_blueprint(quiet, url_prefix="/quiet")
    app = Flask("nested")
    app.register_blueprint(parent, url_prefix="/p")
    local.init_app(app)
    client = client_for(app)
    first = client.get("/p/child/c", headers={"X-Team": "t"})
    assert first.headers["X-RateLimit-Limit"] == "2"  # the stricter of the two limits
    assert [client.get("/p/child/c", headers={"X-Team": "t"}).status_code for _ in range(2)] == [200, 429]
    assert statuses(client, "/p/quiet/q", 4) == [200] * 4


def test_unmatched_is_the_default_for_views_without_limits_of_their_own(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock},
                     RATELIMIT_POLICIES={"version": 1, "defaults": {"key": "ip"},
                                         "unmatched": {"limits": ["1/minute"]}})
    client = client_for(app)
    assert statuses(client, "/reports", 2) == [200, 429]   # no limit of its own: the default
    assert statuses(client, "/search", 4) == [200, 200, 200, 429]  # its own 3/minute only


def test_error_responses_carry_the_headers_too(clock: FakeClock) -> None:
    app = create_app(RATELIMIT_LIMITER_OPTIONS={"clock": clock})

    @app.get("/broken")
    @limiter.limit("5/minute")
    def broken() -> str:
        raise RuntimeError("the view's bug")

    client = client_for(app)
    failed = client.get("/broken")
    assert failed.status_code == 500 and failed.headers["X-RateLimit-Remaining"] == "4"
    missing = client.get("/api/nothing-here")  # a YAML route (/api/**) with no view: 404
    assert missing.status_code == 404 and missing.headers["X-RateLimit-Limit"] == "10"


def test_a_user_loader_that_raises_is_reported_and_the_request_limited_by_ip(clock: FakeClock) -> None:
    from flask import session
    from flask_login import LoginManager

    local = RateLimiter(clock=clock)
    app = Flask("raising_loader")
    app.config["SECRET_KEY"] = "test-secret-key-0123456789"
    manager = LoginManager(app)

    @manager.user_loader
    def load_user(user_id: str) -> None:
        raise LookupError("the user database is down")

    @app.post("/pretend-login")
    def pretend_login() -> str:
        session["_user_id"] = "alice"  # what login_user() stores
        return "ok"

    @app.get("/k")
    @local.limit("2/minute", key=["user", "ip"])
    def k() -> str:
        return "k"

    local.init_app(app)
    client = client_for(app)
    client.post("/pretend-login")
    with capture_logs() as events:
        assert statuses(client, "/k", 3) == [200, 200, 429]
    assert [e["error"] for e in events if e["event"] == log.KEY_ERROR] == ["LookupError"] * 3
