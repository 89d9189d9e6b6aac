"""The views of the test project: function views, a class-based view and an async view,
limited by the YAML routes, by ``@ratelimit``, or both."""

from __future__ import annotations

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View

from ratelimit_mw.django import RateLimited, ratelimit
from tests.django_integration.project.limits import failing_key


def _me(request: HttpRequest) -> JsonResponse:
    decision = getattr(request, "ratelimit", None)  # set by the middleware and the decorator
    user = getattr(request, "user", None)  # absent without AuthenticationMiddleware
    name = user.username if user is not None and user.is_authenticated else None
    return JsonResponse({"user": name, "remaining": None if decision is None else decision.remaining})


def reports(request: HttpRequest) -> JsonResponse:  # YAML route only
    return _me(request)


def plan_data(request: HttpRequest) -> JsonResponse:  # YAML route with plans
    return _me(request)


@ratelimit("3/minute", key=["user", "ip"])
def search(request: HttpRequest) -> JsonResponse:
    return _me(request)


@ratelimit("2/minute")  # the policies' default key
def both(request: HttpRequest) -> JsonResponse:  # a YAML route (4/minute) and a decorator
    return _me(request)


@ratelimit("2/minute", key=[failing_key, "ip"])
def broken_key(request: HttpRequest) -> JsonResponse:
    return _me(request)


@ratelimit("5/minute", key="ip")
@ratelimit("2/minute", key="header:X-Team")
def stacked(request: HttpRequest) -> JsonResponse:  # two checks, each with its own key
    return _me(request)


@ratelimit("2/minute", key=["user", "ip"])
async def async_search(request: HttpRequest) -> JsonResponse:
    user = await request.auser()  # type: ignore[attr-defined]
    decision = request.ratelimit  # type: ignore[attr-defined]
    return JsonResponse({"user": user.username if user.is_authenticated else None,
                         "remaining": decision.remaining})


@method_decorator(ratelimit("2/minute", key=["user", "ip"]), name="dispatch")
class Profile(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return _me(request)


@method_decorator(ratelimit("4/minute", key=["user", "ip"]), name="dispatch")
class Settings(View):  # another class: its own bucket (dispatch is inherited by both)
    def get(self, request: HttpRequest) -> JsonResponse:
        return _me(request)


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return HttpResponse("bad credentials", status=401)
    login(request, user)
    return HttpResponse("ok")


def too_many(request: HttpRequest, exception: RateLimited) -> HttpResponse:
    """The site's own 429 page (``RATELIMIT_VIEW``)."""
    return HttpResponse(f"<h1>Slow down</h1><p>retry in {exception.retry_after}s</p>", status=429,
                        content_type="text/html")


def broken_page(request: HttpRequest, exception: RateLimited) -> HttpResponse:
    raise RuntimeError("the site's 429 view is broken")
