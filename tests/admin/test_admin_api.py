"""The admin API through both adapters (Starlette/ASGI and plain WSGI), mounted at /admin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from anyio.from_thread import start_blocking_portal
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.admin import TOKEN_ENV, AdminAPI, AdminRequest, admin_app, admin_wsgi_app, merge_patch
from ratelimit_mw.engine import Engine
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock, FakeRequest

TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "SECRET-abc"

POLICIES_YAML = """\
version: 1
defaults:
  key: [header:X-API-Key, ip]
policies:
  free: {limits: ["5/minute"]}
routes:
  - match: "GET /resource"
    policy: free
  - match: "/two"
    limits: ["2/second; name=burst", "3/minute; name=sustained"]
  - match: "/health"
    exempt: true
"""

NEW_YAML = """\
version: 1
routes:
  - match: "GET /resource"
    limits: ["1/minute"]
"""

Call = Callable[..., httpx.Response]


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on the memory backend, or on Redis with ``indirect`` param ``"redis"``."""
    backend = request.getfixturevalue("redis_url") if getattr(request, "param", "memory") == "redis" else "memory://"
    limiter = Limiter(backend, clock=FakeClock())
    yield Engine(load_policies(POLICIES_YAML), limiter)
    limiter.close()


BACKENDS = pytest.mark.parametrize("engine", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)


def _wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"app"]


@pytest.fixture(params=["asgi", "wsgi"])
def call(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Call]:
    """``call(method, url, **httpx_kwargs)`` against the admin API mounted at /admin."""
    if request.param == "wsgi":
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        app = DispatcherMiddleware(_wsgi_inner, {"/admin": admin_wsgi_app(engine, token=TOKEN)})
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://admin") as client:
            yield client.request
        return
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/admin", app=admin_app(engine, token=TOKEN))])
    # A portal runs the event loop in a thread, so the tests stay synchronous and the
    # admin's worker threads can still call back into the loop.
    with start_blocking_portal() as portal:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://admin")

        def request(*args: Any, **kwargs: Any) -> httpx.Response:
            return portal.call(lambda: client.request(*args, **kwargs))

        yield request
        portal.call(client.aclose)
        portal.call(engine.limiter.aclose)  # async connections belong to this loop


# -- construction and authentication ----------------------------------------------------


def test_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="bearer token"):
        admin_app(engine)
    with pytest.raises(ConfigError, match="bearer token"):
        admin_wsgi_app(engine)
    with pytest.raises(ConfigError, match="at least 16"):
        admin_app(engine, token="short")
    AdminAPI(engine, allow_unauthenticated=True)  # explicit local use
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    api = AdminAPI(engine)
    assert api.handle(AdminRequest("GET", "/health", headers={"authorization": f"Bearer {TOKEN}"})).status == 200


def test_unauthenticated_mode_answers_without_a_token(engine: Engine) -> None:
    api = AdminAPI(engine, allow_unauthenticated=True)
    assert api.handle(AdminRequest("GET", "/health")).status == 200


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        pytest.param({}, 'Bearer realm="ratelimit-admin"', id="missing"),
        pytest.param({"Authorization": "Bearer wrong-token-0123456789"}, 'error="invalid_token"', id="wrong"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, 'error="invalid_token"', id="wrong-scheme"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, 'error="invalid_token"', id="longer"),
    ],
)
def test_every_endpoint_needs_the_token(call: Call, headers: dict[str, str], challenge: str) -> None:
    for method, path in [("GET", "/policies"), ("PUT", "/policies"), ("GET", "/usage"), ("GET", "/nope")]:
        response = call(method, "/admin" + path, headers=headers, content=NEW_YAML)
        assert response.status_code == 401
        assert challenge in response.headers["WWW-Authenticate"]


def test_token_is_case_insensitive_in_scheme_only(call: Call) -> None:
    assert call("GET", "/admin/health", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert call("GET", "/admin/health", headers={"Authorization": f"Bearer {TOKEN.upper()}"}).status_code == 401


def test_the_token_never_reaches_a_log(call: Call) -> None:
    with capture_logs() as events:
        call("GET", "/admin/policies", headers={"Authorization": "Bearer wrong-token-0123456789"})
        call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": "application/yaml"}, content="x: [")
        call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": "application/yaml"}, content=NEW_YAML)
    assert events, "the changes should have been logged"
    for event in events:
        assert TOKEN not in repr(event) and "wrong-token" not in repr(event)


def test_unknown_paths_and_methods(call: Call) -> None:
    assert call("GET", "/admin/nope", headers=AUTH).status_code == 404
    response = call("POST", "/admin/policies", headers=AUTH)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "PUT", "PATCH"}


# -- policies --------------------------------------------------------------------------


def test_get_policies_as_json_and_yaml(call: Call, engine: Engine) -> None:
    response = call("GET", "/admin/policies", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == engine.policies.document
    assert response.headers["ETag"].startswith('"')
    as_yaml = call("GET", "/admin/policies?format=yaml", headers=AUTH)
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == engine.policies.document
    assert call("GET", "/admin/policies?format=xml", headers=AUTH).status_code == 400


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/yaml", NEW_YAML, id="yaml"),
        pytest.param("text/yaml; charset=utf-8", NEW_YAML, id="text-yaml"),
        pytest.param(
            "application/json",
            '{"version": 1, "routes": [{"match": "GET /resource", "limits": ["1/minute"]}]}',
            id="json",
        ),
        pytest.param(
            "application/json",
            '{\n\t"version": 1,\n\t"routes": [{"match": "GET /resource", "limits": ["1/minute"]}]\n}',
            id="json-tab-indented",
        ),
    ],
)
def test_put_replaces_the_policies(call: Call, engine: Engine, content_type: str, body: str) -> None:
    request = FakeRequest("GET", "/resource", {"x-api-key": "a"})
    assert engine.decide(request).decision.limit == 5
    response = call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": content_type}, content=body)
    assert response.status_code == 200, response.text
    assert response.json()["routes"] == ["GET /resource"]
    assert engine.policies.source == "<admin>"
    assert engine.decide(request).decision.limit == 1  # the new limit applies at once
    assert engine.decide(request).reject


