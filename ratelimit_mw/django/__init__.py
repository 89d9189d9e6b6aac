"""Django integration: ``RateLimitMiddleware``, ``@ratelimit``, DRF's ``RateLimitThrottle``.

::

    INSTALLED_APPS = [..., "ratelimit_mw.django"]          # system checks
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "ratelimit_mw.django.RateLimitMiddleware"]
    RATELIMIT_POLICIES = BASE_DIR / "policies.yaml"

The middleware, the decorators and the throttle share one engine built from the
``RATELIMIT_*`` settings. See the Django guide in the docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratelimit_mw.django.access import DJANGO_REQUEST
from ratelimit_mw.django.conf import engine
from ratelimit_mw.django.decorators import ratelimit
from ratelimit_mw.django.middleware import RateLimitMiddleware
from ratelimit_mw.django.respond import RateLimited

if TYPE_CHECKING:
    from ratelimit_mw.django.drf import RateLimitThrottle

__all__ = ["DJANGO_REQUEST", "RateLimitMiddleware", "RateLimitThrottle", "RateLimited", "engine", "ratelimit"]


def __getattr__(name: str) -> Any:
    if name == "RateLimitThrottle":  # imports DRF: only when asked for
        from ratelimit_mw.django.drf import RateLimitThrottle

        return RateLimitThrottle
    raise AttributeError(f"module 'ratelimit_mw.django' has no attribute {name!r}")
