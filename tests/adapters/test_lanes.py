"""Fast lanes change what runs, never what is decided.

A lane (``MemoryBackend.lane`` via ``Engine.scope_lanes``/``environ_lanes``) runs the
plain allowed request of an in-process route in a few frames and hands everything
else to the general path. The differential tests drive the same random traffic,
odd requests included, through two middlewares on two limiters with equal fake
clocks, one with lanes and one without, and require the same status and the same
headers for every request, and the same stored states at the end.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.core.keys import compile_key, environ_key_reader, scope_key_reader
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.engine import Engine, _pass_through
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.requestview import ASGIRequest, WSGIRequest
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
#: Renamed headers and epoch resets for every route: a route with X-RateLimit-Reset
#: then reads the wall clock and has no lane; the other families keep theirs.
OPTIONS = """
headers_options:
  reset: epoch
  names: {X-RateLimit-Remaining: X-Quota-Left, draft_limit: RateLimit-Quota, RateLimit: Quota}
"""

PATHS = ["/gcra", "/token", "/fixed", "/sliding", "/log", "/leaky", "/two", "/three", "/shadow", "/cost", "/ip",
         "/chain", "/any", "/ietf", "/x", "/draft", "/draft-ietf", "/all", "/quiet", "/health", "/nowhere"]
LANED = {"/gcra", "/token", "/fixed", "/sliding", "/log", "/two", "/three", "/cost", "/ip", "/chain", "/any",
         "/ietf", "/x", "/draft", "/draft-ietf", "/all", "/quiet"}


def _key_headers(rng: random.Random) -> list[tuple[bytes, Any]]:
    """The X-API-Key header as a server or a test client might send it, odd ones included."""
    roll = rng.random()
    if roll < 0.70:
        return [(b"x-api-key", f"k{rng.randrange(6)}".encode())]
    return rng.choice([
        [],  # no key: anonymous
        [(b"x-api-key", b"   ")],  # blank: anonymous
        [(b"X-API-Key", b"k1")],  # a mixed-case name (servers lower-case; apps building scopes may not)
        [(b"x-api-key", b" k2 ")],  # padded
        [(b"x-api-key", b"k" * 1500)],  # long: capped with a digest
        [(b"x-api-key", bytearray(b"k3"))],  # a bytearray value
        [(b"x-api-key", "caf\u00e9".encode("latin-1"))],
        [(b"x-api-key", b""), (b"x-api-key", b"k4")],  # the first one counts: blank
    ])


def _scope(rng: random.Random) -> dict[str, Any]:
    method = rng.choice(["GET"] * 12 + ["HEAD", "POST", "OPTIONS", "get"])
    headers = _key_headers(rng)
    if method == "OPTIONS" and rng.random() < 0.5:
        headers.append((b"access-control-request-method", b"GET"))
    return {"type": "http", "method": method, "path": rng.choice(PATHS), "root_path": "", "headers": headers,
            "client": (f"10.0.0.{rng.randrange(3)}", 1234), "query_string": b""}


def _environ(scope: dict[str, Any]) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": scope["method"], "PATH_INFO": scope["path"],
                               "REMOTE_ADDR": scope["client"][0], "QUERY_STRING": ""}
    for name, value in scope["headers"]:
        key = "HTTP_" + bytes(name).decode("latin-1").upper().replace("-", "_")
        environ.setdefault(key, bytes(value).decode("latin-1"))  # WSGI joins repeats; the first will do here
    return environ


def _engine(lanes: bool, policies: str = POLICIES) -> tuple[Engine, FakeClock]:
    clock = FakeClock(1_000_000.0)
    engine = Engine(load_policies(policies), Limiter("memory://", clock=clock), wall_clock=lambda: 1_000_000.0)
    engine.lanes_enabled = lanes
    engine.set_policies(engine.policies)
    return engine, clock


def _general_calls(engine: Engine) -> list[int]:
    """Count the requests that reached the general path (Engine.admit)."""
    calls = [0]
    admit = engine.admit

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return admit(*args, **kwargs)

    engine.admit = counted  # type: ignore[method-assign]
    return calls


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _asgi_call(app: Any, scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(dict(scope), receive, send))
    start = sent[0]
    return start["status"], [(bytes(k), bytes(v)) for k, v in start["headers"]]


def _wsgi_ok(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    got: list[Any] = []
    body = app(dict(environ), lambda status, headers, exc_info=None: got.append((status, headers)))
    b"".join(body)
    return got[0][0], list(got[0][1])


def _states(engine: Engine) -> tuple[int, dict[Any, Any]]:
    memory = engine.limiter._memory
    return len(memory), {table_id: dict(table.states) for table_id, table in memory._tables.items()}


def _metrics(engine: Engine) -> Any:
    from prometheus_client import CollectorRegistry

    from ratelimit_mw.metrics import RateLimitMetrics

    registry = CollectorRegistry()
    RateLimitMetrics(registry).attach(engine)
    return registry


def _decision_counts(registry: Any) -> dict[tuple[str, ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for metric in registry.collect() if metric.name == "ratelimit_decisions"
        for sample in metric.samples if sample.name == "ratelimit_decisions_total"
    }


def _differential(seed: int, wsgi: bool, metrics: bool = False, policies: str = POLICIES,
                  min_laned: int = 600) -> Engine:
    """Send 2,500 random requests through a middleware with lanes and one without, and
    require the same answers and, at the end, the same states (and metrics, if attached);
    return the laned engine. At least ``min_laned`` requests must have taken a lane."""
    rng = random.Random(seed)
    laned, laned_clock = _engine(lanes=True, policies=policies)
    plain, plain_clock = _engine(lanes=False, policies=policies)
    registries = (_metrics(laned), _metrics(plain)) if metrics else None
    general = _general_calls(laned)
    call: Callable[[Any, dict[str, Any]], tuple[Any, list[Any]]]
    if wsgi:
        fast_app: Any = WSGIRateLimitMiddleware(_wsgi_ok, engine=laned)
        slow_app: Any = WSGIRateLimitMiddleware(_wsgi_ok, engine=plain)
        call = _wsgi_call
    else:
        fast_app = RateLimitMiddleware(_ok_app, engine=laned)
        slow_app = RateLimitMiddleware(_ok_app, engine=plain)
        call = _asgi_call
    statuses: set[str] = set()
    for _ in range(2500):
        step = rng.choice([0.0, 0.0, 0.01, 0.05, 0.3, 2.0])
        laned_clock.advance(step)
        plain_clock.advance(step)
        request = _environ(_scope(rng)) if wsgi else _scope(rng)
        got = call(fast_app, request)
        assert got == call(slow_app, request), request
        statuses.add(str(got[0])[:3])
        assert laned_clock.now == plain_clock.now  # leaky-bucket delays alike
    assert statuses == {"200", "429"}
    assert _states(laned) == _states(plain)
    # the lanes did carry their share (odd requests, other routes and denials go round)
    assert 2500 - general[0] > min_laned
    if registries is not None:
        counts = _decision_counts(registries[0])
        assert counts == _decision_counts(registries[1]) and sum(counts.values()) > 1500
    return laned


def _limiting(lanes: dict[str, dict[str, Any]]) -> set[str]:
    """Paths with a lane that checks a limit (not only a pass-through lane)."""
    return {path for path, methods in lanes.items() if any(lane is not _pass_through for lane in methods.values())}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_asgi_lanes_decide_as_the_general_path(seed: int) -> None:
    assert _limiting(_differential(seed, wsgi=False).scope_lanes) == LANED


@pytest.mark.parametrize("seed", [4, 5])
def test_wsgi_lanes_decide_as_the_general_path(seed: int) -> None:
    assert _limiting(_differential(seed, wsgi=True).environ_lanes) == LANED


@pytest.mark.parametrize("wsgi", [False, True])
def test_lanes_with_renamed_headers_and_epoch_resets(wsgi: bool) -> None:
    engine = _differential(7, wsgi=wsgi, policies=POLICIES + OPTIONS, min_laned=250)
    lanes = engine.environ_lanes if wsgi else engine.scope_lanes
    assert _limiting(lanes) == {"/ietf", "/draft", "/draft-ietf", "/quiet"}


@pytest.mark.parametrize("wsgi", [False, True])
def test_lanes_count_in_metrics_as_the_general_path(wsgi: bool) -> None:
    _differential(6, wsgi=wsgi, metrics=True)


def test_lanes_report_to_an_observer_attached_later() -> None:
    """Metrics count every decision, lanes' included: attaching starts the lanes afresh."""
    engine, _ = _engine(lanes=True)
    general = _general_calls(engine)
    app = RateLimitMiddleware(_ok_app, engine=engine)
    scope = {"type": "http", "method": "GET", "path": "/gcra", "root_path": "", "headers": [(b"x-api-key", b"a")]}
    for _ in range(3):
        _asgi_call(app, scope)
    assert general[0] == 2  # a path is cached (with its lane) from its second request; the rest take the lane
    registry = _metrics(engine)
    for _ in range(4):
        _asgi_call(app, scope)
    assert general[0] == 3  # one request to register the lane again, now reporting
    labels = {"route": "GET /gcra", "policy": "", "outcome": "allowed"}
    assert registry.get_sample_value("ratelimit_decisions_total", labels) == 4
    assert registry.get_sample_value("ratelimit_decision_duration_seconds_count", {}) == 4


