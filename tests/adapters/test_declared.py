"""Limits declared in code join the engine: compiled like YAML routes, kept over policy
swaps, replaced when declared differently, and switched off with RATELIMIT_ENABLED."""

from __future__ import annotations

import json

import pytest

from ratelimit_mw.admin import AdminAPI, AdminRequest
from ratelimit_mw.core.keys import VIEW_ACCESS
from ratelimit_mw.engine import Engine, build_engine
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.settings import env_enabled
from ratelimit_mw.testing import FakeClock, FakeRequest

POLICIES = "version: 1\ndefaults: {key: 'header:X-API-Key'}\nroutes:\n  - {match: /a, limits: ['5/minute']}\n"


def engine(enabled: bool | None = True, text: str = POLICIES) -> Engine:
    return Engine(load_policies(text), Limiter("memory://", clock=FakeClock()), enabled=enabled)


def allowed(eng: Engine, name: str, key: str = "k1", n: int = 3) -> list[bool]:
    plan = eng.router(VIEW_ACCESS).named(name)
    assert plan is not None
    out = []
    for _ in range(n):
        verdict = plan.decide(FakeRequest("GET", "/v", {"X-API-Key": key}))
        assert verdict is not None
        out.append(not verdict.reject)
    return out


def test_declared_route_limits_with_the_default_key_and_headers() -> None:
    eng = engine()
    eng.declare("view:app.index", "2/minute")
    assert allowed(eng, "view:app.index") == [True, True, False]
    assert allowed(eng, "view:app.index", key="k2", n=1) == [True]
    verdict = eng.router(VIEW_ACCESS).named("view:app.index").decide(  # type: ignore[union-attr]
        FakeRequest("GET", "/v", {"X-API-Key": "k3"}))
    assert verdict is not None and ("X-RateLimit-Limit", "2") in verdict.headers


def test_several_limits_and_an_own_key() -> None:
    eng = engine()
    eng.declare("view:x", "1/second;2/minute", key="header:X-User", source="dependency")
    route = eng.declared["view:x"]
    assert [str(r) for r in route.rules] == ["1/second", "2/minute"]
    assert (route.key_spec, route.extra["source"]) == ("header:X-User", "dependency")


def test_declaration_survives_a_policy_swap_and_same_declaration_is_a_no_op() -> None:
    eng = engine()
    eng.declare("view:a", "1/minute")
    router = eng.router(VIEW_ACCESS)
    plan = router.named("view:a")
    eng.declare("view:a", "1/minute")
    assert router.named("view:a") is plan
    eng.set_policies(load_policies(POLICIES.replace("X-API-Key", "X-Other")))
    assert eng.declared["view:a"].key_spec == "header:X-Other"  # the new default key
    assert router.named("view:a") is not None


def test_declaring_other_limits_replaces_the_route() -> None:
    eng = engine()
    eng.declare("view:a", "1/minute")
    eng.declare("view:a", "3/minute")
    assert allowed(eng, "view:a", n=4) == [True, True, True, False]


@pytest.mark.parametrize(("limits", "message"), [
    ("5/fortnight", "decorator 'view:bad'.*unknown unit"),
    ("five a minute", "decorator 'view:bad'.*invalid rate"),
    ([], "at least one limit"),
])
def test_a_rate_that_does_not_parse_names_the_declaration(limits: object, message: str) -> None:
    eng = engine()
    with pytest.raises(ConfigError, match=message):
        eng.declare("view:bad", limits)  # type: ignore[arg-type]
    assert eng.router(VIEW_ACCESS).named("view:bad") is None


def test_a_bad_key_names_the_declaration() -> None:
    with pytest.raises(ConfigError, match="dependency 'dep:x': invalid key"):
        engine().declare("dep:x", "1/minute", key="haeder:X", source="dependency")


def test_disabled_engine_limits_nothing() -> None:
    eng = engine(enabled=False)
    eng.declare("view:a", "1/minute")
    router = eng.router(VIEW_ACCESS)
    assert router.named("view:a") is None
    assert router.plan("GET", "/a") is None
    eng.enabled = True
    assert router.named("view:a") is not None and router.plan("GET", "/a") is not None


@pytest.mark.parametrize(("value", "expected"), [
    ("", True), ("true", True), ("1", True), ("On", True),
    ("false", False), ("0", False), ("no", False), (" OFF ", False),
])
def test_ratelimit_enabled_variable(value: str, expected: bool) -> None:
    assert env_enabled({"RATELIMIT_ENABLED": value}) is expected
    eng = build_engine("version: 1\nunmatched: {limits: ['1/minute']}\n", "memory://",
                       env={"RATELIMIT_ENABLED": value})
    assert (eng.router(VIEW_ACCESS).plan("GET", "/") is not None) is expected


def test_a_typo_in_ratelimit_enabled_is_an_error() -> None:
    with pytest.raises(ConfigError, match="RATELIMIT_ENABLED"):
        env_enabled({"RATELIMIT_ENABLED": "flase"})


def test_admin_usage_and_reset_by_declared_name() -> None:
    eng = engine()
    eng.declare("view:a", "2/minute")
    allowed(eng, "view:a", n=2)
    api = AdminAPI(eng, token="t" * 32)
    auth = {"authorization": "Bearer " + "t" * 32}
    query = {"route": "view:a", "key": "header:x-api-key:k1"}
    usage = api.handle(AdminRequest("GET", "/usage", query, auth, b""))
    assert usage.status == 200 and json.loads(usage.body)["limits"][0]["remaining"] == 0
    assert api.handle(AdminRequest("DELETE", "/usage", query, auth, b"")).status == 200
    assert allowed(eng, "view:a", n=1) == [True]
    missing = api.handle(AdminRequest("GET", "/usage", {"route": "view:nope", "key": "x"}, auth, b""))
    assert missing.status == 404


def test_a_router_rebuilt_without_a_declaration_binds_it_on_first_use() -> None:
    """A policy swap in another thread may rebuild a router from a set of declared routes
    taken just before a declare(): the declared route must not go unlimited."""
    eng = engine()
    router = eng.router(VIEW_ACCESS)
    eng.declare("view:a", "1/minute")
    router.rebuild(eng.policies, {}, [], {})  # as a concurrent swap would leave it
    assert allowed(eng, "view:a", n=2) == [True, False]
