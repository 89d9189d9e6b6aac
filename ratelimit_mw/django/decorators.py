"""``@ratelimit("5/minute", key=...)``: limits declared next to a Django view.

A decorator runs at import time, usually before settings are read and the engine
exists, so it records its declaration here; the engine declares every recorded one
when it is built (:mod:`ratelimit_mw.django.conf`), and a decorator that runs later
declares straight into it. The rate and key are parsed when ``ratelimit(...)`` is
called, so a bad one fails at import, naming the rate.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async

from ratelimit_mw import log
from ratelimit_mw.declared import Declaration, declared_route
from ratelimit_mw.django import conf
from ratelimit_mw.django.access import USER_ATTR
from ratelimit_mw.django.respond import (
    DECISION_ATTR,
    MIDDLEWARE_ATTR,
    add_headers,
    denied,
    record,
    recorded,
    release_when_sent,
)
from ratelimit_mw.engine import Engine

__all__ = ["DECLARED_ATTR", "declare_all", "ratelimit"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Set on a decorated view: the middleware does not apply ``unmatched:`` to it.
DECLARED_ATTR = "ratelimit_mw_declared"


class _Recorded(NamedTuple):
    owner: int
    limits: tuple[str, ...]
    key: Any
    cost: int


_lock = threading.Lock()
_registry: dict[str, _Recorded] = {}


def declare_all(engine: Engine) -> None:
    """Declare every recorded limit in ``engine`` (called when it is built)."""
    with _lock:
        for name, entry in _registry.items():
            engine.declare(name, list(entry.limits), key=entry.key, source="decorator", cost=entry.cost)


def _claim(base: str, entry: _Recorded) -> str:
    """The route name of one decorator on one view: ``view:<module>.<qualname>``, with
    ``#2``... for a second decorator with other limits on the same view."""
    with _lock:
        n = 1
        while True:
            name = base if n == 1 else f"{base}#{n}"
            known = _registry.get(name)
            if known is None or known.owner == entry.owner:
                _registry[name] = entry
                break
            n += 1
    current = conf.current()
    if current is not None:
        current.engine.declare(name, list(entry.limits), key=entry.key, source="decorator", cost=entry.cost)
    return name


def _target_name(view: Any) -> str | None:
    """``module.qualname`` of a view; for ``method_decorator``'s per-request bound
    method, the view class's own name (``dispatch`` is inherited: its qualname is
    Django's ``View.dispatch`` for every class)."""
    bound = getattr(view, "func", None)  # functools.partial(bound method)
    owner = getattr(bound, "__self__", None)
    if owner is not None:
        cls = type(owner)
        return f"{cls.__module__}.{cls.__qualname__}.{getattr(bound, '__name__', 'dispatch')}"
    module = getattr(view, "__module__", None)
    qualname = getattr(view, "__qualname__", None)
    if module == "django.utils.decorators" and getattr(view, "__name__", "") == "dummy":
        return None  # method_decorator copying attributes at class definition: not a view
    return f"{module}.{qualname}"


def _plan(state: conf.DjangoLimits, name: str) -> Any:
    """The declared route's plan; one missing from an enabled engine (declared while the
    engine was being built in another thread) is declared now: never unlimited."""
    plan = state.router.named(name)
    if plan is None and state.enabled:
        entry = _registry[name]
        state.engine.declare(name, list(entry.limits), key=entry.key, source="decorator", cost=entry.cost)
        plan = state.router.named(name)
    return plan


def _request_of(args: tuple[Any, ...]) -> Any:
    """The request: the first argument, or the second for a method decorated directly."""
    if args and hasattr(args[0], "META"):
        return args[0]
    return args[1]