def test_a_failing_observer_does_not_cost_a_second_check() -> None:
    engine, _ = _engine(lanes=True)
    app = RateLimitMiddleware(_ok_app, engine=engine)

    class Broken:
        def decision(self, *args: Any) -> None:
            raise RuntimeError("a broken observer")

    engine.observer = Broken()  # type: ignore[assignment]
    scope = {"type": "http", "method": "GET", "path": "/gcra", "root_path": "", "headers": [(b"x-api-key", b"a")]}
    remaining = [dict(_asgi_call(app, scope)[1]).get(b"x-ratelimit-remaining") for _ in range(4)]
    # the first two requests take the general path (the path is cached from its second),
    # where a failing observer means no headers; the lane's requests keep theirs and are
    # counted once each
    assert remaining == [None, None, b"5", b"4"]


@pytest.mark.parametrize("path", ["/health", "/nowhere"], ids=["exempt", "no route"])
def test_a_path_nothing_limits_passes_through_its_lane(path: str) -> None:
    """Unlimited requests (no route, or an exempt one while nothing counts them) cost the
    middleware a lane lookup: the app's response goes out untouched, no general path."""
    engine, _ = _engine(lanes=True)
    general = _general_calls(engine)
    app = RateLimitMiddleware(_ok_app, engine=engine)
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [(b"x-api-key", b"a")]}
    answers = [_asgi_call(app, scope) for _ in range(5)]
    assert answers == [(200, [(b"content-type", b"text/plain")])] * 5
    assert general[0] == 2 and engine.scope_lanes[path]["GET"] is _pass_through
    wsgi = WSGIRateLimitMiddleware(_wsgi_ok, engine=engine)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_X_API_KEY": "a", "REMOTE_ADDR": "10.0.0.1"}
    assert [_wsgi_call(wsgi, environ) for _ in range(3)] == [("200 OK", [("Content-Type", "text/plain")])] * 3
    assert general[0] == 2  # the path's WSGI lane was registered with its ASGI one


