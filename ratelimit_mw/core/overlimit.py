"""Envoy's over-limit cache: a client hammering past its limit costs no round trip.

A denial is remembered until its retry time and answered locally; the key is forgotten
as soon as the backend admits it. Only a denial whose ``remaining`` is ``cost - 1`` is
remembered: until its retry time nothing the client could see changes (its remaining
count, the wait for this cost), so the cached answer is the one the backend would give.
Any other denial (a large cost with a few units left) goes back to the backend each time.
"""

from __future__ import annotations

from collections.abc import Sequence

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.quota import Quota

__all__ = ["OverLimitCache"]


class OverLimitCache:
    """Denials by storage key, at most ``size`` of them (0 disables the cache).

    Attributes:
        entries: storage key -> (until, cost, decision); falsy while empty, which is
            all the remote check looks at before asking :meth:`get`.
    """

    __slots__ = ("entries", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[str, tuple[float, int, Decision]] = {}

    def get(self, keys: Sequence[str], cost: int, now: float) -> Decision | None:
        """A remembered denial for one of ``keys`` at the same cost, still in force."""
        entries = self.entries
        for key in keys:
            entry = entries.get(key)
            if entry is not None:
                until, denied_cost, d = entry
                if now >= until:
                    del entries[key]
                elif cost == denied_cost:
                    left = until - now
                    return Decision(False, d.limit, d.remaining, max(d.reset_after - (d.retry_after - left), 0.0),
                                    left, d.rule, 0.0, d.violated, False)
        return None

    def record(self, quota: Quota, keys: Sequence[str], cost: int, decision: Decision, now: float) -> None:
        """Remember ``decision`` if it is a denial worth caching; an admission forgets ``keys``."""
        if decision.allowed:
            if self.entries:
                self.forget(keys)
            return
        if decision.retry_after <= 0 or decision.rule is None or decision.remaining != cost - 1:
            return
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[keys[quota.rules.index(decision.rule)]] = (now + decision.retry_after, cost, decision)

    def forget(self, keys: Sequence[str]) -> None:
        """Drop what is remembered for ``keys`` (an admission, an admin reset)."""
        for key in keys:
            self.entries.pop(key, None)
