"""Routes of the Django demo."""

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path


def resource(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "healthy"})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"a", b"b", b"c"]), content_type="text/plain")


urlpatterns = [
    path("resource", resource),
    path("health", health),
    path("stream", stream),
]
