# django-ratelimit: a decorator per view; block=True raises Ratelimited (a 403 unless handled)
from django.http import HttpRequest, HttpResponse
from django_ratelimit.decorators import ratelimit


@ratelimit(key="ip", rate="5/m", method="POST", block=True)
def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@ratelimit(key="header:x-api-key", rate="100/h", block=True)
def search(request: HttpRequest) -> HttpResponse:
    return HttpResponse("[]")


@ratelimit(group="exports", key="ip", rate="10/h", block=True)
def export_csv(request: HttpRequest) -> HttpResponse:
    return HttpResponse("a,b")


@ratelimit(group="exports", key="ip", rate="10/h", block=True)
def export_json(request: HttpRequest) -> HttpResponse:
    return HttpResponse("[]")
