"""The Flask extension: ``RateLimiter(app)``, ``@limiter.limit`` and ``@limiter.exempt``.

**Why a ``before_request`` hook and not a wrapper around ``app.wsgi_app``.** Every
limit of a Flask app, the YAML routes as well as the decorators, is decided in one
hook that runs inside Flask's request context, first among the app's hooks. There
``request.endpoint`` tells which view (and blueprints) the request reaches, and
flask-login's ``current_user`` can be loaded, so a ``key: [user, ip]`` route works
in YAML and in a decorator alike; the path matched is ``request.path``, the one
Flask routes on. A denial is an exception Flask's own error handling renders
(``@app.errorhandler(429)``), and the headers are added in ``after_request``, which
Flask runs on error responses too. What it costs: a request denied here has already
had its context pushed (session cookie read); an app that must shed load before
Flask does any work keeps :class:`~ratelimit_mw.WSGIRateLimitMiddleware` around
``app.wsgi_app`` for those routes.

Declared limits are kept by the ``RateLimiter`` (a decorator runs at import time,
usually before any app exists) and declared in the engine of every app it is
initialised on, then and whenever a later decorator adds one: the app factory
pattern and several apps in one process work, each app with its own engine and
configuration.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from ratelimit_mw import log
from ratelimit_mw.core.lease import Slots
from ratelimit_mw.engine import MISS, NO_METHODS, Engine, Verdict, build_engine
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.flask.access import FLASK_REQUEST, HAS_FLASK_LOGIN
from ratelimit_mw.flask.declarations import (
    NO_VIEW,
    Declaration,
    Declarations,
    EndpointLimits,
    KeyArg,
    check_declaration,
    normalise_key,
    view_name,
)
from ratelimit_mw.flask.exceptions import Overloaded, RateLimitExceeded
from ratelimit_mw.settings import FRAMEWORK_SETTINGS, env_enabled, parse_enabled

__all__ = ["EXTENSION", "RateLimiter"]

#: The key of ``app.extensions`` holding an app's :class:`AppLimits`.
EXTENSION = "ratelimit_mw"
#: The attribute of ``flask.g`` holding the decision (the app reads ``g.ratelimit``).
G_DECISION = "ratelimit"
_G_HEADERS = "_ratelimit_mw_headers"
#: The request's overload slot (``overload:``), given back when the response closes.
_G_SLOT = "_ratelimit_mw_slot"

_T = TypeVar("_T")

#: Config keys read by :meth:`RateLimiter.init_app`, and the option each fills.
CONFIG_OPTIONS = FRAMEWORK_SETTINGS


class AppLimits:
    """One app's state: its engine, router, and what applies to each endpoint.

    Found in ``app.extensions["ratelimit_mw"]``; :attr:`engine` is what the admin
    API, metrics and direct checks use.
    """

    def __init__(self, limiter: RateLimiter, app: Flask, engine: Engine, enabled: bool) -> None:
        self.limiter = limiter
        self.app = app
        self.engine = engine
        self.enabled = enabled
        self.router = engine.router(FLASK_REQUEST)
        self._endpoints: dict[str | None, EndpointLimits] = {}
        self._sleep = engine.limiter.sleep

    def declare(self, declaration: Declaration) -> None:
        self.engine.declare(
            declaration.name, list(declaration.limits), key=declaration.key, source="decorator",
            cost=declaration.cost,
        )
        self._endpoints = {}

    def _unmatched(self) -> Any:
        return self.engine.policies.unmatched

    def forget_endpoints(self) -> None:
        self._endpoints = {}

    def _endpoint(self, endpoint: str | None) -> EndpointLimits:
        """What applies to ``endpoint``: found once per endpoint, then remembered."""
        found = self._endpoints.get(endpoint)
        if found is None:
            try:
                found = self.limiter.declarations.for_endpoint(self.app, endpoint)
            except Exception as exc:  # our bug over the app's objects: the YAML routes still apply
                log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(endpoint))
                return NO_VIEW
            endpoints = self._endpoints
            if len(endpoints) < 4096:  # endpoints come from the app's code, but stay bounded
                endpoints[endpoint] = found
        return found

    def before(self) -> None:
        """Decide every limit that applies to the request; raise the 429 on a denial."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        store = g._get_current_object()  # type: ignore[attr-defined]
        setattr(store, G_DECISION, None)
        if not self.enabled:
            return
        applies = self._endpoints.get(req.endpoint) or self._endpoint(req.endpoint)
        best: Verdict | None = None
        router = self.router
        if applies.yaml:
            path = req.path
            plan = router.routes.get(path, NO_METHODS).get(req.method, MISS)
            if plan is MISS:
                plan = router.plan(req.method, path)
            # ``unmatched:`` is the default for views without limits of their own, as
            # flask-limiter's default_limits: a view that declares its limits skips it.
            if plan is not None and not (applies.names and getattr(plan, "route", None) is self._unmatched()):
                best = self._decide(plan, req, store, best)
        for name in applies.names:
            plan = router.named(name)
            if plan is not None:
                best = self._decide(plan, req, store, best)

    def teardown(self, exc: BaseException | None) -> None:
        """An overload slot that no response took (the request failed before one): give it back."""
        slot = g.pop(_G_SLOT, None)
        if slot is not None:
            slot.release(False, False)

    def _decide(self, plan: Any, req: Any, store: Any, best: Verdict | None) -> Verdict | None:
        """One check; the stricter verdict so far is kept on ``g`` (its headers are sent)."""
        try:
            verdict: Verdict | None = plan.decide(req)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=req.path)
            return best
        if verdict is None:
            return best
        if verdict.reject:
            setattr(store, G_DECISION, verdict.decision)
            setattr(store, _G_HEADERS, verdict.headers)
            if verdict.slot is not None:  # shed by overload protection: a 503, not a 429
                raise Overloaded(verdict, self.engine)
            raise RateLimitExceeded(verdict, self.engine)
        if verdict.slot is not None:  # an overload slot or an in-flight lease; keep every one taken
            held = getattr(store, _G_SLOT, None)
            setattr(store, _G_SLOT, verdict.slot if held is None else Slots(held, verdict.slot))
        if verdict.delay > 0:
            self._sleep(verdict.delay)
        if best is None or _stricter(verdict, best):
            best = verdict
            setattr(store, G_DECISION, verdict.decision)
            setattr(store, _G_HEADERS, verdict.headers)
        return best

    def after(self, response: Response) -> Response:
        """Add the headers of the stricter check, except names the response already has.

        The response's names are compared (lower-cased) with every name the engine may
        emit, once; only on a hit is each header looked up (as the WSGI middleware does).
        """
        slot = g.pop(_G_SLOT, None)
        if slot is not None:  # released when the server closes the body, streamed or not
            response.call_on_close(lambda: slot.release(response.status_code in (503, 504)))
        extra = g.get(_G_HEADERS)
        if extra:
            present = response.headers
            ours = self.engine.header_names
            for name, _ in present:
                if name.lower() in ours:
                    for pair in extra:
                        if pair[0] not in present:
                            present.add(*pair)
                    break
            else:
                present.extend(extra)
        return response


