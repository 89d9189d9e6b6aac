"""WSGI rate-limiting middleware (Flask, Django, any WSGI app).

The shape of werkzeug's middlewares: a plain class with ``__call__(environ,
start_response)``. Headers are added by wrapping ``start_response``; the app's
iterable is returned as is, so streaming bodies and ``close()`` keep working.
A denial answers itself and never calls the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.engine import MISS, NO_METHODS, Engine, build_engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.overload.admission import call_wsgi
from ratelimit_mw.requestview import ENVIRON, wsgi_path

__all__ = ["WSGIRateLimitMiddleware"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


class WSGIRateLimitMiddleware:
    """Limit a WSGI app by the policies given.

    ``flask_app.wsgi_app = WSGIRateLimitMiddleware(flask_app.wsgi_app, policies=...)``,
    or around Django's ``get_wsgi_application()``. Arguments as for
    :class:`ratelimit_mw.RateLimitMiddleware` (including ``metrics``/``metrics_path``).
    """

    def __init__(
        self,
        app: WSGIApp,
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
        self._router = self.engine.router(ENVIRON)
        self._sleep = self.engine.limiter.sleep
        if metrics is not None:
            metrics.attach(self.engine)
        self._metrics_path = metrics_path
        self._metrics_app: WSGIApp | None = None
        if metrics_path is not None:
            from ratelimit_mw.metrics import metrics_wsgi_app

            self._metrics_app = metrics_wsgi_app(metrics)

    @property
    def limiter(self) -> Limiter:
        """The limiter in use (for direct checks, usage and resets)."""
        return self.engine.limiter

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not path.isascii():
            path = wsgi_path(environ)
        if path == self._metrics_path and self._metrics_app is not None:
            return self._metrics_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        plan = self._router.routes.get(path, NO_METHODS).get(method, MISS)
        if plan is MISS:
            plan = self._router.plan(method, path)
        if plan is None:
            return self.app(environ, start_response)
        try:
            verdict = plan.decide(environ)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=path)
            verdict = None
        if verdict is None:
            return self.app(environ, start_response)
        if verdict.reject:
            rejection = self.engine.rejection(verdict)
            start_response(_status_line(rejection.status), rejection.headers)
            return [rejection.body]
        if verdict.delay > 0:
            self._sleep(verdict.delay)
        extra = verdict.headers
        start = _with_headers(start_response, extra, self.engine) if extra else start_response
        if verdict.slot is not None:  # overload protection: the slot goes back when the iterable closes
            return call_wsgi(self.app, environ, start, verdict.slot)
        return self.app(environ, start)


def _with_headers(
    start_response: Callable[..., Any], extra: list[tuple[str, str]], engine: Engine
) -> Callable[..., Any]:
    """``start_response`` adding ``extra`` to the app's headers, except names the app set.

    The app's names are compared (lower-cased) with every name the engine may emit;
    only on a hit is ``extra`` filtered.
    """

    def start_with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        ours = engine.header_names
        for name, _ in headers:
            if name.lower() in ours:
                present = {k.lower() for k, _ in headers}
                merged = [*headers, *(h for h in extra if h[0].lower() not in present)]
                break
        else:
            merged = [*headers, *extra]
        if exc_info is not None:
            return start_response(status, merged, exc_info)
        return start_response(status, merged)

    return start_with_headers
