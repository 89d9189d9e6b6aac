"""One path, whatever the protocol or the backend: a generated traffic table decides alike.

The same random traffic (odd requests included: odd-case methods and header names,
blank, padded, long and bytearray keys, preflights) goes through the ASGI and the
WSGI middleware on memory, and through the ASGI middleware on memory and on a real
Redis, with equal fake clocks; every request must get the same status and the same
headers. Also here: a key function is called exactly once per request, and one
that raises still gets 429s.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from structlog.testing import capture_logs

from ratelimit_mw import Engine, RateLimitMiddleware, WSGIRateLimitMiddleware, load_policies
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.testing import FakeClock

POLICIES = """
version: 1
defaults: {key: 'header:X-API-Key'}
routes:
  - {match: /health, exempt: true}
  - {match: 'GET /gcra', limits: ['5/second; burst=8']}
  - {match: 'GET /token', limits: ['3/second; algorithm=token_bucket']}
  - {match: 'GET /fixed', limits: ['4/minute; algorithm=fixed_window']}
  - {match: 'GET /sliding', limits: ['4/minute; algorithm=sliding_window']}
  - {match: 'GET /log', limits: ['3/minute; algorithm=sliding_log']}
  - {match: 'GET /leaky', limits: ['4/second; burst=3; algorithm=leaky_bucket']}
  - {match: 'GET /two', limits: ['5/second', '12/minute']}
  - {match: 'GET /three', limits: ['3/second; algorithm=token_bucket', '10/minute; algorithm=fixed_window',
                                   '30/hour; algorithm=sliding_log']}
  - {match: 'GET /shadow', limits: ['2/second'], shadow: true}
  - {match: 'GET /cost', limits: ['10/second'], cost: 3}
  - {match: 'GET /ip', limits: ['4/second'], key: ip}
  - {match: 'GET /chain', limits: ['4/second'], key: ['header:X-API-Key', ip]}
  - {match: '/any', limits: ['6/second']}
  - {match: 'GET /ietf', limits: ['5/second; burst=8'], headers: [ietf]}
  - {match: 'GET /x', limits: ['3/second; algorithm=token_bucket'], headers: [x-ratelimit]}
  - {match: 'GET /draft', limits: ['4/second', '11/minute; algorithm=fixed_window'], headers: [draft03]}
  - {match: 'GET /draft-ietf', limits: ['4/second', '11/minute'], headers: [ietf, draft03]}
  - {match: 'GET /all', limits: ['4/second'], headers: [x-ratelimit, ietf, draft03]}
  - {match: 'GET /quiet', limits: ['4/second'], headers: [none]}
"""
#: Renamed headers and epoch resets for every route.
OPTIONS = """
headers_options:
  reset: epoch
  names: {X-RateLimit-Remaining: X-Quota-Left, draft_limit: RateLimit-Quota, RateLimit: Quota}