@pytest.mark.parametrize(
    ("content_type", "body", "line", "field"),
    [
        pytest.param(
            "application/yaml",
            "version: 1\nroutes:\n  - match: GET /x\n    limits: ['ten per minute']\n",
            4,
            "routes[0].limits[0]",
            id="bad-rate",
        ),
        pytest.param("application/yaml", "version: 1\nroutes: [\n", 3, None, id="yaml-syntax"),
        pytest.param("application/yaml", "version: 2\n", 1, "version", id="bad-version"),
        pytest.param("application/json", '{"version": 1,\n "routes": }', 2, None, id="bad-json"),
        pytest.param(
            "application/json",
            '{"version": 1, "routes": [{"match": "GET /x", "limitz": ["1/second"]}]}',
            1,
            "routes[0].limitz",
            id="unknown-field",
        ),
    ],
)
def test_an_invalid_put_changes_nothing_and_says_where(
    call: Call, engine: Engine, content_type: str, body: str, line: int, field: str | None
) -> None:
    before = engine.policies
    response = call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": content_type}, content=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid_policies"
    assert (answer["file"], answer["line"], answer["field"]) == ("<request>", line, field)
    assert answer["reason"]
    assert engine.policies is before


def test_a_body_is_never_read_as_a_path_nor_interpolated_from_the_environment(
    call: Call, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    target = tmp_path / "secret.yaml"
    target.write_text(NEW_YAML)
    yaml_type = {**AUTH, "Content-Type": "application/yaml"}
    assert call("PUT", "/admin/policies", headers=yaml_type, content=str(target)).status_code == 400
    monkeypatch.setenv("SERVER_SECRET", "hunter2-server-secret")
    leak = 'version: 1\nroutes:\n  - match: "GET /x"\n    limits: ["${SERVER_SECRET}"]\n'
    response = call("PUT", "/admin/policies", headers=yaml_type, content=leak)
    assert response.status_code == 400
    assert "hunter2" not in response.text
    assert engine.policies.source == "<string>"


def test_put_rejects_other_media_types_and_huge_bodies(call: Call) -> None:
    response = call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": "text/html"}, content=NEW_YAML)
    assert response.status_code == 415
    huge = NEW_YAML + "#" * (1 << 20)
    response = call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": "application/yaml"}, content=huge)
    assert response.status_code == 413


def test_patch_merges_onto_the_active_document(call: Call, engine: Engine) -> None:
    patch_type = {**AUTH, "Content-Type": "application/merge-patch+json"}
    response = call(
        "PATCH", "/admin/policies", headers=patch_type, json={"policies": {"free": {"limits": ["2/minute"]}}}
    )
    assert response.status_code == 200, response.text
    document = call("GET", "/admin/policies", headers=AUTH).json()
    assert document["policies"] == {"free": {"limits": ["2/minute"]}}
    assert document["routes"] == load_policies(POLICIES_YAML).document["routes"]  # untouched
    request = FakeRequest("GET", "/resource", {"x-api-key": "a"})
    assert [engine.decide(request).reject for _ in range(3)] == [False, False, True]


def test_patch_null_removes_a_member(call: Call, engine: Engine) -> None:
    patch_type = {**AUTH, "Content-Type": "application/merge-patch+json"}
    assert call("PATCH", "/admin/policies", headers=patch_type, json={"defaults": None}).status_code == 200
    assert "defaults" not in engine.policies.document
    assert engine.policies.routes[0].key_spec == "ip"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        pytest.param("application/merge-patch+json", '{"version": 7}', 400, id="invalid-result"),
        pytest.param("application/merge-patch+json", "[1, 2]", 400, id="not-an-object"),
        pytest.param("application/merge-patch+json", "{", 400, id="bad-json"),
        pytest.param("application/yaml", "version: 1\n", 415, id="yaml-is-not-a-merge-patch"),
    ],
)
def test_an_invalid_patch_changes_nothing(
    call: Call, engine: Engine, content_type: str, body: str, status: int
) -> None:
    before = engine.policies
    response = call("PATCH", "/admin/policies", headers={**AUTH, "Content-Type": content_type}, content=body)
    assert response.status_code == status
    assert engine.policies is before


