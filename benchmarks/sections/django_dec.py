"""Django (memory backend): ``@ratelimit`` and a YAML route vs DRF's ``UserRateThrottle``.

Direct WSGI calls of Django's handler (as in the ``wsgi`` section), one ``GET`` keyed
by ``X-API-Key``: a bare Django view; our middleware with the limit in the policy
document; our ``@ratelimit`` on the view (allowed, 429); a bare DRF ``APIView``; DRF's
own ``UserRateThrottle`` (allowed, 429); our ``RateLimitThrottle`` subclass (allowed).
The issue's bound: the decorator path costs at most what a YAML route costs plus the
framework's dispatch (no numbered target here).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from benchmarks.apps import ALLOW, DENY, policies
from benchmarks.context import Context
from benchmarks.sections.wsgi import _call, _requests
from benchmarks.stats import SectionResult, interleave

NAME = "django_dec"
TITLE = "Django (memory backend): @ratelimit and YAML route vs DRF's UserRateThrottle, requests/s"
_URLS = "benchmarks_django_urls"


def _environ(path: str) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method="GET", headers=[("X-API-Key", "client-1")],
                             environ_base={"REMOTE_ADDR": "127.0.0.1"})
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _configure() -> None:
    """Settings for this process (the benchmark runs no other Django code)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        SECRET_KEY="bench", DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=_URLS, USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        MIDDLEWARE=[], DATABASES={},
        REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [], "DEFAULT_PERMISSION_CLASSES": [],
                        "DEFAULT_THROTTLE_RATES": {"user": "1000000000/s", "user_deny": "1/hour"}},
        RATELIMIT_POLICIES=policies(ALLOW), RATELIMIT_BACKEND="memory://",
    )
    django.setup()
    _install_urls()


def _install_urls() -> None:
    from django.http import HttpResponse
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.throttling import UserRateThrottle
    from rest_framework.views import APIView

    from ratelimit_mw.django import RateLimitThrottle, ratelimit

    def bare(request: Any) -> HttpResponse:
        return HttpResponse("ok")

    allowed = ratelimit(ALLOW, key="header:X-API-Key")(bare)
    denied = ratelimit(DENY, key="header:X-API-Key")(lambda request: HttpResponse("ok"))

    class DenyThrottle(UserRateThrottle):
        scope = "user_deny"

    class OursAllow(RateLimitThrottle):
        limits = ALLOW
        key = "header:X-API-Key"

    def drf(*throttles: type) -> Any:
        class View(APIView):
            throttle_classes = throttles

            def get(self, request: Any) -> Response:
                return Response("ok")

        return View.as_view()

    module = types.ModuleType(_URLS)
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("resource", bare),  # the YAML route's path (our middleware's handler)
        path("bare", bare), path("dec", allowed), path("dec-deny", denied),
        path("drf", drf()), path("drf-user", drf(UserRateThrottle)), path("drf-user-deny", drf(DenyThrottle)),
        path("drf-ours", drf(OursAllow)),
    ]
    sys.modules[_URLS] = module


def _handler(with_middleware: bool) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    middleware = ["ratelimit_mw.django.RateLimitMiddleware"] if with_middleware else []
    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()  # loads the middleware now


def run(ctx: Context) -> SectionResult:
    _configure()
    result = SectionResult(NAME, TITLE)
    count = ctx.n(3_000, 100)
    plain, limited = _handler(False), _handler(True)
    variants = [
        ("bare Django view", "baseline", plain, "/bare", "200"),
        ("ours, middleware + YAML route, allowed", "ours", limited, "/resource", "200"),
        ("ours, @ratelimit, allowed", "ours", plain, "/dec", "200"),
        ("ours, @ratelimit, 429", "ours", plain, "/dec-deny", "429"),
        ("bare DRF APIView", "info", plain, "/drf", "200"),
        ("ours, RateLimitThrottle subclass, allowed", "ours", plain, "/drf-ours", "200"),
        ("DRF UserRateThrottle, allowed", "peer", plain, "/drf-user", "200"),
        ("DRF UserRateThrottle, 429", "peer", plain, "/drf-user-deny", "429"),
    ]
    subjects = []
    for label, kind, app, path, status in variants:
        template = _environ(path)
        _call(app, template)
        got = _call(app, template)
        if not got.startswith(status):
            raise RuntimeError(f"{label}: expected status {status}, got {got}")
        _requests(app, template, max(count // 10, 10))  # warm-up
        sample = result.sample(label, "req/s", kind=kind)
        subjects.append((sample, lambda app=app, template=template: count / _requests(app, template, count)))
    interleave(subjects, ctx.repeats)
    result.notes.append("DRF's throttles count in Django's cache (locmem here) and send no rate-limit headers; "
                        "ours send 5 (x-ratelimit + ietf). DRF rows have no authentication classes.")
    return result
