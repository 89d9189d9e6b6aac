# mysite/views.py
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View

from ratelimit_mw.django import RateLimited, ratelimit


@ratelimit("5/minute", key=["user", "ip"])
def search(request: HttpRequest) -> JsonResponse:
    decision = request.ratelimit  # the stricter decision that applied, or None
    return JsonResponse({"results": [], "remaining": decision.remaining if decision else None})


@method_decorator(ratelimit("1/second;30/minute", key="user"), name="dispatch")
class ExportView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("a,b\n", content_type="text/csv")


def too_many_requests(request: HttpRequest, exception: RateLimited) -> HttpResponse:
    # RATELIMIT_VIEW: the rate-limit headers (Retry-After too) are added to this response
    return render(request, "429.html", {"retry_after": exception.retry_after}, status=429)
