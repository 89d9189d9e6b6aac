"""Helpers for testing code that uses ratelimit_mw: a fake clock and a fake request.

Both are public so applications can test their own limits exactly, without sleeps::

    clock = FakeClock(1000.0)
    limiter = Limiter("memory://", clock=clock)
    ...
    clock.advance(0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

__all__ = ["FakeClock", "FakeRequest"]


class FakeClock:
    """A clock that moves only when told to; pass it as ``clock=`` to a Limiter.

    Calling the instance returns the current time in seconds, like ``time.time``.
    ``sleep``/``asleep`` advance it instantly, so code that waits (``acquire``,
    leaky-bucket shaping) runs at full speed in tests.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self.now += seconds
        return self.now

    def set(self, now: float) -> None:
        """Jump to an absolute time."""
        self.now = float(now)

    def sleep(self, seconds: float) -> None:
        """Drop-in for ``time.sleep``: advances the clock instead of waiting."""
        self.advance(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        """Drop-in for ``asyncio.sleep``: advances the clock instead of waiting."""
        self.advance(max(seconds, 0.0))


class FakeRequest:
    """A :class:`~ratelimit_mw.types.RequestView` built from plain values."""

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        peer: str | None = "127.0.0.1",
        query_string: str = "",
    ) -> None:
        self._method = method.upper()
        self._path = path
        items = headers.items() if isinstance(headers, Mapping) else headers
        self._headers = [(k.lower(), v) for k, v in items]
        self._peer = peer
        self._query = query_string

    @property
    def method(self) -> str:
        return self._method

    @property
    def path(self) -> str:
        return self._path

    @property
    def peer(self) -> str | None:
        return self._peer

    def header(self, name: str) -> str | None:
        for key, value in self._headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self._headers if key == name]

    def query(self, name: str) -> str | None:
        for key, value in parse_qsl(self._query, keep_blank_values=True):
            if key == name:
                return value
        return None

    def cookie(self, name: str) -> str | None:
        raw = self.header("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None
