"""The Django app: ``INSTALLED_APPS += ["ratelimit_mw.django"]`` registers the system
checks and drops the engine when a ``RATELIMIT_*`` setting changes (``override_settings``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["RateLimitConfig"]


class RateLimitConfig(AppConfig):  # type: ignore[misc]
    name = "ratelimit_mw.django"
    label = "ratelimit_mw"
    verbose_name = "Rate limits"

    def ready(self) -> None:
        from django.core import checks

        from ratelimit_mw.django import conf
        from ratelimit_mw.django.checks import check_settings

        checks.register(check_settings, "ratelimit_mw")
        conf.connect_signals()
