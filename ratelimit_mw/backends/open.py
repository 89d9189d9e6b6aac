"""Backend URLs and clients turned into backends (the memory one needs no extra)."""

from __future__ import annotations

from typing import Any

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.errors import ConfigError

__all__ = ["open_backend"]


def open_backend(spec: Any, *, prefix: str = "rl", **options: Any) -> Backend | AsyncBackend:
    """Turn a URL or client object into a backend.

    ``memory://`` (``?max_keys=N``), ``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``, a redis-py client, or a backend.
    """
    if isinstance(spec, (Backend, AsyncBackend)):
        return spec
    if spec is None or (isinstance(spec, str) and spec.split("://", 1)[0] in ("memory", "")):
        max_keys = options.pop("max_keys", None)
        if isinstance(spec, str) and "max_keys=" in spec:
            try:
                max_keys = int(spec.split("max_keys=", 1)[1].split("&", 1)[0])
            except ValueError:
                raise ConfigError(f"invalid max_keys in backend URL {spec!r}") from None
        return MemoryBackend(max_keys=max_keys or 100_000)
    try:
        from ratelimit_mw.backends.redis import open_redis_backend
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"backend {spec!r} needs the redis extra: pip install 'ratelimit_mw[redis]' ({exc})"
        ) from exc
    return open_redis_backend(spec, prefix=prefix, **options)
