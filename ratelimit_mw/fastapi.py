"""FastAPI and Starlette: limits declared next to the route, in the middleware's engine.

``RateLimit("5/minute", key=...)`` is a dependency: put it in ``dependencies=`` of a
route, an ``APIRouter`` or the app. Each route it guards becomes a declared route
(:meth:`Engine.declare <ratelimit_mw.engine.Engine.declare>`, named
``dependency:GET /items/{item_id}``) of the engine the middleware runs, so it shares
the backend, headers, metrics and admin usage/reset with the YAML routes, and it is
checked after routing, where authentication has run: ``key="user"`` reads
``scope["user"]`` (Starlette's ``AuthenticationMiddleware``), and
``key=Depends(current_user)`` limits by what that dependency returns.

Which engine: ``RateLimit(..., engine=...)``, else ``app.state.ratelimit_engine``
(:func:`setup` sets it), else the :class:`~ratelimit_mw.asgi.RateLimitMiddleware` in
the app's middleware stack. None of them is a :class:`~ratelimit_mw.errors.ConfigError`
on the first request, never a silent "no limit". A rate that does not parse is a
ConfigError when the dependency is created (at import).

:func:`setup` also answers denials with the engine's problem+json 429 and documents
the 429 (status, headers, body) of every limited route in the OpenAPI schema.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from fastapi import FastAPI, Request, Response
from fastapi.params import Depends
from starlette.exceptions import HTTPException

from ratelimit_mw import log
from ratelimit_mw.asgi import VERDICT_KEY, RateLimitMiddleware
from ratelimit_mw.core.keys import Access
from ratelimit_mw.core.problem import QUOTA_EXCEEDED
from ratelimit_mw.core.rates import Rule, parse_rates
from ratelimit_mw.declared import stricter
from ratelimit_mw.discover import STATE_ATTR, engine_of
from ratelimit_mw.engine import Engine, Router, Verdict, build_engine
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.policy.loader import policies_from_env
from ratelimit_mw.requestview import ASGIRequest, _scope_header, _scope_peer, _scope_user

__all__ = ["InFlightRateLimit", "RateLimit", "RateLimited", "declare_routes", "identity_of", "setup"]

_NO_VALUE: Any = object()


class RateLimited(HTTPException):
    """A denial by a :class:`RateLimit` dependency: status 429 (or as configured),
    with the rate-limit headers. :func:`setup` renders it as the engine's problem+json."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, media_type: str,
                 verdict: Verdict) -> None:
        retry = headers.get("Retry-After", "")
        super().__init__(status, detail=f"Rate limit exceeded; retry after {retry} seconds.", headers=headers)
        self.body = body
        self.media_type = media_type
        self.verdict = verdict


class _Source(NamedTuple):
    """What the dependency's keys read: the Starlette request, and the key dependency's value."""

    request: Request
    user: Any


def identity_of(value: Any) -> object | None:
    """The identifier of a user value: a ``str``/``int`` itself; an object's ``identity``,
    ``id``, ``pk``, ``username`` or ``sub`` (a mapping's too); ``None`` when anonymous.

    Raises:
        TypeError: nothing identifies it (its ``str()`` could differ per request and
            lift the limit); the request is then limited by the next key of the chain.
    """
    if value is None or isinstance(value, (str, int)):
        return value  # type: ignore[no-any-return]
    if getattr(value, "is_authenticated", True) is False:
        return None
    for name in ("identity", "id", "pk", "username", "sub"):
        found = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
        if found is not None:
            return found  # type: ignore[no-any-return]
    raise TypeError(f"cannot tell which user {type(value).__name__} is: give it an id, or return a str")


def _user(source: _Source) -> object | None:
    if source.user is _NO_VALUE:
        return _scope_user(source.request.scope)
    return identity_of(source.user)


def _header(name: str) -> Callable[[_Source], str | None]:
    read = _scope_header(name)
    return lambda source: read(source.request.scope)


#: How keys read a dependency's request: the scope, the native request, the user.
ACCESS = Access(
    lambda source: _scope_peer(source.request.scope),
    _header,
    lambda source: ASGIRequest(source.request.scope),
    lambda source: ASGIRequest(source.request.scope, native=source.request),
    _user,
)


def _find_engine(request: Request) -> Engine:
    app = request.scope.get("app")
    engine = engine_of(app)
    if isinstance(engine, Engine):
        state = getattr(app, "state", None)
        if state is not None:
            setattr(state, STATE_ATTR, engine)  # found once per app
        return engine
    raise ConfigError(
        "RateLimit dependency: no rate-limit engine. Call ratelimit_mw.fastapi.setup(app, ...), add "
        "ratelimit_mw.RateLimitMiddleware to the app, or pass RateLimit(..., engine=...)"
    )


