"""Decision -> response headers, one pure renderer shared by both adapters.

Families (chosen per route):

* ``x-ratelimit``: ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (delta seconds,
  or epoch seconds with ``reset="epoch"``).
* ``ietf``: ``RateLimit-Policy`` (every limit of the route) and ``RateLimit`` (the
  most restrictive one), Structured Fields per draft-ietf-httpapi-ratelimit-headers-11:
  ``RateLimit-Policy: "burst";q=100;w=60`` and ``RateLimit: "burst";r=37;t=23``.
  The partition key ``pk`` is never sent: it would expose the client key.
* ``draft03``: the older ``RateLimit-Limit``/``-Remaining``/``-Reset`` trio that
  many clients still parse.

``Retry-After`` (delay-seconds, rounded up, at least 1) is added to denials only.
Everything that does not change per request (names, the policy list) is built in
``__init__``; ``render`` only formats numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import ConfigError

__all__ = ["DEFAULT_HEADER_NAMES", "HeaderRenderer", "retry_after_seconds", "sf_string"]

DEFAULT_HEADER_NAMES: Mapping[str, str] = {
    "limit": "X-RateLimit-Limit",
    "remaining": "X-RateLimit-Remaining",
    "reset": "X-RateLimit-Reset",
    "policy": "RateLimit-Policy",
    "ratelimit": "RateLimit",
    "retry_after": "Retry-After",
    "draft_limit": "RateLimit-Limit",
    "draft_remaining": "RateLimit-Remaining",
    "draft_reset": "RateLimit-Reset",
}
_STYLES = ("x-ratelimit", "ietf", "draft03", "none")
_ceil = math.ceil


def sf_string(value: str) -> str:
    """Serialize a Structured Field String (RFC 8941 §4.1.6): quoted, escaped, ASCII."""
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in value)
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def retry_after_seconds(retry_after: float) -> int:
    """Whole seconds for ``Retry-After``: rounded up, never less than 1."""
    if retry_after != retry_after or retry_after == math.inf:  # NaN/inf guard
        return 1
    return max(1, _ceil(retry_after - 1e-9))


def _whole(seconds: float) -> int:
    return max(0, _ceil(seconds - 1e-9))


class HeaderRenderer:
    """Renders the headers of one route's decisions.

    Args:
        rules: every limit of the route (for ``RateLimit-Policy``).
        styles: header families to emit; ``()`` or ``("none",)`` emits only ``Retry-After``.
        names: overrides of :data:`DEFAULT_HEADER_NAMES` (by key or by default name).
        reset: ``"delta"`` (seconds from now) or ``"epoch"`` (Unix time) for X-RateLimit-Reset.
    """

    __slots__ = ("_x", "_ietf", "_draft", "_epoch", "_n", "_policy_value", "_draft_policy", "_quoted")

    def __init__(
        self,
        rules: Sequence[Rule],
        styles: Sequence[str] = ("x-ratelimit", "ietf"),
        *,
        names: Mapping[str, str] | None = None,
        reset: str = "delta",
    ) -> None:
        for style in styles:
            if style not in _STYLES:
                raise ConfigError(f"unknown header style {style!r}; expected one of {', '.join(_STYLES)}")
        if reset not in ("delta", "epoch"):
            raise ConfigError(f"reset must be 'delta' or 'epoch', got {reset!r}")
        self._x = "x-ratelimit" in styles
        self._ietf = "ietf" in styles
        self._draft = "draft03" in styles
        self._epoch = reset == "epoch"
        merged = dict(DEFAULT_HEADER_NAMES)
        by_default_name = {v.lower(): k for k, v in DEFAULT_HEADER_NAMES.items()}
        for key, value in (names or {}).items():
            canon = key if key in merged else by_default_name.get(key.lower())
            if canon is None:
                raise ConfigError(f"unknown header name key {key!r}")
            merged[canon] = value
        self._n = merged
        self._policy_value = ",".join(
            f"{sf_string(r.name)};q={r.capacity};w={r.window}" for r in rules
        )
        self._draft_policy = ", ".join(f"{r.capacity};w={r.window}" for r in rules)
        self._quoted = {r.name: sf_string(r.name) for r in rules}  # not per request

    @property
    def policy_value(self) -> str:
        """The static ``RateLimit-Policy`` value of this route."""
        return self._policy_value

    def render(self, decision: Decision, wall_now: float = 0.0) -> list[tuple[str, str]]:
        """Header pairs for ``decision``; ``wall_now`` is needed only for epoch resets."""
        n = self._n
        out: list[tuple[str, str]] = []
        reset_after = decision.reset_after
        reset = _ceil(reset_after - 1e-9) if reset_after > 1e-9 else 0
        remaining = str(decision.remaining)
        reset_text = str(reset)
        if self._x:
            out.append((n["limit"], str(decision.limit)))
            out.append((n["remaining"], remaining))
            out.append((n["reset"], str(_ceil(wall_now + reset_after)) if self._epoch else reset_text))
        if self._ietf:
            if self._policy_value:
                out.append((n["policy"], self._policy_value))
            rule = decision.rule
            if rule is not None:
                name = self._quoted.get(rule.name) or sf_string(rule.name)
                out.append((n["ratelimit"], f"{name};r={remaining};t={reset_text}"))
        if self._draft:
            out.append((n["draft_limit"], str(decision.limit)))
            out.append((n["draft_remaining"], remaining))
            out.append((n["draft_reset"], reset_text))
            if not self._ietf and self._draft_policy:
                out.append((n["policy"], self._draft_policy))
        if not decision.allowed:
            out.append((n["retry_after"], str(retry_after_seconds(decision.retry_after))))
        return out
