"""System checks (``manage.py check``, ``runserver``): the ``RATELIMIT_*`` settings
load, and the middleware sits after ``AuthenticationMiddleware``."""

from __future__ import annotations

from typing import Any

from ratelimit_mw.errors import ConfigError, PolicyError

__all__ = ["check_settings"]

MIDDLEWARE_PATH = "ratelimit_mw.django.RateLimitMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Load the policies as the middleware will (no backend connection): an invalid
    policy is an error naming its file, line and field."""
    from django.conf import settings
    from django.core import checks

    from ratelimit_mw.django.conf import engine_options, policies_of
    from ratelimit_mw.policy.loader import load_policies
    from ratelimit_mw.settings import parse_enabled

    errors: list[Any] = []
    try:
        options = engine_options(settings)
        if "enabled" in options:
            parse_enabled(options["enabled"])
        if options.get("engine") is None:
            policies = policies_of(options)
            if policies is not None:
                load_policies(policies)
    except PolicyError as exc:
        errors.append(checks.Error(str(exc), obj="RATELIMIT_POLICIES", id="ratelimit_mw.E001"))
    except ConfigError as exc:
        errors.append(checks.Error(str(exc), obj="settings", id="ratelimit_mw.E002"))
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH in middleware or "ratelimit_mw.django.middleware.RateLimitMiddleware" in middleware:
        ours = next(i for i, m in enumerate(middleware) if m.startswith("ratelimit_mw.django"))
        auth = middleware.index(AUTH_MIDDLEWARE) if AUTH_MIDDLEWARE in middleware else None
        if auth is None or auth > ours:
            errors.append(checks.Warning(
                "RateLimitMiddleware is not after AuthenticationMiddleware: the 'user' key never "
                "sees a user, and requests are limited by the next entry of the key chain",
                hint=f"list {AUTH_MIDDLEWARE!r} before {MIDDLEWARE_PATH!r} in MIDDLEWARE",
                obj="MIDDLEWARE", id="ratelimit_mw.W001",
            ))
    return errors