class RateLimit:
    """A FastAPI dependency that limits the routes it guards.

    ``dependencies=[Depends(RateLimit("5/minute", key="user"))]`` on a route, an
    ``APIRouter`` or the app. Each guarded route gets its own buckets (unless ``name``
    is given, which makes every route it guards share one).

    Args:
        limits: ``"5/minute"``, ``"1/second;5/minute"``, or a list of rates.
        key: a key spec (``"user"``, ``["user", "ip"]``, ``"header:X-API-Key"``), a
            callable, or ``Depends(current_user)``: limit by the dependency's value
            (:func:`identity_of`), and by client IP when it returns ``None``.
            ``None``: the policies' default key.
        cost: units each request consumes.
        name: the declared route's name; default ``dependency:<METHODS> <path>``.
        engine: the engine to use (default: found from the app, see the module).

    Raises:
        ConfigError: a rate that does not parse.
    """

    def __init__(self, limits: str | Rule | Sequence[str | Rule], *, key: Any = None, cost: int = 1,
                 name: str | None = None, engine: Engine | None = None) -> None:
        items = (limits,) if isinstance(limits, (str, Rule)) else tuple(limits)
        for item in items:
            if not isinstance(item, Rule):
                try:
                    parse_rates(item)
                except ConfigError as exc:
                    raise ConfigError(f"RateLimit({limits!r}): {exc}") from None
        if not items:
            raise ConfigError("RateLimit: give at least one limit, e.g. RateLimit('5/minute')")
        self.limits = items
        self.cost = cost
        self.name = name
        self.engine = engine
        self.key_dependency: Depends | None = key if isinstance(key, Depends) else None
        self.key = ["user", "ip"] if self.key_dependency is not None else key
        self._names: dict[tuple[Any, Any], str] = {}
        #: per engine (weakly: tests build many): its router for dependencies, and the names declared
        self._engines: weakref.WeakKeyDictionary[Engine, tuple[Router, set[str]]] = weakref.WeakKeyDictionary()
        self._by_app: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()
        #: (id(app), route path, endpoint) -> (the app, weakly; engine, router, route name):
        #: one lookup per request; an entry whose app is gone (its id reused) is replaced
        self._routes: dict[tuple[int, Any, Any], tuple[Callable[[], Any], Engine, Router, str]] = {}
        parameters = [
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
            inspect.Parameter("response", inspect.Parameter.KEYWORD_ONLY, annotation=Response),
        ]
        if self.key_dependency is not None:
            parameters.append(inspect.Parameter("ratelimit_user", inspect.Parameter.KEYWORD_ONLY,
                                                default=self.key_dependency, annotation=Any))
        #: FastAPI reads the dependency's parameters here: the key dependency joins them.
        self.__signature__ = inspect.Signature(parameters)

    def __repr__(self) -> str:
        return f"RateLimit({list(self.limits)!r}, key={self.key!r})"

    def _find(self, request: Request) -> Engine:
        engine = _find_engine(request)
        app = request.scope.get("app")
        if app is not None:
            self._by_app[app] = engine  # weakly: a test suite may build many apps
        return engine

    def route_name(self, request: Request) -> str:
        """The declared route's name for this request's route."""
        if self.name is not None:
            return self.name
        route = request.scope.get("route")
        if route is None:
            return "dependency:<unrouted>"
        # FastAPI may hand out a fresh route object per request: key by what names it
        ident = (getattr(route, "path", None), getattr(route, "endpoint", None))
        name = self._names.get(ident)
        if name is None:
            if len(self._names) >= 4096:  # bounded, whatever the app does
                self._names.clear()
            name = self._names[ident] = _route_name(route)
        return name

    def declare(self, engine: Engine, name: str) -> None:
        """Declare the route ``name`` in ``engine`` (once per engine and name)."""
        known = self._engines.get(engine)
        if known is None:
            known = self._engines[engine] = (engine.router(ACCESS, raw=True), set())
        declared = known[1]
        if name not in declared:
            engine.declare(name, self.limits, key=self.key, source="dependency", cost=self.cost)
            declared.add(name)

    def __new__(cls, limits: Any = (), **options: Any) -> RateLimit:
        """A dependency whose limits hold an in-flight limit (``"2 concurrent"``) is an
        :class:`InFlightRateLimit`: it must give the slot back when the response ends."""
        if cls is RateLimit and _in_flight(limits):
            cls = InFlightRateLimit
        return object.__new__(cls)

    def _resolve(self, request: Request, ident: tuple[int, Any, Any],
                 app: Any) -> tuple[Callable[[], Any], Engine, Router, str]:
        """Find the engine and name of a request's (app, route), and declare the route, once."""
        engine = self.engine or self._by_app.get(app) or self._find(request)
        name = self.route_name(request)
        known = self._engines.get(engine)
        if known is None or name not in known[1]:
            self.declare(engine, name)
            known = self._engines[engine]
        if len(self._routes) >= 4096:  # bounded, whatever the app does
            self._routes.clear()
        app_ref: Callable[[], Any] = weakref.ref(app) if app is not None else _no_app
        entry = self._routes[ident] = (app_ref, engine, known[0], name)
        return entry

    async def __call__(self, *, request: Request, response: Response,
                       ratelimit_user: Any = _NO_VALUE) -> Verdict | None:
        """Decide; raise the 429; add the headers. The admitted verdict, or ``None``."""
        scope = request.scope
        app, route = scope.get("app"), scope.get("route")
        # FastAPI may hand out a fresh route object per request: key by what names it
        ident = (id(app), getattr(route, "path", None), getattr(route, "endpoint", None))
        entry = self._routes.get(ident)
        if entry is None or entry[0]() is not app:
            entry = self._resolve(request, ident, app)
        _, engine, router, name = entry
        plan = router.named(name)
        state = request.state
        if plan is None:  # RATELIMIT_ENABLED is off
            state.ratelimit = None
            return None
        source = _Source(request, ratelimit_user)
        try:
            verdict = plan.decide(source) if engine.inline else await plan.adecide(source)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=name)
            verdict = None
        earlier = scope.get(VERDICT_KEY)  # the middleware's YAML route, if any
        chosen = state.ratelimit = verdict if earlier is None else stricter(earlier, verdict)
        if verdict is None:
            return None
        if verdict.reject:
            rejection = engine.rejection(verdict, raw=True)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in rejection.headers
                       if k not in (b"content-length", b"content-type")}
            media_type = next((v.decode("latin-1") for k, v in rejection.headers if k == b"content-type"),
                              "application/json")
            raise RateLimited(rejection.status, headers, rejection.body, media_type, verdict)
        if verdict.delay > 0:
            try:
                await engine.limiter.asleep(verdict.delay)
            except BaseException:
                if verdict.slot is not None:
                    verdict.slot.release(False, False)
                raise
        if chosen is verdict:  # else the middleware adds its stricter headers
            response.raw_headers.extend(verdict.headers)  # lower-case latin-1 pairs: a raw router
        return verdict


