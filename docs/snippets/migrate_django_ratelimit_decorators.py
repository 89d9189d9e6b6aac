# ratelimit_mw: the same decorators, in the engine of RateLimitMiddleware (a denial is a 429)
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from ratelimit_mw.django import ratelimit


@require_POST
@ratelimit("5/minute", key="ip")
def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit("100/hour", key=["header:X-API-Key", "ip"])
def search(request: HttpRequest) -> HttpResponse:
    return HttpResponse("[]")


@ratelimit("10/minute", key=["user", "ip"])  # django-ratelimit's key="user_or_ip"
def profile(request: HttpRequest) -> HttpResponse:
    return HttpResponse("me")