def _stricter(a: Verdict, b: Verdict) -> bool:
    """Whether ``a`` reports the stricter limit: fewer remaining, ties to the later reset."""
    da, db = a.decision, b.decision
    if not db.limit:
        return True
    return (da.remaining, -da.reset_after) < (db.remaining, -db.reset_after)


class RateLimiter:
    """Rate limits for a Flask app: YAML policies, view decorators, exemptions.

    ``limiter = RateLimiter(app)``, or ``limiter = RateLimiter()`` and later
    ``limiter.init_app(app)`` (app factories; one limiter may serve several apps,
    each with its own configuration and engine).

    Configuration comes from ``app.config`` (see the Flask guide for every key):
    ``RATELIMIT_POLICIES`` (path, YAML text or mapping), ``RATELIMIT_BACKEND`` (URL
    or client), ``RATELIMIT_ENABLED``, ``RATELIMIT_KEY_SECRET``,
    ``RATELIMIT_PREFIX``, ``RATELIMIT_METRICS``,
    ``RATELIMIT_ENGINE`` (an existing Engine), ``RATELIMIT_LIMITER_OPTIONS`` (more
    :class:`~ratelimit_mw.Limiter` options). Keyword arguments given here win over
    the config.

    Args:
        app: the app to initialise now, or ``None`` (call :meth:`init_app` later).
        **options: ``policies``, ``backend``, ``enabled``, ``engine``, ``metrics``,
            and :class:`~ratelimit_mw.Limiter` options (``clock``, ``key_secret``...).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = options
        self._lock = threading.Lock()
        #: What the decorators recorded (changed under the lock).
        self.declarations = Declarations()
        self._apps: weakref.WeakSet[AppLimits] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    # -- apps ------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Build the app's engine from its config, declare the decorators' limits, add the hooks.

        Raises:
            ConfigError: a missing or invalid setting (a ``PolicyError`` names the
                file, line and field of a bad policy document; a bad decorator rate
                names its view), or an app initialised already.
        """
        if EXTENSION in app.extensions:  # twice would add the hooks twice: every request counted twice
            raise ConfigError(f"ratelimit_mw is already initialised on app {app.name!r}")
        options = self._app_options(app)
        enabled = parse_enabled(options.pop("enabled", None)) if "enabled" in options else env_enabled(os.environ)
        metrics = options.pop("metrics", None)
        engine = options.pop("engine", None)
        if engine is None:
            policies = options.pop("policies", None)
            if policies is None and not (os.environ.get("RATELIMIT_POLICIES") or os.environ.get("DEFAULT_RATE_LIMIT")):
                policies = {"version": 1}  # decorators only
            engine = build_engine(policies, options.pop("backend", None), options.pop("limiter", None),
                                  enabled=enabled, **options)
        elif options:
            raise ConfigError(f"RATELIMIT_ENGINE is given: drop the other options ({', '.join(sorted(options))})")
        if metrics is not None:
            metrics.attach(engine)
        state = AppLimits(self, app, engine, enabled)
        with self._lock:
            declarations = self.declarations.all()
            for declaration in declarations:
                state.declare(declaration)
            self._apps.add(state)
        _warn_user_key(engine, declarations)
        app.extensions[EXTENSION] = state
        # First among the app's hooks: a hook that answers early (a login redirect)
        # must not let a request skip its limits.
        app.before_request_funcs.setdefault(None, []).insert(0, state.before)
        app.after_request(state.after)
        app.teardown_request(state.teardown)

    def _app_options(self, app: Flask) -> dict[str, Any]:
        config = app.config
        options: dict[str, Any] = {}
        for config_key, option in CONFIG_OPTIONS.items():
            if config.get(config_key) is not None:
                options[option] = config[config_key]
        options.update(config.get("RATELIMIT_LIMITER_OPTIONS") or {})
        options.update(self._options)
        return options

    def state(self, app: Flask | None = None) -> AppLimits:
        """The state of ``app`` (default: the current app)."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            state: AppLimits = target.extensions[EXTENSION]
        except KeyError:
            raise RuntimeError(f"RateLimiter is not initialised on app {target.name!r}: call init_app(app)") from None
        return state

    @property
    def engine(self) -> Engine:
        """The current app's engine (for the admin API, metrics and direct checks)."""
        return self.state().engine

    # -- decorators ------------------------------------------------------------------

    def limit(self, limits: str | Sequence[str], *, key: KeyArg = None, cost: int = 1) -> Callable[[_T], _T]:
        """Limit a view function, a view class or a blueprint.

        ``@limiter.limit("5/minute")`` under ``@app.route`` (or above it: the order
        does not matter); ``limiter.limit("100/minute")(blueprint)`` for one shared
        bucket over all the blueprint's views. Stacked decorators with the same key
        are one check (all limits together, all-or-nothing).

        Args:
            limits: ``"5/minute"``, ``"1/second;5/minute"`` or a list of rates.
            key: a key spec as in YAML (``"user"``, ``["user", "ip"]``,
                ``"header:X-API-Key"``), a callable receiving the request (a view with
                ``headers``, ``client``, ``environ`` and ``native``, Flask's
                ``request``) or no argument, or ``None``: the policy set's default key.
            cost: units each request consumes.

        Raises:
            ConfigError: a rate or key that does not parse (now, at import time).
        """
        items = (limits,) if isinstance(limits, str) else tuple(limits)
        key = normalise_key(key)

        def decorate(target: _T) -> _T:
            from flask import Blueprint

            is_blueprint = isinstance(target, Blueprint)
            if not is_blueprint and not callable(target):
                raise ConfigError(f"@limiter.limit decorates a view, a view class or a blueprint, not {target!r}")
            where = f"blueprint {target.name!r}" if is_blueprint else view_name(target)  # type: ignore[attr-defined]
            check_declaration(where, items, key)
            with self._lock:
                if is_blueprint:
                    declaration = self.declarations.add_blueprint(target, items, key, cost)
                else:
                    declaration = self.declarations.add_view(target, items, key, cost)
                for state in list(self._apps):  # a decorator that ran after init_app
                    state.declare(declaration)
            return target

        return decorate

    def exempt(self, target: _T) -> _T:
        """Exempt a view (function or class) or a blueprint from the YAML routes and
        blueprint limits; limits declared on the view itself still apply."""
        from flask import Blueprint

        with self._lock:
            self.declarations.exempt(target, isinstance(target, Blueprint))
            for state in list(self._apps):
                state.forget_endpoints()
        return target


def _warn_user_key(engine: Engine, declarations: list[Declaration]) -> None:
    """At start-up: a ``user`` key where flask-login is not installed gets one warning.

    (With flask-login installed, the ``LoginManager`` may be set up after
    ``init_app``: a missing one is reported on first use, once per route.)
    """
    if HAS_FLASK_LOGIN:
        return
    specs = [(route.template, route.key_spec) for route in engine.policies.routes]
    specs += [(d.name, d.key) for d in declarations]
    for name, spec in specs:
        if spec is not None and _names_user(spec):
            log.logger.warning(log.USER_KEY_UNAVAILABLE, route=name, key=str(spec),
                               detail="flask-login is not installed: the next entry of the key chain limits")


def _names_user(spec: Any) -> bool:
    text = spec if isinstance(spec, str) else str(spec)
    return any(part.strip(" []'\"") == "user" for part in text.split(","))
