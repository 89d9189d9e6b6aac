# mysite/settings.py: the YAML routes, applied by DRF after authentication
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["ratelimit_mw.django.RateLimitThrottle"],
}

# mysite/api.py: a throttle with limits of its own, for some views
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from ratelimit_mw.django import RateLimitThrottle  # noqa: E402


class UploadThrottle(RateLimitThrottle):
    limits = "10/hour"
    key = ("user", "ip")


class Upload(APIView):
    throttle_classes = (RateLimitThrottle, UploadThrottle)  # the YAML route and 10/hour

    def post(self, request):  # type: ignore[no-untyped-def]
        return Response(status=201)