def test_a_mounted_app_takes_the_general_path() -> None:
    """With a root_path the route is matched on the path without it: the lane table,
    keyed by that path, must not be looked up with the full one."""
    engine, _ = _engine(lanes=True)
    general = _general_calls(engine)
    app = RateLimitMiddleware(_ok_app, engine=engine)
    plain = {"type": "http", "method": "GET", "path": "/gcra", "root_path": "", "headers": [(b"x-api-key", b"a")]}
    _asgi_call(app, plain)
    _asgi_call(app, plain)
    _asgi_call(app, plain)
    assert general[0] == 2  # the third took the lane
    mounted = dict(plain, root_path="/gcra", path="/gcra/gcra")
    status, headers = _asgi_call(app, mounted)
    assert general[0] == 3 and status == 200
    assert (b"x-ratelimit-remaining", b"4") in headers  # /gcra/gcra minus the mount: /gcra, its 4th hit


def test_a_failing_lane_falls_back_to_the_general_path() -> None:
    engine, _ = _engine(lanes=True)
    app = RateLimitMiddleware(_ok_app, engine=engine)
    scope = {"type": "http", "method": "GET", "path": "/gcra", "root_path": "", "headers": [(b"x-api-key", b"a")]}
    _asgi_call(app, scope)
    _asgi_call(app, scope)  # the path is cached, with its lane, from its second request

    def broken(source: Any) -> Any:
        raise RuntimeError("a bug in a lane")

    engine.scope_lanes["/gcra"]["GET"] = broken
    status, headers = _asgi_call(app, scope)
    assert status == 200 and (b"x-ratelimit-remaining", b"5") in headers
    # the same for a path not cached yet, whose route's lane runs inside Engine.admit
    engine.set_policies(engine.policies)
    entry = next(e for e in engine._state.prepared.values() if e.route.template == "GET /gcra")
    entry.scope_lane = broken
    status, headers = _asgi_call(app, scope)
    assert status == 200 and (b"x-ratelimit-remaining", b"4") in headers


