"""Rules bound to a scope: what one check applies, and the slot names of its state.

Pure and standard-library only, so backends and the limiter share it without
importing each other.
"""

from __future__ import annotations

from binascii import b2a_base64
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b

from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import ConfigError

__all__ = ["Quota", "make_quota"]


@dataclass(frozen=True, slots=True, eq=False)
class Quota:
    """Rules bound to a scope; built once per route (or per distinct ``limits`` argument).

    Compared and hashed by identity (``eq=False``): quotas are interned by
    :func:`make_quota`, and a bound check is looked up by its quota on every call, so
    the lookup must not hash the rules each time.

    Attributes:
        rules: the limits, checked together.
        scope: bucket namespace (the route label, or a shared ``scope``).
        slots: one short id per rule, unique per (scope, rule maths).
    """

    rules: tuple[Rule, ...]
    scope: str
    slots: tuple[str, ...]

    @property
    def in_flight(self) -> bool:
        """It holds an in-flight limit (``N concurrent``): admitted checks hold a lease."""
        return any(rule.in_flight for rule in self.rules)


def _slot_id(scope: str, rule: Rule) -> str:
    """7 characters (42 bits) naming one (scope, rule): short keys save Redis memory
    (``rl:{2-char tag}14-char rest:7-char slot`` stays under an allocator size step)."""
    digest = blake2b(f"{scope}\0{rule.signature}".encode(), digest_size=6).digest()
    return b2a_base64(digest, newline=False).decode()[:7].replace("+", "-").replace("/", "_")


@lru_cache(maxsize=4096)
def make_quota(rules: tuple[Rule, ...], scope: str) -> Quota:
    """The (interned) Quota of ``rules`` in ``scope``."""
    if not rules:
        raise ConfigError("at least one limit is required")
    return Quota(rules, scope, tuple(_slot_id(scope, r) for r in rules))
