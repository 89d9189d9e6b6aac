"""Pure ASGI rate-limiting middleware (Starlette, FastAPI, any ASGI app).

Modelled on Starlette's CORS middleware: no base class, everything prepared in
``__init__``, non-HTTP scopes passed through untouched, headers added by wrapping
``send`` and touching only ``http.response.start``. The response body and the
app's own headers are never changed; a header the app already set is not added
twice. A denial answers itself and never calls the app.
"""

from __future__ import annotations

from typing import Any

from ratelimit_mw.engine import Engine, Verdict, build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.requestview import ASGIRequest
from ratelimit_mw.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RateLimitMiddleware"]


_NAMES: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    encoded = _NAMES.get(name)
    if encoded is None:
        if len(_NAMES) > 256:  # bounded: header names come from configuration
            _NAMES.clear()
        encoded = _NAMES[name] = name.lower().encode("latin-1")
    return encoded


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(_NAMES.get(k) or _name(k), v.encode("latin-1")) for k, v in headers]


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
        request = ASGIRequest(scope)
        if self._metrics_app is not None and request.path == self._metrics_path:
            await self._metrics_app(scope, receive, send)
            return
        verdict = await self.engine.adecide(request)
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if verdict.reject:
            await self._reject(verdict, send)
            return
        if verdict.delay > 0:
            await self._sleep(verdict.delay)
        extra = _encode(verdict.headers)
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {bytes(k).lower() for k, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _reject(self, verdict: Verdict, send: Send) -> None:
        rejection = self.engine.rejection(verdict)
        await send(
            {
                "type": "http.response.start",
                "status": rejection.status,
                "headers": _encode(rejection.headers),
            }
        )
        await send({"type": "http.response.body", "body": rejection.body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        verdict = await self.engine.adecide(ASGIRequest(scope))
        if verdict is not None and verdict.reject:
            # Closing before accept makes the server answer the handshake with 403.
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
            return
        if verdict is not None and verdict.delay > 0:
            await self._sleep(verdict.delay)
        await self.app(scope, receive, send)
