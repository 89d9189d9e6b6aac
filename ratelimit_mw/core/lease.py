"""What an admitted request of an in-flight limit (``N concurrent``) holds until it ends.

A check of a quota with an in-flight limit answers a :class:`LeasedDecision`: a
:class:`~ratelimit_mw.core.decision.Decision` (equal to the plain one, field for field)
that also carries ``lease``, whose ``release()`` gives the slots back. The
middlewares put it in ``Verdict.slot``, next to an overload slot when there is one
(:class:`Slots`), and release it on every way a response ends.

Pure and standard-library only: the backends build the leases.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from ratelimit_mw.core.decision import Decision

__all__ = ["Lease", "LeaseStats", "LeasedDecision", "LocalLease", "Slots", "members", "new_token"]


class Lease(Protocol):
    """Something a response gives back when it ends (an in-flight lease, an overload slot)."""

    def release(self, dropped: bool = False, sample: bool = True) -> None:
        """Give it back; later calls do nothing. ``dropped``/``sample`` matter to overload slots only."""


class LeasedDecision(Decision):
    """An admitted decision that holds in-flight slots: call ``lease.release()`` when
    the request ends. Equal to the plain :class:`Decision` with the same fields."""

    lease: Lease | None = None  # type: ignore[assignment]  # an attribute here, set per instance


class LeaseStats:
    """Counters of one limiter's leases (read by the metrics at scrape time).

    Attributes:
        expired: leases this process failed to renew before they ran out (the process
            stalled, or the backend was unreachable); the backend may have given them away.
        lost: releases or renewals that found their lease gone (expired and dropped).
    """

    __slots__ = ("expired", "lost")

    def __init__(self) -> None:
        self.expired = 0
        self.lost = 0


class LocalLease:
    """A lease on an in-process counter: ``release`` calls ``give_back`` once."""

    __slots__ = ("give_back", "held")

    def __init__(self, give_back: Callable[[], None]) -> None:
        self.give_back = give_back
        self.held = True

    def release(self, dropped: bool = False, sample: bool = True) -> None:
        if self.held:
            self.held = False
            self.give_back()


class Slots:
    """Two things a response gives back (an overload slot and an in-flight lease): both
    are released, the second even if the first fails."""

    __slots__ = ("first", "second")

    def __init__(self, first: Any, second: Any) -> None:
        self.first = first
        self.second = second

    def release(self, dropped: bool = False, sample: bool = True) -> None:
        try:
            self.first.release(dropped, sample)
        finally:
            self.second.release(dropped, sample)


def leased(decision: Decision, lease: Lease) -> LeasedDecision:
    """``decision`` carrying ``lease``."""
    out: LeasedDecision = tuple.__new__(LeasedDecision, decision)
    out.lease = lease
    return out


_counter = itertools.count(1)
_process: tuple[int, str] = (0, "")


def new_token() -> str:
    """A lease holder's name, unique across processes and restarts: pid, a random part
    drawn once per process (again after a fork), and a counter."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:
        _process = (pid, secrets.token_hex(4))
    return f"{_process[1]}{pid}:{next(_counter)}"


def members(token: str, cost: int) -> tuple[str, ...]:
    """The sorted-set members of a lease of ``cost`` slots (the Lua store writes the same)."""
    return (token, *(f"{token}#{i}" for i in range(2, cost + 1)))