# -- MemoryBackend.lane: everything but the plain allowed case goes back, storing nothing


def _numbers(index: int) -> Callable[[int, float], tuple[int, int, float]]:
    return lambda remaining, reset_after: (index, remaining, reset_after)


def _lane(backend: MemoryBackend, limiter: Limiter, *rates: str, cost: int = 1) -> Callable[[Any], Any] | None:
    quota = limiter.quota([parse_rate(rate) for rate in rates], "r")
    return backend.lane(quota, cost, lambda source: source, limiter._clock, [_numbers(i) for i in range(len(rates))])


def test_lane_hands_back_denials_sweeps_new_tables_and_a_full_cap() -> None:
    clock = FakeClock(1000.0)
    limiter = Limiter(MemoryBackend(max_keys=2, sweep_interval=60.0), clock=clock)
    backend = limiter._memory
    lane = _lane(backend, limiter, "2/minute")
    assert lane is not None
    assert lane("a") is None  # no table yet: the general path creates it
    assert limiter.check("a", [parse_rate("2/minute")], scope="r").allowed
    assert lane("a") == (0, 0, 60.0)  # the lane's own answer: rule 0, remaining 0, whole again in 60 s
    before = dict(backend._tables[limiter.quota([parse_rate("2/minute")], "r").single].states)
    assert lane("a") is None  # denied: back to the general path, state untouched
    assert lane(None) is None  # the key reader declined
    assert lane("b") == (0, 1, 30.0)  # a second client: the cap (2) is reached now
    assert lane("c") is None  # a third would need an eviction: the general path makes room
    table = backend._tables[limiter.quota([parse_rate("2/minute")], "r").single]
    assert set(table.states) == {hash("a"), hash("b")} and table.states[hash("a")] == before[hash("a")]
    clock.advance(61)  # a sweep is due
    assert lane("b") is None
    assert len(backend) == 2


def test_no_lane_for_a_leaky_bucket_or_no_cost() -> None:
    limiter = Limiter("memory://", clock=FakeClock())
    backend = limiter._memory
    assert _lane(backend, limiter, "2/second; algorithm=leaky_bucket") is None
    assert _lane(backend, limiter, "2/minute", "2/second; algorithm=leaky_bucket") is None
    assert _lane(backend, limiter, "2/second", cost=0) is None
    assert _lane(backend, limiter, "2/second") is not None
    assert _lane(backend, limiter, "2/second", "9/hour") is not None
    two = limiter.quota([parse_rate("2/minute"), parse_rate("9/hour")], "r")
    assert Limiter("redis://127.0.0.1:1/0").lane(two, 1, str, [max]) is None  # remote: no lanes (no connection made)


