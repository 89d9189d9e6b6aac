"""The apps under test: one tiny endpoint, bare, with ratelimit_mw, and with each peer.

Every variant serves ``GET /resource`` (plain text ``ok``) and ``GET /health``; the
client key is the ``X-API-Key`` header for ours and the peers alike. ``ALLOW`` is a
limit nobody reaches (so the allowed path is measured), ``DENY`` one that the first
request exhausts (so the 429 path is measured). Ours gets a bucket so deep it
never empties during a run (``ALLOW``), so states are real, stored with real
TTLs; the fixed-window peers get a count nobody reaches (``PEER_ALLOW``).

Peers are configured the way their docs show: slowapi with its decorator and
exception handler, flask-limiter with its decorator. Neither emits rate-limit
headers by default; ours emits the ``x-ratelimit`` and ``ietf`` families (5 headers).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "ALLOW",
    "DENY",
    "PEER_ALLOW",
    "fastapi_app",
    "flask_app",
    "policies",
    "starlette_app",
    "stub_admit",
]

ALLOW = "10/second; burst=1000000000"
PEER_ALLOW = "1000000000/second"
DENY = "1/hour"


def policies(limit: str, *, key: str = "header:X-API-Key") -> str:
    """A policy file limiting ``GET /resource`` by ``limit`` per ``key``; ``/health`` exempt."""
    return (
        "version: 1\n"
        f"defaults: {{key: '{key}', headers: [x-ratelimit, ietf]}}\n"
        "routes:\n"
        "  - {match: /health, exempt: true}\n"
        f"  - {{match: 'GET /resource', limits: ['{limit}']}}\n"
    )


def _api_key_from(request: Any) -> str:
    return str(request.headers.get("x-api-key", "anonymous"))


#: What ours adds to an allowed response of the bench route (x-ratelimit + ietf), fixed.
FIXED_HEADERS = [
    (b"x-ratelimit-limit", b"1000000000"),
    (b"x-ratelimit-remaining", b"999999999"),
    (b"x-ratelimit-reset", b"1"),
    (b"ratelimit-policy", b'"10-per-second";q=1000000000;w=100000000'),
    (b"ratelimit", b'"10-per-second";r=999999999;t=1'),
]


def _with_fixed_headers(app: Any) -> Any:
    """A pure ASGI wrapper adding :data:`FIXED_HEADERS` to every response, and nothing else:
    what sending our headers costs the server and the app, without any limiting."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        def send_with_headers(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *FIXED_HEADERS]
            return send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def starlette_app(variant: str, *, deny: bool = False, storage: str = "memory://") -> Any:
    """``bare``, ``bare-headers`` (bare plus our five headers, fixed, no limiting), ``ours``
    (RateLimitMiddleware on ``storage``) or ``slowapi``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    limit = DENY if deny else ALLOW if variant == "ours" else PEER_ALLOW

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    if variant == "slowapi":
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded

        limiter = Limiter(key_func=_api_key_from, storage_uri=storage)

        @limiter.limit(limit)
        async def limited(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/resource", limited), Route("/health", health)])
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        return app

    async def resource(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/resource", resource), Route("/health", health)])
    if variant == "ours":
        from ratelimit_mw import RateLimitMiddleware

        app.add_middleware(RateLimitMiddleware,  # type: ignore[arg-type]  # see benchmarks/README.md
                           policies=policies(limit), backend=storage)
    elif variant == "bare-headers":
        return _with_fixed_headers(app)
    elif variant != "bare":
        raise ValueError(f"unknown Starlette variant {variant!r}")
    return app


def fastapi_app(variant: str, *, deny: bool = False, storage: str = "memory://") -> Any:
    """``bare``, ``bare-dependency`` (a no-op dependency taking the request and response:
    FastAPI's own dispatch), ``ours-yaml`` (RateLimitMiddleware, the route in YAML), ``ours-dependency``
    (``Depends(RateLimit(...))`` on the route, engine from ``setup``) or ``slowapi``
    (its decorator and exception handler, as its docs show for FastAPI)."""
    from fastapi import Depends, FastAPI, Request, Response
    from fastapi.responses import PlainTextResponse

    limit = DENY if deny else ALLOW if variant.startswith("ours") else PEER_ALLOW
    app = FastAPI()
    if variant == "slowapi":
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded

        limiter = Limiter(key_func=_api_key_from, storage_uri=storage)
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]

        async def limited(request: Request) -> str:
            return "ok"

        # this module's annotations are strings, and FastAPI resolves them in the globals
        # of slowapi's wrapper: give it the class itself
        limited.__annotations__ = {"request": Request, "return": str}
        app.get("/resource", response_class=PlainTextResponse)(limiter.limit(limit)(limited))
        return app
    dependencies: list[Any] = []
    if variant == "ours-yaml":
        from ratelimit_mw.fastapi import setup

        setup(app, policies=policies(limit), backend=storage)
    elif variant == "ours-dependency":
        from ratelimit_mw.fastapi import RateLimit, setup

        setup(app, policies="version: 1\ndefaults: {key: 'header:X-API-Key'}\n", backend=storage, middleware=False)
        dependencies = [Depends(RateLimit(limit))]
    elif variant == "bare-dependency":
        async def noop(request: Request, response: Response) -> None:
            return None

        noop.__annotations__ = {"request": Request, "response": Response, "return": None}  # see slowapi above
        dependencies = [Depends(noop)]
    elif variant != "bare":
        raise ValueError(f"unknown FastAPI variant {variant!r}")

    @app.get("/resource", response_class=PlainTextResponse, dependencies=dependencies)
    async def resource() -> str:
        return "ok"

    return app


def flask_app(variant: str, *, deny: bool = False, storage: str = "memory://") -> Any:
    """``bare``, ``ours`` (WSGIRateLimitMiddleware) or ``flask-limiter``."""
    from flask import Flask, request

    app = Flask("bench")
    limit = DENY if deny else ALLOW if variant == "ours" else PEER_ALLOW

    if variant == "flask-limiter":
        from flask_limiter import Limiter

        limiter = Limiter(lambda: request.headers.get("X-API-Key", "anonymous"), app=app, storage_uri=storage)

        @app.get("/resource")
        @limiter.limit(limit)
        def limited() -> str:
            return "ok"

        return app

    @app.get("/resource")
    def resource() -> str:
        return "ok"

    if variant == "ours":
        from ratelimit_mw import WSGIRateLimitMiddleware

        app.wsgi_app = WSGIRateLimitMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, policies=policies(limit), backend=storage
        )
    elif variant != "bare":
        raise ValueError(f"unknown Flask variant {variant!r}")
    return app


def engine_of(app: Any) -> Any:
    """The Engine of ``starlette_app("ours")``: builds its middleware stack and finds our
    layer in it (so the stack is built once, and stubs on the engine take effect)."""
    app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not hasattr(layer, "engine"):
        layer = layer.app
    return layer.engine


def stub_admit(app: Any, part: str) -> Any:
    """Stub out the limiting of ``starlette_app("ours")`` to cost a part of it by difference.

    ``part``: ``fixed`` (every request's plan answers the verdict an allowed request
    gets, always the same: the middleware layer and the header injection run, no key,
    check or rendering) or ``none`` (no plan: the layer and the route lookup alone).
    """
    from benchmarks.asgi_driver import http_scope
    from ratelimit_mw.requestview import SCOPE

    router = engine_of(app).router(SCOPE, raw=True)
    probe = http_scope(api_key="stub-probe")
    plan = router.plan(probe["method"], probe["path"])
    assert plan is not None
    verdict = plan.decide(probe)

    class Fixed:
        def decide(self, source: Any) -> Any:
            return verdict

        async def adecide(self, source: Any) -> Any:
            return verdict

    stub = {"fixed": Fixed(), "none": None}[part]
    router.plan = lambda method, path: stub  # type: ignore[method-assign]
    return app


def from_env() -> Any:
    """The uvicorn target: ``BENCH_APP`` = ``bare`` | ``bare-headers`` | ``ours`` | ``slowapi``,
    ``BENCH_STORAGE`` = URL; ``BENCH_STUB`` = ``fixed`` | ``none`` stubs ours
    (:func:`stub_admit`)."""
    app = starlette_app(os.environ["BENCH_APP"], storage=os.environ.get("BENCH_STORAGE", "memory://"))
    stub = os.environ.get("BENCH_STUB")
    return stub_admit(app, stub) if stub else app