"""

PATHS = ["/gcra", "/token", "/fixed", "/sliding", "/log", "/leaky", "/two", "/three", "/shadow", "/cost", "/ip",
         "/chain", "/any", "/ietf", "/x", "/draft", "/draft-ietf", "/all", "/quiet", "/health", "/nowhere"]
START = 1_000_000.0


def _key_headers(rng: random.Random) -> list[tuple[bytes, Any]]:
    """The X-API-Key header as a server or a test client might send it, odd ones included."""
    if rng.random() < 0.70:
        return [(b"x-api-key", f"k{rng.randrange(6)}".encode())]
    return rng.choice([
        [],  # no key: anonymous
        [(b"x-api-key", b"   ")],  # blank: anonymous
        [(b"X-API-Key", b"k1")],  # a mixed-case name (servers lower-case; apps building scopes may not)
        [(b"x-api-key", b" k2 ")],  # padded
        [(b"x-api-key", b"k" * 1500)],  # long: capped with a digest
        [(b"x-api-key", bytearray(b"k3"))],  # a bytearray value
        [(b"x-api-key", "caf\u00e9".encode("latin-1"))],
    ])


def traffic(seed: int, count: int) -> list[tuple[float, dict[str, Any]]]:
    """The table: (seconds to advance the clock, ASGI scope) per request."""
    rng = random.Random(seed)
    table = []
    for _ in range(count):
        method = rng.choice(["GET"] * 12 + ["HEAD", "POST", "OPTIONS", "get"])
        headers = _key_headers(rng)
        if method == "OPTIONS" and rng.random() < 0.5:
            headers.append((b"access-control-request-method", b"GET"))
        scope = {"type": "http", "method": method, "path": rng.choice(PATHS), "root_path": "", "headers": headers,
                 "client": (f"10.0.0.{rng.randrange(3)}", 1234), "query_string": b""}
        table.append((rng.choice([0.0, 0.0, 0.01, 0.05, 0.3, 2.0]), scope))
    return table


def environ_of(scope: dict[str, Any]) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": scope["method"], "PATH_INFO": scope["path"],
                               "REMOTE_ADDR": scope["client"][0], "QUERY_STRING": ""}
    for name, value in scope["headers"]:
        key = "HTTP_" + bytes(name).decode("latin-1").upper().replace("-", "_")
        environ.setdefault(key, bytes(value).decode("latin-1"))
    return environ


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_ok(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_call(app: Any, scope: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    start = sent[0]
    return start["status"], [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in start["headers"]]


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    got: list[Any] = []
    b"".join(app(dict(environ), lambda status, headers, exc_info=None: got.append((status, headers))))
    return int(got[0][0][:3]), [(k.lower(), v) for k, v in got[0][1]]


def _limiter(backend: Any, clock: FakeClock, **options: Any) -> Limiter:
    return Limiter(backend, clock=clock, prefix="diff", **options)


@pytest.mark.parametrize("policies", [POLICIES, POLICIES + OPTIONS], ids=["default-headers", "renamed-epoch"])
@pytest.mark.parametrize("seed", [1, 2])
def test_asgi_and_wsgi_decide_alike(seed: int, policies: str) -> None:
    asgi_clock, wsgi_clock = FakeClock(START), FakeClock(START)
    asgi = RateLimitMiddleware(ok_app, engine=Engine(load_policies(policies), _limiter("memory://", asgi_clock),
                                                     wall_clock=asgi_clock))
    wsgi = WSGIRateLimitMiddleware(wsgi_ok, engine=Engine(load_policies(policies), _limiter("memory://", wsgi_clock),
                                                          wall_clock=wsgi_clock))
    statuses: set[int] = set()

    async def run() -> None:
        for step, scope in traffic(seed, 2500):
            asgi_clock.advance(step)
            wsgi_clock.advance(step)
            got = await asgi_call(asgi, scope)
            assert got == wsgi_call(wsgi, environ_of(scope)), scope
            statuses.add(got[0])

    asyncio.run(run())
    assert statuses == {200, 429}


@pytest.mark.redis
@pytest.mark.parametrize("fast_io", [True, False], ids=["fast-io", "public-api"])
@pytest.mark.parametrize("protocol", ["asgi", "wsgi"])
def test_memory_and_redis_decide_alike(protocol: str, fast_io: bool, redis_url: str) -> None:
    """Every request, allowed or denied (the over-limit cache included), gets the same
    status and headers from a real Redis as from memory: sync (WSGI) and async (ASGI),
    on the fast paths and on redis-py's public API alone."""
    memory_clock, redis_clock = FakeClock(START), FakeClock(START)
    redis_limiter = _limiter(redis_url, redis_clock, min_ttl=3600, socket_timeout=5.0, socket_connect_timeout=5.0,
                             fast_io=fast_io)
    if protocol == "wsgi":
        memory: Any = WSGIRateLimitMiddleware(wsgi_ok, policies=POLICIES, limiter=_limiter("memory://", memory_clock))
        redis: Any = WSGIRateLimitMiddleware(wsgi_ok, policies=POLICIES, limiter=redis_limiter)
    else:
        memory = RateLimitMiddleware(ok_app, policies=POLICIES, limiter=_limiter("memory://", memory_clock))
        redis = RateLimitMiddleware(ok_app, policies=POLICIES, limiter=redis_limiter)
    statuses: set[int] = set()

    async def run() -> None:
        try:
            for step, scope in traffic(4, 1200):
                memory_clock.advance(step)
                redis_clock.advance(step)
                if protocol == "wsgi":
                    got = wsgi_call(memory, environ_of(scope))
                    assert got == wsgi_call(redis, environ_of(scope)), scope
                else:
                    got = await asgi_call(memory, scope)
                    assert got == await asgi_call(redis, scope), scope
                statuses.add(got[0])
        finally:
            await redis_limiter.aclose()
            redis_limiter.close()

    asyncio.run(run())
    assert statuses == {200, 429}


CALLS: list[Any] = []


def counted_key(request: Any) -> str:
    CALLS.append(request)
    return str(request.header("x-user") or "")


def raising_key(request: Any) -> str:
    CALLS.append(request)
    raise RuntimeError("the app's bug")


