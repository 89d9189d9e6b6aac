"""The hot path's shortcuts give exactly the answers of the slow path.

Route cache per (method, path), headers rendered straight to bytes for ASGI, the
sync check for the memory backend inside the async middleware, and the send
wrapper's de-duplication of headers the app set itself.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

import pytest

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw import engine as engine_module
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import HeaderRenderer
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.engine import Engine, Verdict
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock, FakeRequest

POLICIES = """
version: 1
defaults: {key: 'header:X-API-Key'}
routes:
  - {match: /health, exempt: true}
  - {match: 'GET /items/{id:int}', limits: ['3/minute']}
  - {match: 'POST /items/{id:int}', limits: ['1/minute']}
  - {match: '/files/{rest:path}', limits: ['5/minute']}
unmatched: {limits: ['7/minute']}
"""


def _engine(text: str = POLICIES) -> Engine:
    return Engine(load_policies(text), Limiter("memory://", clock=FakeClock()))


def test_route_cache_answers_as_the_matcher() -> None:
    engine = _engine()
    policies = engine.policies
    paths = ["/health", "/items/1", "/items/x", "/files/a/b", "/nowhere", "/items/1/"]
    for method, path in itertools.product(["GET", "POST", "HEAD", "DELETE"], paths * 2):
        verdict = engine.decide(FakeRequest(method, path, {"X-API-Key": f"{method}{path}"}))
        match = policies.match(method, path)
        if match is None or match.route.exempt:
            assert verdict is None
        else:
            assert verdict is not None and verdict.route is match.route
    assert len(engine._state.routes) == len(paths)
    assert sum(len(methods) for methods in engine._state.routes.values()) == 4 * len(paths)


def test_route_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ROUTE_CACHE_SIZE", 8)
    engine = _engine()
    for i in range(50):
        for _ in range(2):  # a path is cached from its second request
            assert engine.decide(FakeRequest("GET", f"/items/{i}")) is not None
        assert 1 <= len(engine._state.routes) <= 8 and len(engine._state.seen) <= 8
    for i in range(50):  # client-chosen methods on one path
        assert engine.decide(FakeRequest(f"M{i}", "/nowhere")) is not None  # the unmatched route
        assert i == 0 or 1 <= len(engine._state.routes["/nowhere"]) <= 16


def test_a_path_is_cached_from_its_second_request() -> None:
    """Paths seen once (a templated route's ids) are matched, not cached: caching each
    cost more than matching. A path that comes again is cached, with its lane."""
    engine = _engine()
    state = engine._state
    for i in range(100):
        verdict = engine.decide(FakeRequest("GET", f"/items/{i}", {"X-API-Key": "k"}))
        assert verdict is not None and verdict.route is engine.policies.match("GET", "/items/1").route
    assert not state.routes and not engine.scope_lanes and len(state.seen) == 100
    engine.decide(FakeRequest("GET", "/items/7", {"X-API-Key": "k"}))
    assert list(state.routes) == ["/items/7"] and list(engine.scope_lanes) == ["/items/7"]


def test_policy_swap_starts_a_new_route_cache() -> None:
    engine = _engine()
    request = FakeRequest("GET", "/items/1", {"X-API-Key": "a"})
    verdict = engine.decide(request)
    assert verdict is not None and verdict.decision.limit == 3
    old_state = engine._state
    engine.set_policies(load_policies(POLICIES.replace("3/minute", "9/minute")))
    assert engine._state is not old_state and not engine._state.routes  # one tuple replaced, cache empty
    verdict = engine.decide(request)
    assert verdict is not None and verdict.decision.limit == 9
    engine.set_policies(load_policies(POLICIES.replace("{match: /health, exempt: true}",
                                                       "{match: '/items/{id}', exempt: true}")))
    assert engine.decide(request) is None  # the cached route of the old set is gone


def test_async_and_sync_decisions_agree() -> None:
    sync_engine, async_engine = _engine(), _engine()
    for i in range(6):
        request = FakeRequest("GET", "/items/1", {"X-API-Key": "k"})
        a = sync_engine.decide(request, raw=True)
        b = asyncio.run(async_engine.adecide(request, raw=True))
        assert a is not None and b is not None
        assert (a.decision, a.headers, a.reject) == (b.decision, b.headers, b.reject), i


def test_admit_and_aadmit_agree_with_decide() -> None:
    """The adapters' shortcuts: a header list for a plain allowed request, a Verdict
    for the rest (here: the denials), the same headers and decisions as decide()."""
    reference, sync_engine, async_engine = _engine(), _engine(), _engine()
    for i in range(6):
        request = FakeRequest("GET", "/items/1", {"X-API-Key": "k"})
        full = reference.decide(request, raw=True)
        a = sync_engine.admit(request, raw=True)
        b = asyncio.run(async_engine.aadmit(request, raw=True))
        assert full is not None
        for got in (a, b):
            if full.reject:
                assert isinstance(got, Verdict) and got.reject and got.headers == full.headers, i
            else:
                assert got == full.headers, i
    assert full is not None and full.reject  # the loop did reach the limit


RULES = [parse_rate("100/minute; name=burst"), parse_rate("10/second; burst=40")]


@pytest.mark.parametrize("styles", [("x-ratelimit", "ietf"), ("draft03",), ("draft03", "ietf"), ("none",), ()])
@pytest.mark.parametrize("reset", ["delta", "epoch"])
def test_raw_headers_are_the_text_headers_encoded(styles: tuple[str, ...], reset: str) -> None:
    renderer = HeaderRenderer(RULES, styles, names={"limit": "X-Quota-Limit"}, reset=reset)
    unknown = parse_rate("5/second; name=other")  # a rule the renderer was not built with
    for rule, allowed, remaining, reset_after in itertools.product(
        [*RULES, unknown, None], [True, False], [0, 7, 12345], [0.0, 1e-12, 0.4, 59.99]
    ):
        decision = Decision(allowed, rule.capacity if rule else 3, remaining, reset_after, 2.5, rule)
        text = renderer.render(decision, 1_700_000_000.25)
        raw = renderer.render_raw(decision, 1_700_000_000.25)
        assert raw == [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in text]
        assert {k for k, _ in raw} <= renderer.raw_names


@pytest.mark.parametrize("raw", [False, True])
def test_single_rule_renderer_matches_the_general_one(raw: bool) -> None:
    """The one-frame renderer of a single-rule route (the usual families) gives exactly
    what the general renderer gives, for its own allowed decisions and everything else."""
    rule = parse_rate("10/second; burst=40")
    renderer = HeaderRenderer([rule], ("x-ratelimit", "ietf"))
    fast = renderer.renderer(raw=raw)
    general = functools.partial(renderer._render, renderer._raw if raw else renderer._text)
    assert not isinstance(fast, functools.partial)  # the closure, not the general path
    other = parse_rate("5/second; name=other")
    cases = 0
    for decided_by, limit, allowed, remaining, reset_after in itertools.product(
        [rule, other, None], [40, 3], [True, False], [0, 7, 39, 12345, 7.0], [0.0, 1e-12, 1e-9, 0.4, 1.0, 59.99]
    ):
        decision = Decision(allowed, limit, remaining, reset_after, 2.5, decided_by)
        assert fast(decision, 0.0) == general(decision, 0.0), decision
        cases += 1
    assert cases == 360


@pytest.mark.parametrize("styles", [("x-ratelimit", "ietf"), ("ietf",), ("x-ratelimit",), ("draft03",),
                                    ("draft03", "ietf"), ("x-ratelimit", "draft03"), ("x-ratelimit", "ietf", "draft03"),
                                    ("none",)])
@pytest.mark.parametrize("raw", [False, True])
def test_allowed_renderers_match_the_general_one(styles: tuple[str, ...], raw: bool) -> None:
    """What the fast lanes render for an allowed request reported by each rule is what
    the general renderer gives that Decision, for every choice of families."""
    renderer = HeaderRenderer(RULES, styles, names={"limit": "X-Quota-Limit", "draft_reset": "Quota-Reset"})
    renders = renderer.allowed_renderers(raw)
    assert renders is not None and len(renders) == len(RULES)
    general = functools.partial(renderer._render, renderer._raw if raw else renderer._text)
    cases = 0
    for (rule, render), remaining, reset_after in itertools.product(
        zip(RULES, renders), [0, 7, 39, 12345], [0.0, 1e-12, 1e-9, 0.4, 1.0, 1.0 + 1e-10, 59.99]
    ):
        decision = Decision(True, rule.capacity, remaining, reset_after, 0.0, rule)
        assert render(remaining, reset_after) == general(decision, 0.0), decision
        cases += 1
    assert cases == 56


def test_no_allowed_renderers_where_headers_need_the_wall_clock() -> None:
    assert HeaderRenderer(RULES, ("x-ratelimit", "ietf"), reset="epoch").allowed_renderers(True) is None
    assert HeaderRenderer(RULES, ("x-ratelimit",), reset="epoch").allowed_renderers(False) is None
    # no X-RateLimit-Reset, no wall clock:
    assert HeaderRenderer(RULES, ("ietf", "draft03"), reset="epoch").allowed_renderers(True) is not None
    assert HeaderRenderer([], ("ietf",)).allowed_renderers(True) is None


def _app(headers: list[tuple[Any, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _serve(app: Any) -> list[tuple[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/items/1", "root_path": "",
             "headers": [(b"x-api-key", b"k")], "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return [(bytes(k), bytes(v)) for k, v in sent[0]["headers"]]


@pytest.mark.parametrize(
    "name",
    [b"x-ratelimit-limit", b"X-RateLimit-Limit", bytearray(b"X-RATELIMIT-LIMIT")],
    ids=["lower", "mixed", "bytearray"],
)
def test_header_the_app_set_is_not_added(name: bytes) -> None:
    app_headers = [(b"content-type", b"text/plain"), (name, b"999")]
    middleware = RateLimitMiddleware(_app(app_headers), policies=POLICIES, clock=FakeClock())
    headers = _serve(middleware)
    assert headers[:2] == [(b"content-type", b"text/plain"), (bytes(name), b"999")]  # the app's, in order, first
    names = [k.lower() for k, _ in headers]
    assert names.count(b"x-ratelimit-limit") == 1
    assert (b"x-ratelimit-remaining", b"2") in headers and (b"ratelimit", b'"3-per-minute";r=2;t=20') in headers
    assert app_headers == [(b"content-type", b"text/plain"), (name, b"999")]  # the app's list is not changed


def test_headers_added_when_the_app_sets_none() -> None:
    headers = _serve(RateLimitMiddleware(_app([]), policies=POLICIES, clock=FakeClock()))
    assert [k for k, _ in headers] == [b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset",
                                       b"ratelimit-policy", b"ratelimit"]


def test_rejection_parts_are_remembered_per_distinct_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "REJECTION_CACHE_SIZE", 2)
    clock = FakeClock()
    engine = Engine(load_policies(POLICIES), Limiter("memory://", clock=clock))
    request = FakeRequest("POST", "/items/1", {"X-API-Key": "a"})
    assert not engine.decide(request).reject  # type: ignore[union-attr]
    bodies = []
    for wait in (0.0, 10.0, 0.0, 20.0):
        clock.advance(wait)
        verdict = engine.decide(request)
        assert verdict is not None and verdict.reject
        text, raw = engine.rejection(verdict), engine.rejection(engine.decide(request, raw=True), raw=True)  # type: ignore[arg-type]
        retry = dict(text.headers)["Retry-After"]
        assert f"retry after {retry} seconds" in text.body.decode()
        assert dict(text.headers)["Content-Length"] == str(len(text.body))
        assert raw.body == text.body
        assert raw.headers == [(k.lower().encode(), v.encode()) for k, v in text.headers]
        bodies.append(text.body)
        assert len(engine._state.rejections) <= 2
    assert bodies[1] == bodies[2] and len({bodies[0], bodies[1], bodies[3]}) == 3  # 60, 50, 50, 30 s
    engine.set_policies(load_policies(POLICIES + "response: {status: 503, body: 'wait $retry_after'}\n"))
    verdict = engine.decide(request)
    assert verdict is not None and verdict.reject
    rejection = engine.rejection(verdict)
    assert (rejection.status, rejection.body) == (503, f"wait {dict(rejection.headers)['Retry-After']}".encode())
