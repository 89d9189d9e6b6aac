"""Decision -> response headers, one pure renderer shared by both adapters.

The families (``x-ratelimit``, ``ietf`` per draft-ietf-httpapi-ratelimit-headers-11,
``draft03``) are described in ``docs/headers.md``. Everything fixed per route is built
once, in ``str`` pairs (WSGI) and latin-1 ``bytes`` pairs (ASGI) by the same code, so the
adapters cannot drift apart; ``render`` only formats numbers. The partition key ``pk``
is never sent: it would expose the client key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


#: ``decision -> header pairs``; ``wall_now`` (Unix time) matters only for epoch resets.
Render = Callable[..., list[tuple[Any, Any]]]


class HeaderRenderer:
    """Renders the headers of one route's decisions.

    Args:
        rules: every limit of the route (for ``RateLimit-Policy``).
        styles: header families to emit; ``()`` or ``("none",)`` emits only ``Retry-After``.
        names: overrides of :data:`DEFAULT_HEADER_NAMES` (by key or by default name).
        reset: ``"delta"`` (seconds from now) or ``"epoch"`` (Unix time) for X-RateLimit-Reset.
        wall_clock: the Unix time source for epoch resets.

    Attributes:
        render: ``render(decision, wall_now=None)``: ``str`` pairs (WSGI).
        render_raw: the same as lower-case latin-1 ``bytes`` pairs (ASGI).
        raw_names: lower-case latin-1 names of every header this renderer may emit.
    """

    __slots__ = ("policy_value", "raw_names", "render", "render_raw")

    def __init__(
        self,
        rules: Sequence[Rule],
        styles: Sequence[str] = ("x-ratelimit", "ietf"),
        *,
        names: Mapping[str, str] | None = None,
        reset: str = "delta",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        for style in styles:
            if style not in _STYLES:
                raise ConfigError(f"unknown header style {style!r}; expected one of {', '.join(_STYLES)}")
        if reset not in ("delta", "epoch"):
            raise ConfigError(f"reset must be 'delta' or 'epoch', got {reset!r}")
        merged = dict(DEFAULT_HEADER_NAMES)
        by_default_name = {v.lower(): k for k, v in DEFAULT_HEADER_NAMES.items()}
        for key, value in (names or {}).items():
            canon = key if key in merged else by_default_name.get(key.lower())
            if canon is None:
                raise ConfigError(f"unknown header name key {key!r}")
            merged[canon] = value
        #: the static ``RateLimit-Policy`` value of this route
        self.policy_value = ",".join(_policy_item(r) for r in rules)
        draft_policy = ", ".join(f"{r.capacity};w={r.window}" for r in rules)
        families = ("x-ratelimit" in styles, "ietf" in styles, "draft03" in styles, reset == "epoch")
        self.render: Render = _compile(merged, rules, self.policy_value, draft_policy, str, families, wall_clock)
        raw_names = {k: v.lower().encode("latin-1") for k, v in merged.items()}
        self.render_raw: Render = _compile(
            raw_names, rules, self.policy_value, draft_policy, _latin1, families, wall_clock
        )
        self.raw_names: frozenset[bytes] = frozenset(raw_names.values())


def _policy_item(rule: Rule) -> str:
    """One ``RateLimit-Policy`` item: an in-flight limit counts requests in flight
    (quota unit ``concurrent-requests``) and has no window."""
    if rule.in_flight:
        return f'{sf_string(rule.name)};q={rule.capacity};qu="concurrent-requests"'
    return f"{sf_string(rule.name)};q={rule.capacity};w={rule.window}"


def _compile(
    names: Mapping[str, Any],
    rules: Sequence[Rule],
    policy_value: str,
    draft_policy: str,
    encode: Callable[[str], Any],
    families: tuple[bool, bool, bool, bool],
    wall_clock: Callable[[], float],
) -> Render:
    """One route's renderer in one encoding: every fixed text prepared here, once.

    ``%`` formatting and ``join`` work alike on ``str`` and ``bytes``, so numbers go
    straight into the target type.
    """
    x, ietf, draft, epoch = families
    raw = encode is _latin1
    number: Callable[[float], Any] = encode("%d").__mod__  # an int, or a float truncated as one
    join: Callable[[tuple[Any, ...]], Any] = b"".join if raw else "".join
    limit_name, remaining_name, reset_name = names["limit"], names["remaining"], names["reset"]
    ratelimit_name, retry_name = names["ratelimit"], names["retry_after"]
    draft_limit, draft_remaining, draft_reset = names["draft_limit"], names["draft_remaining"], names["draft_reset"]
    policy_pair = (names["policy"], encode(policy_value)) if ietf and policy_value else None
    draft_policy_pair = (names["policy"], encode(draft_policy)) if draft and not ietf and draft_policy else None
    t_sep = encode(";t=")
    #: rule name -> the ``RateLimit`` value up to its first number: ``"name";r=``
    heads = {r.name: encode(sf_string(r.name) + ";r=") for r in rules}
    #: capacities as text (the usual ``Limit`` values)
    limits = {r.capacity: encode(str(r.capacity)) for r in rules}

    only = rules[0] if len(rules) == 1 else None  # the usual single-rule route: no lookups
    only_capacity = only.capacity if only is not None else None
    only_limit = limits.get(only_capacity) if only_capacity is not None else None
    only_head = heads[only.name] if only is not None else None

    # the default families with delta resets: the whole list in one literal
    usual = x and ietf and not draft and not epoch and policy_pair is not None

    def render(decision: Decision, wall_now: float | None = None) -> list[tuple[Any, Any]]:
        rule = decision[5]
        reset_after = decision[3]
        remaining_text = number(decision[2])
        reset_text = number(_ceil(reset_after - 1e-9) if reset_after > 1e-9 else 0)
        if rule is only and decision[1] == only_capacity:
            limit_text, head = only_limit, only_head
        else:
            limit_text = limits.get(decision[1]) or number(decision[1])
            head = None if rule is None else heads.get(rule.name) or encode(sf_string(rule.name) + ";r=")
        out: list[Any]
        if usual and head is not None:
            out = [(limit_name, limit_text), (remaining_name, remaining_text), (reset_name, reset_text), policy_pair,
                   (ratelimit_name, join((head, remaining_text, t_sep, reset_text)))]
        else:
            out = []
            if x:
                if epoch:
                    now = wall_clock() if wall_now is None else wall_now
                    reset_value = number(_ceil(now + reset_after))
                else:
                    reset_value = reset_text
                out += ((limit_name, limit_text), (remaining_name, remaining_text), (reset_name, reset_value))
            if ietf:
                if policy_pair is not None:
                    out.append(policy_pair)
                if head is not None:
                    out.append((ratelimit_name, join((head, remaining_text, t_sep, reset_text))))
            if draft:
                out += ((draft_limit, limit_text), (draft_remaining, remaining_text), (draft_reset, reset_text))
                if draft_policy_pair is not None:
                    out.append(draft_policy_pair)
        if not decision[0]:
            out.append((retry_name, number(retry_after_seconds(decision[4]))))
        return out

    return render


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")