KEY_POLICIES = f"""
version: 1
routes:
  - {{match: 'GET /counted', limits: ['2/minute'], key: 'call:{__name__}:counted_key'}}
  - {{match: 'GET /raising', limits: ['2/minute'], key: 'call:{__name__}:raising_key'}}
  - {{match: 'GET /raising-chain', limits: ['2/minute'], key: ['call:{__name__}:raising_key', 'header:X-User']}}
"""


def _apps(clock: FakeClock) -> tuple[Any, Any]:
    return (RateLimitMiddleware(ok_app, policies=KEY_POLICIES, limiter=_limiter("memory://", clock)),
            WSGIRateLimitMiddleware(wsgi_ok, policies=KEY_POLICIES, limiter=_limiter("memory://", clock)))


def _request(app: Any, path: str, user: str = "") -> int:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "client": ("10.0.0.1", 1),
             "headers": [(b"x-user", user.encode())] if user else [], "query_string": b""}
    if isinstance(app, WSGIRateLimitMiddleware):
        return wsgi_call(app, environ_of(scope))[0]
    return asyncio.run(asgi_call(app, scope))[0]


@pytest.mark.parametrize("protocol", ["asgi", "wsgi"])
def test_a_key_function_runs_once_per_request_allowed_or_denied(protocol: str) -> None:
    app = _apps(FakeClock(START))[protocol == "wsgi"]
    CALLS.clear()
    statuses = [_request(app, "/counted", "alice") for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert len(CALLS) == 4


@pytest.mark.parametrize("protocol", ["asgi", "wsgi"])
def test_a_raising_key_function_is_logged_once_and_still_limited(protocol: str) -> None:
    app = _apps(FakeClock(START))[protocol == "wsgi"]
    CALLS.clear()
    with capture_logs() as logs:
        statuses = [_request(app, "/raising") for _ in range(10)]
    assert statuses == [200, 200] + [429] * 8  # the shared 'unidentified' bucket: never unlimited
    assert len(CALLS) == 10
    errors = [e for e in logs if e["event"] == "key_error"]
    assert len(errors) == 10 and errors[0]["route"] == "GET /raising" and errors[0]["error"] == "RuntimeError"
    # in a chain, the next part decides: each user keeps a bucket of their own
    CALLS.clear()
    assert [_request(app, "/raising-chain", user) for user in ("a", "a", "a", "b")] == [200, 200, 429, 200]
    assert len(CALLS) == 4


@pytest.mark.parametrize("protocol", ["asgi", "wsgi"])
def test_a_lower_case_method_counts_against_the_upper_case_route(protocol: str) -> None:
    """werkzeug and Django route ``get`` as GET, so it must not escape GET's limit."""
    clock = FakeClock(START)
    policies = "version: 1\nroutes:\n  - {match: 'GET /x', limits: ['2/minute'], key: ip}\n"
    if protocol == "wsgi":
        app: Any = WSGIRateLimitMiddleware(wsgi_ok, policies=policies, limiter=_limiter("memory://", clock))
    else:
        app = RateLimitMiddleware(ok_app, policies=policies, limiter=_limiter("memory://", clock))
    statuses = []
    for method in ("GET", "get", "Get"):
        scope = {"type": "http", "method": method, "path": "/x", "root_path": "", "client": ("10.0.0.1", 1),
                 "headers": [], "query_string": b""}
        call = wsgi_call(app, environ_of(scope)) if protocol == "wsgi" else asyncio.run(asgi_call(app, scope))
        statuses.append(call[0])
    assert statuses == [200, 200, 429]


@pytest.mark.redis
def test_an_over_limit_denial_reports_what_memory_reports(redis_url: str) -> None:
    """A cost-2 request with one unit left is denied with Remaining 1, from Redis and from
    the over-limit cache alike; once a cost-1 request takes that unit, Remaining is 0."""
    clocks = FakeClock(START), FakeClock(START)
    limiters = (_limiter("memory://", clocks[0]),
                _limiter(redis_url, clocks[1], min_ttl=3600, socket_timeout=5.0, socket_connect_timeout=5.0))
    try:
        answers = []
        for limiter in limiters:
            seen = [limiter.check("k", "3/minute", cost=cost) for cost in (1, 1, 2, 2, 2, 1, 2, 2)]
            answers.append([(d.allowed, d.remaining) for d in seen])
        assert answers[0] == answers[1] == [(True, 2), (True, 1), (False, 1), (False, 1), (False, 1), (True, 0),
                                            (False, 0), (False, 0)]
    finally:
        limiters[1].close()


def test_check_and_hit_are_one_function() -> None:
    assert Limiter.hit is Limiter.check and Limiter.ahit is Limiter.acheck
