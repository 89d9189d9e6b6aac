"""Pure ASGI rate-limiting middleware (Starlette, FastAPI, any ASGI app).

Modelled on Starlette's CORS middleware: no base class, everything prepared in
``__init__``, non-HTTP scopes passed through untouched, headers added by wrapping
``send`` and touching only ``http.response.start``. The response body and the
app's own headers are never changed; a header the app already set is not added
twice. A denial answers itself and never calls the app.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.engine import MISS, NO_METHODS, Engine, build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.overload.admission import call_asgi
from ratelimit_mw.requestview import SCOPE, route_path
from ratelimit_mw.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["VERDICT_KEY", "RateLimitMiddleware"]

#: The scope key under which an allowed request's verdict reaches the app.
VERDICT_KEY = "ratelimit.verdict"


class RateLimitMiddleware:
    """Limit an ASGI app by the policies given.

    ``app.add_middleware(RateLimitMiddleware, policies="policies.yaml", backend="memory://")``
    or ``RateLimitMiddleware(app, policies=..., backend=...)``.

    Args:
        app: the ASGI app to wrap.
        policies: path, YAML text, mapping or loaded PolicySet (``None``: environment).
        backend: backend URL or client (``None``: ``REDIS_URL`` or memory).
        limiter: an existing :class:`Limiter` to share (instead of ``backend``).
        engine: an existing :class:`Engine` to share (instead of all of the above).
        metrics: a :class:`ratelimit_mw.metrics.RateLimitMetrics` to attach.
        metrics_path: serve the metrics at this path from the middleware itself
            (answered before limiting, never limited).
        **limiter_options: passed to :class:`Limiter` (``clock``, ``key_secret``...).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policies: Any = None,
        backend: Any = None,
        limiter: Limiter | None = None,
        engine: Engine | None = None,
        metrics: Any = None,
        metrics_path: str | None = None,
        **limiter_options: Any,
    ) -> None:
        self.app = app
        self.engine = engine or build_engine(policies, backend, limiter, **limiter_options)
        self._router = self.engine.router(SCOPE, raw=True)
        self._sleep = self.engine.limiter.asleep
        if metrics is not None:
            metrics.attach(self.engine)
        self._metrics_path = metrics_path
        self._metrics_app: ASGIApp | None = None
        if metrics_path is not None:
            from ratelimit_mw.metrics import metrics_asgi_app

            self._metrics_app = metrics_asgi_app(metrics)

    @property
    def limiter(self) -> Limiter:
        """The limiter in use (for direct checks, usage and resets)."""
        return self.engine.limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self.engine.policies.limit_websockets:
                await self._websocket(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        path = route_path(scope) if scope.get("root_path") else scope.get("path") or "/"
        if path == self._metrics_path and self._metrics_app is not None:
            await self._metrics_app(scope, receive, send)
            return
        engine = self.engine
        method = scope.get("method", "GET")
        plan = self._router.routes.get(path, NO_METHODS).get(method, MISS)
        if plan is MISS:
            plan = self._router.plan(method, path)
        if plan is None:
            await self.app(scope, receive, send)
            return
        try:
            # memory backend: the check never awaits, so no coroutine layers
            verdict = plan.decide(scope) if engine.inline else await plan.adecide(scope)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=path)
            verdict = None
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if verdict.reject:  # answered here, without calling the app
            rejection = engine.rejection(verdict, raw=True)
            await send({"type": "http.response.start", "status": rejection.status, "headers": rejection.headers})
            await send({"type": "http.response.body", "body": rejection.body})
            return
        if verdict.delay > 0:
            try:
                await self._sleep(verdict.delay)
            except BaseException:  # cancelled while shaped: the app never runs, give the slot back
                if verdict.slot is not None:
                    verdict.slot.release(False, False)
                raise
        extra = verdict.headers
        scope[VERDICT_KEY] = verdict  # for checks declared at the view (ratelimit_mw.fastapi)
        send = _with_headers(send, extra, engine) if extra else send
        if verdict.slot is not None:  # overload protection: the slot goes back when the response ends
            await call_asgi(self.app, scope, receive, send, verdict.slot)
            return
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope.get("root_path") else scope.get("path") or "/"
        plan = self._router.plan("GET", path)  # the handshake is a GET
        verdict = None
        if plan is not None:
            try:
                verdict = await plan.adecide(scope)
            except Exception as exc:
                log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=path)
        if verdict is not None:
            if verdict.reject:  # closing before accept makes the server answer the handshake with 403
                if (await receive())["type"] == "websocket.connect":
                    await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
                return
            if verdict.slot is not None:
                verdict.slot.release(sample=False)  # a WebSocket is not counted in flight
            if verdict.delay > 0:
                await self._sleep(verdict.delay)
        await self.app(scope, receive, send)


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]], engine: Engine) -> Send:
    """``send`` adding ``extra`` to ``http.response.start``, except names the app set.

    A plain function returning ``send``'s awaitable, not a coroutine: no extra
    coroutine per message. The app's header names are compared (lower-cased) with
    every name the engine may emit; only on a hit is ``extra`` filtered.
    """

    def send_with_headers(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = message.get("headers") or ()
            ours = engine.raw_header_names
            clash = False
            try:
                for name, _ in headers:  # lower-case, as servers and Starlette send them, needs no copy
                    if name in ours or (not name.islower() and name.lower() in ours):
                        clash = True
                        break
            except TypeError:  # a bytearray name: unhashable, compare below
                clash = True
            if clash:
                present = {bytes(k).lower() for k, _ in headers}
                message["headers"] = [*headers, *(h for h in extra if h[0] not in present)]
            else:
                message["headers"] = [*headers, *extra]
        return send(message)

    return send_with_headers
