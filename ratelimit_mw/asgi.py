"""Pure ASGI rate-limiting middleware (Starlette, FastAPI, any ASGI app).

Modelled on Starlette's CORS middleware: no base class, everything prepared in
``__init__``, non-HTTP scopes passed through untouched, headers added by wrapping
``send`` and touching only ``http.response.start``. The response body and the
app's own headers are never changed; a header the app already set is not added
twice. A denial answers itself and never calls the app.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from ratelimit_mw import log
from ratelimit_mw.engine import Engine, Lane, Verdict, build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.requestview import ASGIRequest
from ratelimit_mw.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RateLimitMiddleware"]

_NO_LANES: dict[str, Lane] = {}


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
        self._sleep = self.engine.limiter._asleep
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
        engine = self.engine
        if not scope.get("root_path"):
            # the plain in-process case in a few frames (see Engine.scope_lanes)
            path = scope.get("path")
            lane = engine.scope_lanes.get(path, _NO_LANES).get(scope.get("method"))  # type: ignore[arg-type]
            if lane is not None and path != self._metrics_path:
                try:
                    extra = lane(scope)
                except Exception as exc:  # never a 500: the general path decides (and logs)
                    log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=path)
                    extra = None
                if extra is not None:  # allowed; [] when the route sends no headers
                    await self.app(scope, receive, _with_headers(send, extra, engine) if extra else send)
                    return
        request = ASGIRequest(scope)
        if self._metrics_app is not None and request.path == self._metrics_path:
            await self._metrics_app(scope, receive, send)
            return
        if engine.inline:  # memory backend: the check never awaits, so no coroutine layers
            verdict = engine.admit(request, raw=True)
        else:
            verdict = await engine.aadmit(request, raw=True)
        if type(verdict) is list:  # allowed at once: only headers to add
            await self.app(scope, receive, _with_headers(send, verdict, engine) if verdict else send)
            return
        if verdict is None:
            await self.app(scope, receive, send)
            return
        verdict = cast(Verdict, verdict)
        if verdict.reject:  # answered here, without calling the app (no extra coroutine)
            rejection = engine.rejection(verdict, raw=True)
            await send({"type": "http.response.start", "status": rejection.status, "headers": rejection.headers})
            await send({"type": "http.response.body", "body": rejection.body})
            return
        if verdict.delay > 0:
            await self._sleep(verdict.delay)
        extra = verdict.headers
        if not extra:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(send, extra, engine))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        verdict = await self.engine.adecide(ASGIRequest(scope), raw=True)
        if verdict is not None and verdict.reject:
            # Closing before accept makes the server answer the handshake with 403.
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
            return
        if verdict is not None and verdict.delay > 0:
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