class InFlightRateLimit(RateLimit):
    """A :class:`RateLimit` holding an in-flight limit (``RateLimit("2 concurrent")`` makes
    one): a dependency with ``yield``, so FastAPI gives the slot back when it closes the
    dependency, after the response is sent, or when the endpoint raises."""

    async def __call__(  # type: ignore[override]
        self, *, request: Request, response: Response, ratelimit_user: Any = _NO_VALUE
    ) -> AsyncIterator[None]:
        verdict = await RateLimit.__call__(self, request=request, response=response, ratelimit_user=ratelimit_user)
        slot = None if verdict is None else verdict.slot
        try:
            yield
        finally:
            if slot is not None:
                slot.release(False, False)


def _in_flight(limits: Any) -> bool:
    items = (limits,) if isinstance(limits, (str, Rule)) else tuple(limits)
    try:
        return any(rule.in_flight for item in items
                   for rule in ((item,) if isinstance(item, Rule) else parse_rates(item)))
    except (ConfigError, TypeError):
        return False  # __init__ reports it


def _no_app() -> None:
    return None


def _route_name(route: Any) -> str:
    methods = ",".join(sorted(getattr(route, "methods", None) or ()))
    path = getattr(route, "path", "?")
    return f"dependency:{methods} {path}" if methods else f"dependency:{path}"


def _rate_limits(dependant: Any) -> list[RateLimit]:
    found, stack = [], [dependant]
    while stack:
        node = stack.pop()
        call = getattr(node, "call", None)
        if isinstance(call, RateLimit):
            found.append(call)
        stack.extend(getattr(node, "dependencies", ()))
    return found


