"""Plans and ``exempt_when``: one compiled route per plan, picked per request; a missing,
unknown or failing plan gets the default plan (never unlimited); an admin change of a
plan's policy takes effect at once; a failing ``exempt_when`` does not exempt."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from ratelimit_mw.admin import AdminAPI, AdminRequest
from ratelimit_mw.core.keys import VIEW_ACCESS
from ratelimit_mw.engine import Engine
from ratelimit_mw.errors import PolicyError
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock, FakeRequest

HERE = __name__
PLAN_OF = {"alice": "pro", "bob": "free", "carol": "platinum"}


def plan_of(request: Any) -> str | None:
    user = request.header("x-user")
    if user == "mallory":
        raise RuntimeError("billing database down")
    return PLAN_OF.get(user or "")


def is_staff(request: Any) -> bool:
    if request.header("x-user") == "broken":
        raise RuntimeError("directory down")
    return request.header("x-staff") == "yes"


POLICIES = f"""
version: 1
policies:
  free: {{limits: ["2/minute"]}}
  pro: {{limits: ["5/minute"]}}
plans: {{default: free, free: free, pro: pro}}
routes:
  - match: "GET /data"
    plan: call:{HERE}:plan_of
    key: header:X-User
    exempt_when: call:{HERE}:is_staff
  - match: "GET /h"
    plan: header:X-Plan
    key: header:X-User