def test_if_match_makes_a_change_conditional(call: Call, engine: Engine) -> None:
    etag = call("GET", "/admin/policies", headers=AUTH).headers["ETag"]
    yaml_type = {**AUTH, "Content-Type": "application/yaml"}
    assert call("PUT", "/admin/policies", headers={**yaml_type, "If-Match": etag}, content=NEW_YAML).status_code == 200
    stale = call("PUT", "/admin/policies", headers={**yaml_type, "If-Match": etag}, content=POLICIES_YAML)
    assert stale.status_code == 412
    assert len(engine.policies.routes) == 1
    patch = {**AUTH, "Content-Type": "application/merge-patch+json", "If-Match": etag}
    assert call("PATCH", "/admin/policies", headers=patch, json={"version": 1}).status_code == 412


# -- usage -----------------------------------------------------------------------------


@BACKENDS
def test_usage_reads_and_resets_one_clients_quota(call: Call, engine: Engine) -> None:
    for _ in range(3):
        engine.decide(FakeRequest("GET", "/resource", {"x-api-key": SECRET}))
    query = {"key": f"header:x-api-key:{SECRET}", "method": "GET", "path": "/resource"}
    usage = call("GET", "/admin/usage", headers=AUTH, params=query)
    assert usage.status_code == 200
    answer = usage.json()
    assert answer["route"] == "GET /resource" and answer["policy"] == "free"
    assert answer["key_hash"] == engine.limiter.hash_key(f"header:x-api-key:{SECRET}")
    assert SECRET not in usage.text
    [limit] = answer["limits"]
    assert (limit["limit"], limit["remaining"], limit["allowed"]) == (5, 2, True)
    assert limit["reset_after"] == pytest.approx(36.0)

    other = call("GET", "/admin/usage", headers=AUTH, params={**query, "key": "header:x-api-key:other"})
    assert other.json()["limits"][0]["remaining"] == 5

    reset = call("DELETE", "/admin/usage", headers=AUTH, params=query)
    assert reset.status_code == 200 and reset.json()["status"] == "reset"
    assert call("GET", "/admin/usage", headers=AUTH, params=query).json()["limits"][0]["remaining"] == 5


@BACKENDS
def test_usage_reports_each_limit_of_a_route(call: Call, engine: Engine) -> None:
    for _ in range(2):
        engine.decide(FakeRequest("GET", "/two", peer="203.0.113.5"))
    answer = call("GET", "/admin/usage", headers=AUTH, params={"key": "ip:203.0.113.5", "path": "/two"}).json()
    assert [(x["name"], x["limit"], x["remaining"], x["allowed"]) for x in answer["limits"]] == [
        ("burst", 2, 0, False),
        ("sustained", 3, 1, True),
    ]
    assert answer["allowed"] is False


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        pytest.param({"path": "/resource"}, 400, "bad_request", id="no-key"),
        pytest.param({"key": "ip:1.2.3.4"}, 400, "bad_request", id="no-path"),
        pytest.param({"key": "ip:1.2.3.4", "path": "/nowhere"}, 404, "no_route", id="no-route"),
        pytest.param({"key": "ip:1.2.3.4", "path": "/resource", "method": "POST"}, 404, "no_route", id="method"),
    ],
)
def test_usage_errors(call: Call, params: dict[str, str], status: int, error: str) -> None:
    response = call("GET", "/admin/usage", headers=AUTH, params=params)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_usage_of_an_exempt_route(call: Call) -> None:
    answer = call("GET", "/admin/usage", headers=AUTH, params={"key": "ip:1.2.3.4", "path": "/health"}).json()
    assert answer["exempt"] is True and answer["limits"] == []


# -- introspection ------------------------------------------------------------------------


def test_health_and_explain(call: Call, engine: Engine) -> None:
    health = call("GET", "/admin/health", headers=AUTH).json()
    assert health["status"] == "ok" and health["breaker"] == "closed"
    assert health["backend"] == "MemoryBackend"
    assert health["policies"]["source"] == "<string>" and health["policies"]["routes"] == 3
    assert health["sync"] is None
    explained = call("GET", "/admin/explain", headers=AUTH, params={"method": "get", "path": "/resource"}).json()
    assert explained["route"] == "GET /resource" and explained["policy"] == "free"
    assert call("GET", "/admin/explain", headers=AUTH).status_code == 400


# -- merge patch (RFC 7386, appendix A) ----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_changes_are_logged(engine: Engine) -> None:
    api = AdminAPI(engine, token=TOKEN)
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"}
    with capture_logs() as events:
        api.handle(AdminRequest("PUT", "/policies", headers=headers, body=NEW_YAML.encode()))
        api.handle(AdminRequest("PUT", "/policies", headers=headers, body=b"version: 3\n"))
    assert [(e["event"], e["origin"]) for e in events] == [
        (log.POLICIES_RELOADED, "admin"),
        (log.POLICIES_RELOAD_FAILED, "admin"),
    ]
