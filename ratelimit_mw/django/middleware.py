"""``RateLimitMiddleware``: the YAML routes, decided inside Django after authentication.

**Why ``process_view`` and not ``__call__``.** The decision runs once the URL is
resolved, just before the view: ``request.user`` is there (list the middleware after
``AuthenticationMiddleware``), the view is known, so a DRF view whose throttles
include :class:`~ratelimit_mw.django.RateLimitThrottle` is left to the throttle (it
decides after DRF authentication; counting here too would count every request twice),
and ``unmatched:`` is not applied to views that declare their own limits. A request
that reaches no view (a 404 from URL resolution) is decided when the 404 comes back,
and a denial replaces the 404 by the 429: path scans stay limited. Under ASGI Django
runs ``process_view`` in its thread for sync code, where the lazy ``request.user``
may query the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from ratelimit_mw import log
from ratelimit_mw.django import conf
from ratelimit_mw.django.decorators import DECLARED_ATTR
from ratelimit_mw.django.respond import (
    DECISION_ATTR,
    MIDDLEWARE_ATTR,
    add_headers,
    denied,
    record,
    recorded,
    release_when_sent,
)
from ratelimit_mw.engine import MISS, NO_METHODS

__all__ = ["RateLimitMiddleware"]

#: Set once the YAML routes were considered for the request (decided or skipped).
_DONE_ATTR = "_ratelimit_mw_done"
_MAX_VIEWS = 4096


class RateLimitMiddleware:
    """Limit Django requests by the ``RATELIMIT_*`` settings (sync and async capable).

    ``MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ratelimit_mw.django.RateLimitMiddleware", ...]``. Adds the rate-limit headers to
    responses, answers 429 (or ``RATELIMIT_VIEW``'s response) on a denial, and sets
    ``request.ratelimit`` to the decision (``None`` when nothing limited the request).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._throttled: dict[Any, bool] = {}
        conf.state()  # a bad setting or policy fails at start-up, not on a request

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        self._start(request)
        response = self.get_response(request)
        if _DONE_ATTR not in request.__dict__ and getattr(response, "status_code", 0) == 404:
            response = self._late(request, response)
        return _finish(request, response)

    async def __acall__(self, request: Any) -> Any:
        self._start(request)
        response = await self.get_response(request)
        if _DONE_ATTR not in request.__dict__ and getattr(response, "status_code", 0) == 404:
            response = await sync_to_async(self._late)(request, response)
        return _finish(request, response)

    @staticmethod
    def _start(request: Any) -> None:
        request.__dict__[MIDDLEWARE_ATTR] = True
        setattr(request, DECISION_ATTR, None)

    def process_view(self, request: Any, view: Any, args: Any, kwargs: Any) -> Any:
        """Decide the request's YAML route before the view; the 429 on a denial."""
        request.__dict__[_DONE_ATTR] = True
        if self._is_throttled(view):
            return None
        return self._decide(request, own_limits=getattr(view, DECLARED_ATTR, False))

    def _late(self, request: Any, response: Any) -> Any:
        """A request that reached no view: decided now; a denial replaces the 404."""
        denial = self._decide(request, own_limits=False)
        return response if denial is None else denial

    def _decide(self, request: Any, own_limits: bool) -> Any:
        state = conf.state()
        router = state.router
        path = request.path_info
        method = request.method
        plan = router.routes.get(path, NO_METHODS).get(method, MISS)
        if plan is MISS:
            plan = router.plan(method, path)
        if plan is None:
            return None
        if own_limits and getattr(plan, "route", None) is state.engine.policies.unmatched:
            return None  # unmatched: is the default for views without limits of their own
        try:
            verdict = plan.decide(request)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(path))
            return None
        if verdict is None:
            return None
        if verdict.reject:
            return denied(request, verdict, state)
        record(request, verdict)
        if verdict.delay > 0:
            state.engine.limiter.sleep(verdict.delay)
        return None

    def _is_throttled(self, view: Any) -> bool:
        """Whether DRF applies the YAML routes to the view: its throttles include
        :class:`RateLimitThrottle` itself (or a subclass without ``limits``); found once per view."""
        known = self._throttled.get(view)
        if known is None:
            known = _uses_throttle(view)
            if len(self._throttled) < _MAX_VIEWS:
                self._throttled[view] = known
        return known


def _uses_throttle(view: Any) -> bool:
    cls = getattr(view, "cls", None)  # APIView.as_view() and viewsets keep their class here
    classes = getattr(cls, "throttle_classes", None)
    if not classes:
        return False
    try:
        from ratelimit_mw.django.drf import RateLimitThrottle
    except ImportError:  # DRF not installed: no view can use the throttle
        return False
    # a subclass with limits of its own checks those only: the YAML route stays here
    return any(isinstance(t, type) and issubclass(t, RateLimitThrottle) and t.limits is None for t in classes)


def _finish(request: Any, response: Any) -> Any:
    release_when_sent(request, response)
    verdict = recorded(request)
    if verdict is None or not hasattr(response, "headers"):
        return response
    return add_headers(response, verdict.headers)
