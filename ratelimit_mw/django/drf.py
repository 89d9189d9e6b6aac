"""``RateLimitThrottle``: the policies, applied by Django REST framework after authentication.

DRF authenticates in the view (``APIView.initial``), after every Django middleware,
so only a throttle sees a token-authenticated ``request.user``. This throttle runs
the request's YAML route (the middleware leaves views using it alone, so nothing is
counted twice), and a subclass may declare limits of its own (``limits``, ``key``),
kept in the same engine as ``throttle:<module>.<Class>``. A denial is DRF's own
``Throttled``: the 429 gets ``Retry-After`` from :meth:`wait`; the middleware adds the
rate-limit headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rest_framework.exceptions import APIException
from rest_framework.throttling import BaseThrottle

from ratelimit_mw import log
from ratelimit_mw.django import conf
from ratelimit_mw.django.respond import MIDDLEWARE_ATTR, record, release_now
from ratelimit_mw.engine import MISS, NO_METHODS, Verdict

__all__ = ["RateLimitThrottle"]


class Overloaded(APIException):  # type: ignore[misc]
    """A request shed by overload protection (``overload:``): DRF answers 503."""

    status_code = 503
    default_detail = "The service is overloaded; retry later."
    default_code = "overloaded"


class RateLimitThrottle(BaseThrottle):  # type: ignore[misc]
    """A DRF throttle over the ``RATELIMIT_*`` policies.

    ``REST_FRAMEWORK = {"DEFAULT_THROTTLE_CLASSES": ["ratelimit_mw.django.RateLimitThrottle"]}``
    or ``throttle_classes = [RateLimitThrottle]`` on a view. A subclass with
    ``limits = "100/hour"`` (and optionally ``key = ["user", "ip"]``, ``cost``) checks
    those limits instead of the YAML route.
    """

    #: Limits of a subclass (``None``: the request's YAML route).
    limits: ClassVar[str | Sequence[str] | None] = None
    #: The key of those limits (``None``: the policies' default key).
    key: ClassVar[Any] = None
    cost: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.limits is not None:  # a rate or key that does not parse fails at import
            from ratelimit_mw.django.decorators import ratelimit

            ratelimit(cls.limits, key=cls.key, cost=cls.cost)

    def __init__(self) -> None:
        self.verdict: Verdict | None = None

    @classmethod
    def route_name(cls) -> str:
        return f"throttle:{cls.__module__}.{cls.__qualname__}"

    def _plan(self, state: conf.DjangoLimits, request: Any) -> Any:
        if self.limits is None:
            path, method = request.path_info, request.method
            plan = state.router.routes.get(path, NO_METHODS).get(method, MISS)
            return state.router.plan(method, path) if plan is MISS else plan
        if not state.enabled:
            return None
        name = self.route_name()
        plan = state.router.named(name)
        if plan is None:  # first use in this engine
            state.engine.declare(name, self.limits, key=self.key, source="decorator", cost=self.cost)
            plan = state.router.named(name)
        return plan

    def allow_request(self, request: Any, view: Any) -> bool:
        state = conf.state()
        plan = self._plan(state, request)
        if plan is None:
            return True
        try:
            verdict: Verdict | None = plan.decide(request)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(request.path))
            return True
        if verdict is None:
            return True
        self.verdict = verdict
        record(request, verdict)
        if MIDDLEWARE_ATTR not in getattr(request, "_request", request).__dict__:
            release_now(request)  # no middleware to give an overload slot back when the response ends
        if verdict.reject:
            if verdict.slot is not None:  # shed, not rate limited
                raise Overloaded()
            return False
        if verdict.delay > 0:
            state.engine.limiter.sleep(verdict.delay)
        return True

    def wait(self) -> float | None:
        """Seconds until a retry may pass (DRF's ``Retry-After``)."""
        return None if self.verdict is None else max(self.verdict.decision.retry_after, 0.0)
