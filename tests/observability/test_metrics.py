"""RateLimitMetrics against real prometheus-client registries and real adapters."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from ratelimit_mw.asgi import RateLimitMiddleware
from ratelimit_mw.engine import Engine, build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.metrics import (
    RateLimitMetrics,
    metrics_asgi_app,
    metrics_wsgi_app,
    serve_metrics_asgi,
    serve_metrics_wsgi,
)
from ratelimit_mw.testing import FakeClock, FakeRequest
from ratelimit_mw.wsgi import WSGIRateLimitMiddleware
from tests.observability.helpers import POLICIES, FlakyBackend


def _engine(clock: FakeClock | None = None, **options: Any) -> Engine:
    return build_engine(POLICIES, limiter=Limiter("memory://", clock=clock or FakeClock(), **options))


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _plain_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def _plain_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_nothing_is_registered_at_import() -> None:
    assert prometheus_client.REGISTRY.get_sample_value("ratelimit_breaker_state") is None


def test_one_instance_per_registry() -> None:
    registry = CollectorRegistry()
    RateLimitMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RateLimitMetrics(registry)
    RateLimitMetrics(registry, namespace="other")  # another namespace is fine


def test_decisions_are_counted_by_route_policy_and_outcome() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    engine = metrics.attach(_engine())
    key = {"x-api-key": "a"}
    for _ in range(6):
        engine.decide(FakeRequest("GET", "/resource", key))
    engine.decide(FakeRequest("GET", "/health"))
    engine.decide(FakeRequest("GET", "/shadow", key))
    engine.decide(FakeRequest("GET", "/shadow", key))
    engine.decide(FakeRequest("GET", "/users/7", key))
    engine.decide(FakeRequest("GET", "/not-limited"))  # no route, no unmatched: not a decision

    def decisions(route: str, policy: str, outcome: str) -> float:
        return _value(registry, "ratelimit_decisions_total", route=route, policy=policy, outcome=outcome)

    assert decisions("GET /resource", "free", "allowed") == 5
    assert decisions("GET /resource", "free", "limited") == 1
    assert decisions("/health", "", "exempt") == 1
    assert decisions("/shadow", "", "allowed") == 1
    assert decisions("/shadow", "", "shadow") == 1
    assert decisions("/users/{id}", "", "allowed") == 1
    # every decision that ran the limiter is timed; exempt requests skip it
    assert _value(registry, "ratelimit_decision_duration_seconds_count") == 9
    # the memory backend is local: no backend round trips to time
    assert _value(registry, "ratelimit_backend_duration_seconds_count") == 0


def test_backend_latency_errors_breaker_and_fallback() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    clock = FakeClock()
    backend = FlakyBackend()
    limiter = Limiter(backend, clock=clock, on_backend_error="memory", breaker_threshold=2, breaker_recovery=5.0)
    metrics.attach(limiter)
    assert _value(registry, "ratelimit_breaker_state") == 0
    assert _value(registry, "ratelimit_fallback_active") == 0

    assert limiter.check("k", "10/second").allowed
    assert _value(registry, "ratelimit_backend_duration_seconds_count") == 1

    backend.failing = True
    for _ in range(2):
        assert limiter.check("k", "10/second").degraded
    assert _value(registry, "ratelimit_backend_errors_total", kind="ConnectionError") == 2
    assert _value(registry, "ratelimit_breaker_state") == 2  # open
    assert _value(registry, "ratelimit_fallback_active") == 1
    limiter.check("k", "10/second")  # breaker open: answered without calling the backend
    assert _value(registry, "ratelimit_backend_errors_total", kind="ConnectionError") == 2
    assert _value(registry, "ratelimit_memory_tracked_keys", store="fallback") == 1

    backend.failing = False
    clock.advance(5.0)
    assert not limiter.check("k", "10/second").degraded  # the half-open probe succeeds
    assert _value(registry, "ratelimit_breaker_state") == 0
    assert _value(registry, "ratelimit_fallback_active") == 0
    assert _value(registry, "ratelimit_backend_duration_seconds_count") == 2


def test_memory_store_sizes_are_read_at_scrape_time() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    limiter = metrics.attach(Limiter("memory://?max_keys=10", clock=FakeClock()))
    assert _value(registry, "ratelimit_memory_tracked_keys", store="primary") == 0
    for i in range(15):
        limiter.check(f"client-{i}", "1/minute")
    assert _value(registry, "ratelimit_memory_tracked_keys", store="primary") == 10
    assert _value(registry, "ratelimit_memory_evictions_total", store="primary") == 5
    # no fallback store was ever created, so none is reported
    assert registry.get_sample_value("ratelimit_memory_tracked_keys", {"store": "fallback"}) is None


def test_labels_never_carry_a_client_key_or_a_raw_path() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    app = serve_metrics_wsgi(metrics.attach(WSGIRateLimitMiddleware(_plain_wsgi, engine=_engine())), metrics)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        for user in range(20):
            client.get(f"/users/98765{user}", headers={"X-API-Key": "SECRET-abc"})
        text = client.get("/metrics").text
    assert 'route="/users/{id}"' in text
    assert "SECRET" not in text and "98765" not in text


def test_names_lists_every_exported_sample() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    clock = FakeClock()
    backend = FlakyBackend()
    limiter = Limiter(backend, clock=clock, on_backend_error="memory", breaker_threshold=1)
    metrics.attach(build_engine(POLICIES, limiter=limiter)).decide(FakeRequest("GET", "/resource"))
    backend.failing = True
    limiter.check("k", "1/second")
    memory = metrics.attach(Limiter("memory://", clock=clock))  # held: metrics keep weak refs
    memory.check("k", "1/second")
    exported = {s.name for family in registry.collect() for s in family.samples}
    assert exported <= metrics.names
    assert {"ratelimit_decisions_total", "ratelimit_memory_evictions_total"} <= exported
    assert registry.get_sample_value("ratelimit_memory_tracked_keys", {"store": "primary"}) == 1


def test_attach_refuses_what_it_cannot_observe() -> None:
    with pytest.raises(TypeError, match="cannot attach"):
        RateLimitMetrics(CollectorRegistry()).attach(object())


def test_attach_wires_middleware_engine_and_limiter() -> None:
    metrics = RateLimitMetrics(CollectorRegistry())
    middleware = RateLimitMiddleware(_plain_asgi, engine=_engine())
    assert metrics.attach(middleware) is middleware
    assert middleware.engine.observer is metrics
    assert middleware.engine.limiter.observer is metrics


def test_wsgi_exposition_app_serves_text_format() -> None:
    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    metrics.decision("GET /x", "", "allowed", 0.0001)
    app = metrics_wsgi_app(metrics)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'ratelimit_decisions_total{outcome="allowed",policy="",route="GET /x"} 1.0' in response.text


def test_asgi_exposition_mounted_and_served_by_the_wrapper() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    limited = metrics.attach(RateLimitMiddleware(_plain_asgi, engine=_engine()))
    mounted = Starlette(routes=[Mount("/internal/metrics", app=metrics_asgi_app(registry))])
    wrapped = serve_metrics_asgi(limited, metrics)

    async def run() -> tuple[str, str, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as c:
            for _ in range(7):
                await c.get("/resource", headers={"X-API-Key": "k"})
            scraped = [await c.get("/metrics") for _ in range(3)]  # scrapes are never limited
            passthrough = await c.get("/other")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mounted), base_url="http://t") as c:
            other = (await c.get("/internal/metrics/")).text
        assert {r.status_code for r in scraped} == {200}
        return scraped[-1].text, other, passthrough.status_code

    text, other, status = asyncio.run(run())
    assert status == 200
    for body in (text, other):
        assert 'outcome="allowed",policy="free",route="GET /resource"} 5.0' in body
        assert 'outcome="limited",policy="free",route="GET /resource"} 2.0' in body


def test_asgi_exposition_app_acknowledges_lifespan() -> None:
    app = metrics_asgi_app(CollectorRegistry())
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_metrics_do_not_keep_a_limiter_alive() -> None:
    import gc
    import weakref

    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry)
    limiter = metrics.attach(Limiter("memory://", clock=FakeClock()))
    limiter.check("k", "1/second")
    assert registry.get_sample_value("ratelimit_memory_tracked_keys", {"store": "primary"}) == 1
    ref = weakref.ref(limiter)
    del limiter
    gc.collect()
    assert ref() is None
    assert registry.get_sample_value("ratelimit_memory_tracked_keys", {"store": "primary"}) is None