class _RateLimit:
    """One ``ratelimit(...)``: parsed once, applied to any number of views."""

    def __init__(self, limits: str | Sequence[str], key: Any, cost: int) -> None:
        self.limits = (limits,) if isinstance(limits, str) else tuple(limits)
        self.key = list(key) if isinstance(key, tuple) else key
        self.cost = cost
        from ratelimit_mw.policy.loader import load_policies

        label = f"@ratelimit({', '.join(map(repr, self.limits))})"
        declared_route(Declaration.of(label, self.limits, self.key, "decorator", cost),
                       load_policies({"version": 1}, env={}))  # raises ConfigError now
        self._names: dict[str, str] = {}

    def name_of(self, target: str) -> str:
        name = self._names.get(target)
        if name is None:
            entry = _Recorded(id(self), self.limits, self.key, self.cost)
            name = self._names[target] = _claim(f"view:{target}", entry)
        return name

    def __call__(self, view: _F) -> _F:
        target = _target_name(view)
        if target is None:
            return view
        name = self.name_of(target)
        if iscoroutinefunction(view):
            wrapper: Any = _async_wrapper(view, name)
        else:
            wrapper = _sync_wrapper(view, name)
        setattr(wrapper, DECLARED_ATTR, True)
        return wrapper  # type: ignore[no-any-return]


def _decide(plan: Any, request: Any) -> Any:
    try:
        return plan.decide(request)
    except Exception as exc:  # a limiter bug must never become a 500
        log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(request.path))
        return None


def _sync_wrapper(view: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        request = _request_of(args)
        state = conf.state()
        plan = _plan(state, name)
        if plan is None:  # disabled
            if DECISION_ATTR not in request.__dict__:
                setattr(request, DECISION_ATTR, None)
            return view(*args, **kwargs)
        verdict = _decide(plan, request)
        if verdict is not None:
            if verdict.reject:
                return _finish(request, denied(request, verdict, state))
            record(request, verdict)
            if verdict.delay > 0:
                state.engine.limiter.sleep(verdict.delay)
        elif DECISION_ATTR not in request.__dict__:
            setattr(request, DECISION_ATTR, None)
        return _finish(request, view(*args, **kwargs))

    return limited


def _async_wrapper(view: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(view)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        request = _request_of(args)
        state = conf.state()
        plan = _plan(state, name)
        if plan is None:
            if DECISION_ATTR not in request.__dict__:
                setattr(request, DECISION_ATTR, None)
            return await view(*args, **kwargs)
        auser = getattr(request, "auser", None)
        if auser is not None and USER_ATTR not in request.__dict__:
            # the lazy request.user may not query the database from the event loop
            request.__dict__[USER_ATTR] = await auser()
        try:
            verdict = await plan.adecide(request)
        except Exception as exc:
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(request.path))
            verdict = None
        if verdict is not None:
            if verdict.reject:
                return _finish(request, await sync_to_async(denied)(request, verdict, state))
            record(request, verdict)
            if verdict.delay > 0:
                await state.engine.limiter.asleep(verdict.delay)
        elif DECISION_ATTR not in request.__dict__:
            setattr(request, DECISION_ATTR, None)
        return _finish(request, await view(*args, **kwargs))

    return limited


def _finish(request: Any, response: Any) -> Any:
    """Without the middleware, the decorator adds the headers (and gives overload slots back) itself."""
    if MIDDLEWARE_ATTR in request.__dict__ or not hasattr(response, "headers"):
        return response
    release_when_sent(request, response)
    verdict = recorded(request)
    return response if verdict is None else add_headers(response, verdict.headers)


def ratelimit(limits: str | Sequence[str], *, key: Any = None, cost: int = 1) -> Callable[[_F], _F]:
    """Limit a Django view; on a class-based view, ``method_decorator(ratelimit(...), name="dispatch")``.

    The limit is a route of the engine the middleware uses, named
    ``view:<module>.<qualname>`` (``view:<module>.<Class>.dispatch`` for a class):
    same backend, headers, metrics, admin usage and reset. A request matching a YAML
    route too is checked by both; a denial by either is a 429 (``RATELIMIT_VIEW``).

    Args:
        limits: ``"5/minute"``, ``"1/second;5/minute"`` or a list of rates.
        key: a key spec as in YAML (``"user"``, ``["user", "ip"]``, ``"header:X-API-Key"``),
            a callable receiving the request view (``.native`` is the ``HttpRequest``),
            or ``None``: the policies' default key.
        cost: units each request consumes.

    Raises:
        ConfigError: a rate or key that does not parse (at import time).
    """
    decorator: Callable[[_F], _F] = _RateLimit(limits, key, cost)
    return decorator
