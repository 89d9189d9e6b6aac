"""The engine's plans: the route cache answers as the matcher, swaps are atomic, raw
(ASGI) headers are the text (WSGI) ones encoded, sync and async plans agree, and the
send wrapper never duplicates a header the app set itself.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw import engine as engine_module
from ratelimit_mw.core import problem as problem_module
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import HeaderRenderer
from ratelimit_mw.core.keys import VIEW_ACCESS
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.engine import Engine
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
    assert engine.router(VIEW_ACCESS).cached == 4 * len(paths)


def test_route_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ROUTE_CACHE_SIZE", 8)
    engine = _engine()
    router = engine.router(VIEW_ACCESS)
    for i in range(50):
        for _ in range(2):  # a path is cached from its second request
            assert engine.decide(FakeRequest("GET", f"/items/{i}")) is not None
        assert 1 <= router.cached <= 8
    engine.set_policies(engine.policies)
    for i in range(50):  # client-chosen methods on one path
        assert engine.decide(FakeRequest(f"M{i}", "/nowhere")) is not None  # the unmatched route
        assert i == 0 or 1 <= router.cached <= 16


def test_a_path_is_cached_from_its_second_request() -> None:
    """Paths seen once (a templated route's ids) are matched, not cached: caching each
    cost more than matching. A path that comes again is cached."""
    engine = _engine()
    router = engine.router(VIEW_ACCESS)
    for i in range(100):
        verdict = engine.decide(FakeRequest("GET", f"/items/{i}", {"X-API-Key": "k"}))
        assert verdict is not None and verdict.route is engine.policies.match("GET", "/items/1").route
    assert router.cached == 0
    engine.decide(FakeRequest("GET", "/items/7", {"X-API-Key": "k"}))
    assert router.cached == 1


def test_policy_swap_starts_a_new_route_cache() -> None:
    engine = _engine()
    request = FakeRequest("GET", "/items/1", {"X-API-Key": "a"})
    verdict = engine.decide(request)
    assert verdict is not None and verdict.decision.limit == 3
    engine.set_policies(load_policies(POLICIES.replace("3/minute", "9/minute")))
    assert engine.router(VIEW_ACCESS).cached == 0  # a new cache
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
    monkeypatch.setattr(problem_module, "CACHE_SIZE", 2)
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
    assert bodies[1] == bodies[2] and len({bodies[0], bodies[1], bodies[3]}) == 3  # 60, 50, 50, 30 s
    engine.set_policies(load_policies(POLICIES + "response: {status: 503, body: 'wait $retry_after'}\n"))
    verdict = engine.decide(request)
    assert verdict is not None and verdict.reject
    rejection = engine.rejection(verdict)
    assert (rejection.status, rejection.body) == (503, f"wait {dict(rejection.headers)['Retry-After']}".encode())
