"""The process's rate-limit state, built once from Django settings.

The middleware, the ``@ratelimit`` decorator and the DRF throttle share one engine
(one backend, one set of buckets, one admin API), built on first use from the
``RATELIMIT_*`` settings. ``override_settings`` of a ``RATELIMIT_*`` setting (tests)
drops it, and the next request builds it again from the new settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ratelimit_mw.engine import Engine, Router, build_engine
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.settings import FRAMEWORK_SETTINGS, env_enabled, parse_enabled

__all__ = ["SETTINGS", "DjangoLimits", "engine", "engine_options", "current", "reset", "state"]

#: Settings read (``RATELIMIT_VIEW`` is read by :class:`DjangoLimits`), and the option each fills.
SETTINGS = FRAMEWORK_SETTINGS


def engine_options(settings: Any) -> dict[str, Any]:
    """The engine options the ``RATELIMIT_*`` settings give (``None`` counts as absent)."""
    options: dict[str, Any] = {}
    for name, option in SETTINGS.items():
        value = getattr(settings, name, None)
        if value is not None:
            options[option] = value
    extra = getattr(settings, "RATELIMIT_LIMITER_OPTIONS", None) or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"RATELIMIT_LIMITER_OPTIONS must be a dict of Limiter options, got {type(extra).__name__}")
    options.update(extra)
    return options


def policies_of(options: dict[str, Any]) -> Any:
    """The policies to load: the setting, else ``RATELIMIT_POLICIES`` from the environment,
    else none (decorators and throttles only)."""
    policies = options.get("policies")
    if policies is None and not (os.environ.get("RATELIMIT_POLICIES") or os.environ.get("DEFAULT_RATE_LIMIT")):
        return {"version": 1}
    return policies


def _import_view(path: Any) -> Callable[..., Any] | None:
    if path is None:
        return None
    if callable(path):
        return path  # type: ignore[no-any-return]
    from django.utils.module_loading import import_string

    try:
        view: Callable[..., Any] = import_string(path)
    except ImportError as exc:
        raise ConfigError(f"RATELIMIT_VIEW {path!r} cannot be imported: {exc}") from None
    return view


class DjangoLimits:
    """The engine, its router over Django requests, and the settings read per request.

    Attributes:
        engine: the :class:`~ratelimit_mw.engine.Engine` (admin API, metrics, direct checks).
        router: its router over :data:`~ratelimit_mw.django.access.DJANGO_REQUEST`.
        enabled: ``RATELIMIT_ENABLED``.
        view: ``RATELIMIT_VIEW`` imported, or ``None`` (the policy set's 429).
    """

    def __init__(self, engine: Engine, enabled: bool, view: Callable[..., Any] | None) -> None:
        from ratelimit_mw.django.access import DJANGO_REQUEST

        self.engine = engine
        self.enabled = enabled
        self.view = view
        self.router: Router = engine.router(DJANGO_REQUEST)


def build(settings: Any) -> DjangoLimits:
    """Build the state from ``settings``; every failure is a :class:`ConfigError`
    (a ``PolicyError`` names the file, line and field)."""
    options = engine_options(settings)
    explicit = "enabled" in options
    enabled = parse_enabled(options.pop("enabled")) if explicit else env_enabled(os.environ)
    metrics = options.pop("metrics", None)
    given = options.pop("engine", None)
    if given is not None:
        if options:
            raise ConfigError(f"RATELIMIT_ENGINE is set: drop the other settings ({', '.join(sorted(options))})")
        built: Engine = given
        if explicit:
            built.enabled = enabled
        enabled = built.enabled
    else:
        policies = policies_of(options)
        options.pop("policies", None)
        built = build_engine(policies, options.pop("backend", None), options.pop("limiter", None),
                             enabled=enabled, **options)
    if metrics is not None:
        metrics.attach(built)
    return DjangoLimits(built, enabled, _import_view(getattr(settings, "RATELIMIT_VIEW", None)))


_lock = threading.Lock()
_state: DjangoLimits | None = None


def state() -> DjangoLimits:
    """The process's state, built on first use (and after :func:`reset`)."""
    current = _state
    if current is not None:
        return current
    return _build()


def _build() -> DjangoLimits:
    global _state
    from django.conf import settings

    from ratelimit_mw.django import decorators

    with _lock:
        if _state is None:
            connect_signals()
            built = build(settings)
            decorators.declare_all(built.engine)
            _state = built
        return _state


def current() -> DjangoLimits | None:
    """The state if built already (decorators declare into it), else ``None``."""
    return _state


def engine() -> Engine:
    """The engine the middleware, decorators and throttles share (for the admin API,
    metrics and tests)."""
    return state().engine


def reset() -> None:
    """Forget the state: the next request builds it from the settings again."""
    global _state
    with _lock:
        _state = None


def _setting_changed(*, setting: str, **_: Any) -> None:
    if setting.startswith("RATELIMIT_"):
        reset()


def connect_signals() -> None:
    from django.core.signals import setting_changed

    setting_changed.connect(_setting_changed, dispatch_uid="ratelimit_mw.django.conf")
