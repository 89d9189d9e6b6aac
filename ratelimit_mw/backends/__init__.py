"""Where limiter state lives: ``memory`` (one process) or ``redis`` (many)."""

from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.memory import MemoryBackend

__all__ = ["AsyncBackend", "Backend", "MemoryBackend"]
