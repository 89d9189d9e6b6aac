"""The backend interface pair: ``Backend`` (sync) and ``AsyncBackend`` (async).

Like httpx's transports, the twins sit side by side with the same method names
(the async ones prefixed with ``a``); a test checks that the sets match.

A backend receives fully built storage keys (one per rule, all sharing one Redis
hash slot) and the rules; it runs :func:`ratelimit_mw.core.evaluate.evaluate`
atomically and stores the new states only when the whole request is allowed.
``now`` is the caller's clock, or ``None`` to let the backend use its own (Redis
``TIME``), which keeps app nodes with skewed clocks from handing out extra quota.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule

__all__ = ["AsyncBackend", "Backend"]


class Backend(ABC):
    """Synchronous state store."""

    #: True when the backend reads time itself (``now=None`` is allowed).
    has_clock: bool = False

    @abstractmethod
    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        """Check every rule and consume ``cost`` from all of them, or from none."""

    @abstractmethod
    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        """Report usage without consuming anything."""

    @abstractmethod
    def reset(self, keys: Sequence[str]) -> None:
        """Forget the state of ``keys`` (their quota becomes whole)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""


class AsyncBackend(ABC):
    """Asynchronous twin of :class:`Backend`.

    A backend may also offer ``ahit_nowait`` (same arguments as :meth:`ahit`): a plain
    function returning an awaitable of the Decision, which the Limiter then calls
    instead, so a check that waits on a future crosses no coroutine frame of the
    backend's (see ``RedisBackend.ahit_nowait``).
    """

    has_clock: bool = False

    @abstractmethod
    async def ahit(
        self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None
    ) -> Decision:
        """Async :meth:`Backend.hit`."""

    @abstractmethod
    async def apeek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        """Async :meth:`Backend.peek`."""

    @abstractmethod
    async def areset(self, keys: Sequence[str]) -> None:
        """Async :meth:`Backend.reset`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Async :meth:`Backend.close`."""
