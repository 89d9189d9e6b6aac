"""Real framework apps wrapped by the middlewares, for the shared case table."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware

POLICIES = """
version: 1
defaults:
  key: [header:X-API-Key, ip]
  headers: [x-ratelimit, ietf]
trusted_proxies: [10.0.0.0/8]
policies:
  free: {limits: ["10/second; burst=40"]}
routes:
  - match: "GET /resource"
    policy: free
  - match: "/users/{id}"
    limits: ["3/minute"]
  - match: "/two"
    limits: ["2/second; name=burst", "3/minute; name=sustained"]
  - match: "/costly"
    limits: ["10/minute"]
    cost: 4
  - match: "/stream"
    limits: ["5/minute"]
  - match: "/own-headers"
    limits: ["5/minute"]
  - match: "/shadow"
    limits: ["1/minute"]
    shadow: true
  - match: "/health"
    exempt: true
"""


def starlette_app(**options: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"X-App": "1"})

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> Any:
            for part in (b"a", b"b", b"c"):
                yield part

        return StreamingResponse(body(), media_type="text/plain")

    async def own(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x", headers={"X-RateLimit-Limit": "999"})

    routes = [
        Route("/resource", ok),
        Route("/users/{id}", ok),
        Route("/two", ok),
        Route("/costly", ok),
        Route("/stream", stream),
        Route("/own-headers", own),
        Route("/shadow", ok),
        Route("/health", ok),
        Route("/other", ok),
        Route("/resource", ok, methods=["OPTIONS"], name="preflight"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(RateLimitMiddleware, policies=POLICIES, backend="memory://", **options)
    return app


def fastapi_app(**options: Any) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    app = FastAPI()

    def ok() -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"X-App": "1"})

    for path in ("/resource", "/users/{id}", "/two", "/costly", "/shadow", "/health", "/other"):
        app.add_api_route(path, ok, methods=["GET", "POST"])
    app.add_api_route("/resource", ok, methods=["OPTIONS"])

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b", b"c"]), media_type="text/plain")

    @app.get("/own-headers")
    def own() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"X-RateLimit-Limit": "999"})

    app.add_middleware(RateLimitMiddleware, policies=POLICIES, backend="memory://", **options)
    return app


def flask_app(**options: Any) -> Any:
    from flask import Flask, Response

    app = Flask(__name__)

    def ok(**_: Any) -> Response:
        return Response('{"ok": true}', content_type="application/json", headers={"X-App": "1"})

    for i, path in enumerate(("/resource", "/users/<id>", "/two", "/costly", "/shadow", "/health", "/other")):
        app.add_url_rule(path, f"ok{i}", ok, methods=["GET", "POST", "OPTIONS"])

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[bytes]:
            yield from (b"a", b"b", b"c")

        return Response(body(), content_type="text/plain")

    @app.get("/own-headers")
    def own() -> Response:
        return Response("x", headers={"X-RateLimit-Limit": "999"})

    app.wsgi_app = WSGIRateLimitMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, policies=POLICIES, backend="memory://", **options
    )
    return app


def django_wsgi(**options: Any) -> Callable[..., Any]:
    """Django's real WSGI handler; URL conf built to mirror the other apps."""
    from tests.support.django_setup import configure

    configure()  # shared by every Django test of the process (settings are global)
    _install_django_urls()
    from django.core.wsgi import get_wsgi_application

    return WSGIRateLimitMiddleware(get_wsgi_application(), policies=POLICIES, backend="memory://", **options)


def _install_django_urls() -> None:
    import sys
    import types

    from django.http import HttpResponse, StreamingHttpResponse
    from django.urls import path, re_path

    from tests.support.django_setup import ADAPTERS_URLCONF

    name = ADAPTERS_URLCONF
    if name in sys.modules:
        return

    def ok(request: Any, **_: Any) -> HttpResponse:
        response = HttpResponse('{"ok": true}', content_type="application/json")
        response["X-App"] = "1"
        return response

    def stream(request: Any) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"a", b"b", b"c"]), content_type="text/plain")

    def own(request: Any) -> HttpResponse:
        response = HttpResponse("x")
        response["X-RateLimit-Limit"] = "999"
        return response

    module = types.ModuleType(name)
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("resource", ok), re_path(r"^users/(?P<id>[^/]+)$", ok), path("two", ok),
        path("costly", ok), path("shadow", ok), path("health", ok), path("other", ok),
        path("stream", stream), path("own-headers", own),
    ]
    sys.modules[name] = module
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