def test_lane_of_several_rules_reports_the_tightest_and_hands_back_the_rest() -> None:
    clock = FakeClock(1000.0)
    limiter = Limiter(MemoryBackend(max_keys=5, sweep_interval=60.0), clock=clock)
    backend = limiter._memory
    rules = [parse_rate("3/minute"), parse_rate("4/hour")]
    lane = _lane(backend, limiter, "3/minute", "4/hour")
    assert lane is not None
    assert lane("a") is None  # the quota's tables are not known yet: the general path
    assert limiter.check("a", rules, scope="r").allowed  # 2 left of 3/minute, 3 of 4/hour
    assert lane("a") == (0, 1, 40.0)  # 1 left of 3/minute (the first rule): reported
    assert lane("a") == (0, 0, 60.0)  # 0 of 3/minute, 1 of 4/hour: still the first
    assert lane("a") is None  # 3/minute denies: back to the general path, nothing stored
    clock.advance(40)  # 3/minute gives back 2; 4/hour has 1 left (3 hits so far)
    assert lane("a") == (1, 0, 3600.0 - 40.0)  # now 4/hour is the tightest: it is reported
    assert len(backend) == 2  # one client, two tables
    assert lane("b") == (0, 2, 20.0)
    assert len(backend) == 4  # a new client: an entry in each table
    assert lane("c") is None  # another needs two more: 4 + 2 > max_keys 5, the general path makes room
    assert len(backend) == 4


# -- key readers: the same key as the compiled one, or None


@pytest.mark.parametrize("headers", [
    [(b"x-api-key", b"abc")], [(b"x-api-key", b" abc ")], [(b"x-api-key", b"")], [(b"x-api-key", b"  ")], [],
    [(b"X-API-Key", b"abc")], [(b"x-api-key", b"a" * 1024)], [(b"x-api-key", b"a" * 1025)],
    [(b"host", b"h"), (b"user-agent", b"u")], [(b"X-API-Key", b"abc"), (b"x-api-key", b"def")],
    [(bytearray(b"x-api-key"), b"abc")],
    [(b"x-api-key", bytearray(b"abc"))], [(b"x-api-key", b""), (b"x-api-key", b"abc")],
    [(b"x-other", b"1"), (b"x-api-key", "\u00e9t\u00e9".encode("latin-1"))],
])
def test_scope_reader_gives_the_compiled_key_or_declines(headers: list[tuple[bytes, Any]]) -> None:
    key = compile_key("header:X-API-Key")
    reader = scope_key_reader(key)
    assert reader is not None
    scope = {"type": "http", "headers": headers}
    read = reader(scope)
    assert read is None or read == key(ASGIRequest(scope))
    first = next((value for name, value in headers if name == b"x-api-key"), None)
    mixed_case = any(name != b"x-api-key" and name.lower() == b"x-api-key" for name, _ in headers)
    plain = (type(first) is bytes and len(first.strip()) <= 1024) or (first is None and not mixed_case)
    assert (read is not None) == bool(plain)


@pytest.mark.parametrize("value", ["abc", " abc ", "", "  ", None, "a" * 1024, "a" * 1025, b"abc"])
def test_environ_reader_gives_the_compiled_key_or_declines(value: Any) -> None:
    key = compile_key("header:X-API-Key")
    reader = environ_key_reader(key)
    assert reader is not None
    environ = {} if value is None else {"HTTP_X_API_KEY": value}
    read = reader(environ)
    assert read is None or read == key(WSGIRequest(environ))
    plain = value is None or (type(value) is str and len(value.strip()) <= 1024)
    assert (read is not None) == bool(plain)


def test_no_reader_for_other_key_specs() -> None:
    for spec in ("global", "query:k", "cookie:s", ["query:k", "ip"], ["header:X-API-Key", "cookie:s"]):
        key = compile_key(spec)
        assert scope_key_reader(key) is None and environ_key_reader(key) is None