"""


def engine() -> Engine:
    return Engine(load_policies(POLICIES), Limiter("memory://", clock=FakeClock()), enabled=True)


def allowed(eng: Engine, user: str, n: int, path: str = "/data", **headers: str) -> list[bool]:
    plan = eng.router(VIEW_ACCESS).plan("GET", path)
    assert plan is not None
    out = []
    for _ in range(n):
        verdict = plan.decide(FakeRequest("GET", path, {"X-User": user, **headers}))
        out.append(verdict is None or not verdict.reject)
    return out


def test_each_client_gets_its_plans_limits() -> None:
    eng = engine()
    assert allowed(eng, "alice", 6) == [True] * 5 + [False]
    assert allowed(eng, "bob", 3) == [True, True, False]
    assert allowed(eng, "dave", 3) == [True, True, False]  # no plan: the default


def test_the_verdict_names_the_plans_policy() -> None:
    plan = engine().router(VIEW_ACCESS).plan("GET", "/data")
    verdict = plan.decide(FakeRequest("GET", "/data", {"X-User": "alice"}))  # type: ignore[union-attr]
    assert verdict is not None and verdict.route.policy == "pro" and ("X-RateLimit-Limit", "5") in verdict.headers


def test_unknown_plan_gets_the_default_and_is_logged_once() -> None:
    eng = engine()
    with capture_logs() as events:
        assert allowed(eng, "carol", 3) == [True, True, False]
    assert [e["plan"] for e in events if e["event"] == "plan_unknown"] == ["platinum"]


def test_a_raising_resolver_gets_the_default_plan_never_unlimited() -> None:
    eng = engine()
    with capture_logs() as events:
        assert allowed(eng, "mallory", 3) == [True, True, False]
    assert [e["event"] for e in events].count("plan_error") == 3
    assert all(e.get("error") == "RuntimeError" for e in events if e["event"] == "plan_error")


def test_header_resolver() -> None:
    eng = engine()
    assert allowed(eng, "u1", 3, path="/h", **{"X-Plan": "pro"}) == [True, True, True]
    assert allowed(eng, "u2", 3, path="/h", **{"X-Plan": " "}) == [True, True, False]


def test_exempt_when() -> None:
    eng = engine()
    assert allowed(eng, "bob", 5, **{"X-Staff": "yes"}) == [True] * 5
    plan = eng.router(VIEW_ACCESS).plan("GET", "/data")
    assert plan.decide(FakeRequest("GET", "/data", {"X-User": "bob", "X-Staff": "yes"})) is None  # type: ignore[union-attr]
    assert allowed(eng, "bob", 3) == [True, True, False]


def test_a_raising_exempt_when_does_not_exempt() -> None:
    eng = engine()
    with capture_logs() as events:
        assert allowed(eng, "broken", 3, **{"X-Staff": "yes"}) == [True, True, False]
    assert [e["event"] for e in events].count("exempt_error") == 3


def test_admin_change_of_a_plans_policy_takes_effect_at_once() -> None:
    eng = engine()
    assert allowed(eng, "bob", 3) == [True, True, False]
    api = AdminAPI(eng, token="t" * 32)
    headers = {"authorization": "Bearer " + "t" * 32, "content-type": "application/merge-patch+json"}
    body = json.dumps({"plans": {"free": "pro"}}).encode()  # the free plan now gets the pro policy
    answer = api.handle(AdminRequest("PATCH", "/policies", {}, headers, body))
    assert answer.status == 200, answer.body
    assert allowed(eng, "bob", 6) == [True] * 5 + [False]


def test_admin_usage_of_one_plan() -> None:
    eng = engine()
    allowed(eng, "alice", 2)  # pro
    api = AdminAPI(eng, token="t" * 32)
    auth = {"authorization": "Bearer " + "t" * 32}
    query = {"key": "header:x-user:alice", "path": "/data"}
    pro = json.loads(api.handle(AdminRequest("GET", "/usage", {**query, "plan": "pro"}, auth, b"")).body)
    free = json.loads(api.handle(AdminRequest("GET", "/usage", query, auth, b"")).body)
    assert (pro["policy"], pro["limits"][0]["remaining"]) == ("pro", 3)
    assert (free["policy"], free["limits"][0]["remaining"]) == ("free", 2)
    assert api.handle(AdminRequest("GET", "/usage", {**query, "plan": "gold"}, auth, b"")).status == 404


def test_explain_shows_each_plan() -> None:
    out = load_policies(POLICIES).explain("GET", "/data")
    assert out["source"] == "plan" and out["policy"] == "free"
    assert out["plan"]["default"] == "free"
    assert out["plan"]["plans"]["pro"]["limits"][0].startswith("5/minute")
    assert out["exempt_when"] == f"call:{HERE}:is_staff"


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("routes:\n  - {match: /a, plan: 'header:X-Plan'}\n", 2, "routes[0].plan", "top-level 'plans:'"),
    ("plans: {default: free, free: nope}\n", 1, "plans.free", "unknown policy 'nope'"),
    ("plans: {free: free}\n", 1, "plans", "default"),
    ("plans: {default: gold, free: free}\n", 1, "plans.default", "not a plan"),
    ("plans: {default: free, free: free}\nroutes:\n  - match: /a\n    plan: 'header:X-Plan'\n    limits: [1/minute]\n",
     5, "routes[0].limits", "cannot be combined with 'plan'"),
    ("plans: {default: free, free: free}\nroutes:\n  - match: /a\n    plan: 'hedaer:X-Plan'\n", 4, "routes[0].plan",
     "unknown plan resolver kind"),
    ("plans: {default: free, free: free}\nroutes:\n  - match: /a\n    plan: 'call:nowhere.at.all:f'\n", 4,
     "routes[0].plan", "cannot import"),
    ("routes:\n  - match: /a\n    limits: [1/minute]\n    exempt_when: 'is_staff'\n", 4, "routes[0].exempt_when",
     "call:"),
])
def test_plan_errors_name_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    document = "version: 1\npolicies:\n  free: {limits: ['2/minute']}\n" + text
    with pytest.raises(PolicyError) as info:
        load_policies(document)
    assert (info.value.line, info.value.field) == (line + 3, field)
    assert message in str(info.value)


def test_callables_in_a_mapping_and_plans_on_unmatched() -> None:
    document = {
        "version": 1,
        "policies": {"free": {"limits": ["1/minute"]}, "pro": {"limits": ["3/minute"]}},
        "plans": {"default": "free", "free": "free", "pro": "pro"},
        "unmatched": {"plan": lambda request: request.header("x-plan"), "key": "header:X-User",
                      "exempt_when": lambda request: request.path == "/open"},
    }
    eng = Engine(load_policies(document), Limiter("memory://", clock=FakeClock()), enabled=True)
    router = eng.router(VIEW_ACCESS)

    def run(path: str, n: int, **headers: str) -> list[bool]:
        plan = router.plan("GET", path)
        assert plan is not None
        verdicts = [plan.decide(FakeRequest("GET", path, {"X-User": "u", **headers})) for _ in range(n)]
        return [v is None or not v.reject for v in verdicts]

    assert run("/x", 4, **{"X-Plan": "pro"}) == [True, True, True, False]
    assert run("/y", 2) == [True, False]
    assert run("/open", 3) == [True, True, True]
