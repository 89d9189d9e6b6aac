# ruff: noqa: RUF012
"""DRF views with token authentication, throttled by ``RateLimitThrottle`` (and, for
comparison, DRF's own ``UserRateThrottle``)."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from ratelimit_mw.django import RateLimitThrottle


def _me(request: Any) -> Response:
    decision = getattr(request, "ratelimit", None)
    user = request.user.username if request.user.is_authenticated else None
    return Response({"user": user, "remaining": None if decision is None else decision.remaining})


class Me(APIView):
    """The YAML route ``/api/**`` (3/minute by ``[user, ip]``), after token authentication."""

    throttle_classes = [RateLimitThrottle]

    def get(self, request: Any) -> Response:
        return _me(request)


class PlanData(APIView):
    """The YAML route ``GET /api/plan``: each token's user gets their plan's limits."""

    throttle_classes = [RateLimitThrottle]

    def get(self, request: Any) -> Response:
        return _me(request)


class BurstThrottle(RateLimitThrottle):
    limits = "2/minute"
    key = ["user", "ip"]


class Burst(APIView):
    """The YAML route and a throttle class with limits of its own."""

    throttle_classes = [RateLimitThrottle, BurstThrottle]

    def get(self, request: Any) -> Response:
        return _me(request)


class OnlyBurst(APIView):
    """Only a subclass with its own limits: the YAML route is the middleware's (before DRF auth)."""

    throttle_classes = [BurstThrottle]

    def get(self, request: Any) -> Response:
        return _me(request)


class Builtin(APIView):
    """DRF's own throttle (the benchmark's comparison row)."""

    throttle_classes = [UserRateThrottle]

    def get(self, request: Any) -> Response:
        return Response({"ok": True})