PEERS: list[Any] = ["203.0.113.9", "2001:db8:1:2:3:4:5:6", "10.1.2.3", "", None, "not an address", "::ffff:1.2.3.4",
                    "fe80::1%eth0", "1" * 101, 12345]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("forwarded", [None, "198.51.100.7", "10.9.9.9, 198.51.100.8", "garbage"])
def test_ip_readers_give_the_compiled_key(peer: Any, forwarded: str | None) -> None:
    """The ``ip`` readers read the peer straight from the scope or environ, and for
    anything but an untrusted well-formed address run the key on a request view: either
    way, the compiled key's own answer (trusted proxies: 10.0.0.0/8, IPv6 grouped by /64)."""
    from ratelimit_mw.core.keys import ClientIP

    key = compile_key("ip", client_ip=ClientIP(["10.0.0.0/8"]))
    scope_reader, environ_reader = scope_key_reader(key), environ_key_reader(key)
    assert scope_reader is not None and environ_reader is not None
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    scope: dict[str, Any] = {"type": "http", "headers": headers, "client": None if peer is None else (peer, 5000)}
    environ: dict[str, Any] = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    assert scope_reader(scope) == key(ASGIRequest(scope))
    assert environ_reader(environ) == key(WSGIRequest(environ))


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.1.2.3", None])
@pytest.mark.parametrize("api_key", [None, b"abc", b"  ", b"", b"k" * 1500, "caf\u00e9".encode("latin-1")])
@pytest.mark.parametrize("name", [b"x-api-key", b"X-Api-Key"])
def test_chain_readers_give_the_compiled_key(peer: str | None, api_key: bytes | None, name: bytes) -> None:
    """``[header:X-API-Key, ip]``: the header's key when present, else the client's
    address, read straight from the scope or environ (or the key's own answer)."""
    from ratelimit_mw.core.keys import ClientIP

    key = compile_key(["header:X-API-Key", "ip"], client_ip=ClientIP(["10.0.0.0/8"]))
    scope_reader, environ_reader = scope_key_reader(key), environ_key_reader(key)
    assert scope_reader is not None and environ_reader is not None
    headers = [(b"x-forwarded-for", b"198.51.100.7")] + ([] if api_key is None else [(name, api_key)])
    scope: dict[str, Any] = {"type": "http", "headers": headers, "client": None if peer is None else (peer, 5000)}
    environ: dict[str, Any] = {"HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    if api_key is not None:
        environ["HTTP_X_API_KEY"] = api_key.decode("latin-1")
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    read = scope_reader(scope)
    assert read is None or read == key(ASGIRequest(scope))
    assert (read is None) == (api_key is not None and (name != b"x-api-key" or len(api_key.strip()) > 1024))
    read = environ_reader(environ)
    assert read is None or read == key(WSGIRequest(environ))
    assert (read is None) == (api_key is not None and len(api_key.strip()) > 1024)


def test_lanes_under_threads_admit_exactly_the_quota() -> None:
    """WSGI servers run requests on threads: a lane's check and store are one critical
    section, so eight threads racing on one key get exactly the quota between them."""
    import threading

    clock = FakeClock(1_000_000.0)
    policies = "version: 1\nroutes:\n  - {match: 'GET /hot', limits: ['300/hour'], key: 'header:X-API-Key'}\n"
    engine = Engine(load_policies(policies), Limiter("memory://", clock=clock))
    app = WSGIRateLimitMiddleware(_wsgi_ok, engine=engine)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hot", "HTTP_X_API_KEY": "hot", "REMOTE_ADDR": "10.0.0.1"}
    _wsgi_call(app, environ)
    _wsgi_call(app, environ)  # the path is cached, with its lane, from its second request
    general = _general_calls(engine)
    statuses: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(100):
            status = _wsgi_call(app, environ)[0][:3]
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython can: races show at once
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert statuses.count("200") == 298 and statuses.count("429") == 502  # 300 with the first two requests
    assert general[0] == 502  # the allowed ones all went through the lane