def declare_routes(app: FastAPI, engine: Engine) -> None:
    """Declare every route's ``RateLimit`` in ``engine`` now (they declare themselves on
    their first request otherwise): for ``ratelimit-mw explain --app`` and warm-up."""
    for route in _api_routes(app):
        for limit in _rate_limits(getattr(route, "dependant", None)):
            limit.declare(limit.engine or engine, limit.name or _route_name(route))


def _render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    return Response(exc.body, status_code=exc.status_code, headers=exc.headers, media_type=exc.media_type)


def setup(app: FastAPI, *, engine: Engine | None = None, policies: Any = None, backend: Any = None,
          metrics: Any = None, metrics_path: str | None = None, middleware: bool = True,
          **options: Any) -> Engine:
    """Give ``app`` a rate-limit engine: the middleware (YAML routes), the engine for
    :class:`RateLimit` dependencies, the problem+json 429, and the 429 in OpenAPI.

    Args:
        app: the FastAPI app.
        engine: an engine to use; else one is built from ``policies``/``backend``/``options``
            (as :class:`~ratelimit_mw.asgi.RateLimitMiddleware` does, ``enabled=`` included);
            with no policies anywhere, an empty set (only the dependencies limit).
        metrics, metrics_path: passed to the middleware.
        middleware: add the middleware (set ``False`` to use dependencies only).

    Returns:
        the engine (also in ``app.state.ratelimit_engine``).
    """
    if engine is None:
        if policies is None and policies_from_env(options.get("env")) is None:
            policies = "version: 1\n"  # dependencies only: no YAML route
        engine = build_engine(policies, backend, **options)
    setattr(app.state, STATE_ATTR, engine)
    if middleware:
        app.add_middleware(RateLimitMiddleware, engine=engine, metrics=metrics,  # type: ignore[arg-type]
                           metrics_path=metrics_path)
    elif metrics is not None:
        metrics.attach(engine)
    app.add_exception_handler(RateLimited, _render)
    original = app.openapi
    app.openapi = partial(_openapi, app, original, engine)  # type: ignore[method-assign]
    return engine


# -- OpenAPI ---------------------------------------------------------------------------

_HEADER_DOCS = {
    "Retry-After": "Seconds to wait before retrying.",
    "X-RateLimit-Limit": "Requests allowed in the current window.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Seconds until the window resets.",
    "RateLimit": "The IETF RateLimit header: the current quota.",
    "RateLimit-Policy": "The IETF RateLimit-Policy header: the quota policies.",
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "RateLimitProblem",
    "properties": {
        "type": {"type": "string", "example": QUOTA_EXCEEDED},
        "title": {"type": "string", "example": "Too Many Requests"},
        "status": {"type": "integer", "example": 429},
        "detail": {"type": "string"},
        "violated-policies": {"type": "array", "items": {"type": "string"}},
        "retry_after": {"type": "integer"},
    },
}


def _uses_rate_limit(dependant: Any) -> bool:
    return bool(_rate_limits(dependant))


def _limited_by_policies(engine: Engine, method: str, path: str) -> bool:
    found = engine.policies.match(method, path)
    return found is not None and not found.route.exempt and bool(found.route.rules)


def _api_routes(app: FastAPI) -> list[Any]:
    """Every API route, those of included routers too (FastAPI's own walk where it has one)."""
    from fastapi import routing
    from fastapi.openapi import utils

    iterate = getattr(routing, "iter_route_contexts", None)
    resolve = getattr(utils, "_get_api_route_for_openapi", None)
    if iterate is not None and resolve is not None:
        return [route for route in (resolve(context) for context in iterate(app.routes)) if route is not None]
    return [route for route in app.routes if isinstance(route, routing.APIRoute)]


def _openapi(app: FastAPI, original: Callable[[], dict[str, Any]], engine: Engine) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = original()
    status = str(engine.policies.response_status)
    answer = {
        "description": "Too Many Requests: a rate limit was exceeded.",
        "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in _HEADER_DOCS.items()},
        "content": {engine.policies.response_content_type: {"schema": PROBLEM_SCHEMA}},
    }
    for route in _api_routes(app):
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        operations = schema.get("paths", {}).get(path) if isinstance(path, str) else None
        if not operations or not isinstance(path, str):
            continue
        dependant = getattr(route, "dependant", None)
        for method in getattr(route, "methods", None) or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            if _uses_rate_limit(dependant) or _limited_by_policies(engine, method, path):
                operation.setdefault("responses", {}).setdefault(status, answer)
    app.openapi_schema = schema
    return schema
