"""The framework settings every integration reads (Django settings, Flask config), and
``RATELIMIT_ENABLED``: one reading of the switch for the environment and every framework,
so a typo fails the same way everywhere."""

from __future__ import annotations

from typing import Any

from ratelimit_mw.errors import ConfigError

__all__ = ["FRAMEWORK_SETTINGS", "env_enabled", "parse_enabled"]

#: Setting names the integrations read (Django settings, Flask config), and the option each fills.
FRAMEWORK_SETTINGS: dict[str, str] = {
    "RATELIMIT_POLICIES": "policies",
    "RATELIMIT_BACKEND": "backend",
    "RATELIMIT_ENABLED": "enabled",
    "RATELIMIT_KEY_SECRET": "key_secret",
    "RATELIMIT_PREFIX": "prefix",
    "RATELIMIT_METRICS": "metrics",
    "RATELIMIT_ENGINE": "engine",
}

_OFF = frozenset({"false", "0", "no", "off"})
_ON = frozenset({"", "true", "1", "yes", "on"})


def env_enabled(environ: Any) -> bool:
    """``RATELIMIT_ENABLED`` from ``environ`` (see :func:`parse_enabled`); unset: true."""
    return parse_enabled(environ.get("RATELIMIT_ENABLED", ""))


def parse_enabled(value: Any) -> bool:
    """``RATELIMIT_ENABLED`` as a variable or a framework setting: a bool, or text (or 1/0)
    that is true unless ``false``/``0``/``no``/``off``.

    Raises:
        ConfigError: any other value (a typo must not silently disable limiting).
    """
    if isinstance(value, bool):
        return value
    raw = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if raw in _OFF:
        return False
    if raw in _ON:
        return True
    raise ConfigError(f"RATELIMIT_ENABLED must be true or false (or 1/0, yes/no, on/off), got {value!r}")
