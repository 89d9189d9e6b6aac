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
from collections.abc import Callable, Mapping, Sequence
from functools import partial
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


def _whole(seconds: float) -> int:
    return max(0, _ceil(seconds - 1e-9))


class _Forms:
    """One encoding (``str`` for WSGI, latin-1 ``bytes`` for ASGI) of a renderer's fixed parts.

    Both forms are built by the same code and read by the same ``_render``, so the two
    adapters cannot drift apart; only the type of the text differs (``%`` formatting
    and ``+`` work alike on ``str`` and ``bytes``, so numbers go straight into the target
    type, with no encoding step per request).
    """

    __slots__ = (
        "current", "digits", "raw", "limits", "limit_pairs", "policy_pair", "names", "policy_value", "draft_policy",
        "t_sep", "only_limit", "only_head", "only_limit_pair",
        "limit", "remaining", "reset", "policy", "ratelimit", "retry_after", "draft_limit",
        "draft_remaining", "draft_reset",
    )

    def __init__(self, names: Mapping[str, Any], rules: Sequence[Rule], policy_value: str, draft_policy: str,
                 encode: Callable[[str], Any]) -> None:
        self.names = names
        self.limit: Any = names["limit"]
        self.remaining: Any = names["remaining"]
        self.reset: Any = names["reset"]
        self.policy: Any = names["policy"]
        self.ratelimit: Any = names["ratelimit"]
        self.retry_after: Any = names["retry_after"]
        self.draft_limit: Any = names["draft_limit"]
        self.draft_remaining: Any = names["draft_remaining"]
        self.draft_reset: Any = names["draft_reset"]
        self.policy_value = encode(policy_value)
        self.draft_policy = encode(draft_policy)
        self.digits = encode("%d")
        self.raw = isinstance(self.digits, bytes)
        self.t_sep = encode(";t=")
        #: rule name -> the ``RateLimit`` value up to its first number: ``"name";r=``
        self.current = {r.name: encode(sf_string(r.name) + ";r=") for r in rules}
        #: the rules' capacities as text (the usual ``Limit`` values)
        self.limits = {r.capacity: encode(str(r.capacity)) for r in rules}
        #: ready pairs of the fixed headers (tuples are immutable: shared by every response)
        self.limit_pairs = {c: (self.limit, text) for c, text in self.limits.items()}
        self.policy_pair = (self.policy, self.policy_value)
        # the usual single-rule route, answered without any lookup
        only = rules[0] if len(rules) == 1 else None
        self.only_limit = only.capacity if only is not None else None
        self.only_head = self.current[only.name] if only is not None else None
        self.only_limit_pair = self.limit_pairs[only.capacity] if only is not None else None


class HeaderRenderer:
    """Renders the headers of one route's decisions.

    Args:
        rules: every limit of the route (for ``RateLimit-Policy``).
        styles: header families to emit; ``()`` or ``("none",)`` emits only ``Retry-After``.
        names: overrides of :data:`DEFAULT_HEADER_NAMES` (by key or by default name).
        reset: ``"delta"`` (seconds from now) or ``"epoch"`` (Unix time) for X-RateLimit-Reset.
    """

    __slots__ = ("_x", "_ietf", "_draft", "_epoch", "_usual", "_rule", "_rules", "_policy_value", "_text", "_raw",
                 "raw_names")

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
        # the default families with delta resets: rendered by one straight-line branch
        self._usual = self._x and self._ietf and not self._draft and not self._epoch and bool(rules)
        self._rule = rules[0] if len(rules) == 1 else None
        self._rules = tuple(rules)
        by_default_name = {v.lower(): k for k, v in DEFAULT_HEADER_NAMES.items()}
        for key, value in (names or {}).items():
            canon = key if key in merged else by_default_name.get(key.lower())
            if canon is None:
                raise ConfigError(f"unknown header name key {key!r}")
            merged[canon] = value
        self._policy_value = ",".join(
            f"{sf_string(r.name)};q={r.capacity};w={r.window}" for r in rules
        )
        draft_policy = ", ".join(f"{r.capacity};w={r.window}" for r in rules)
        # not per request: quoting, and every fixed piece of text in both encodings
        self._text = _Forms(merged, rules, self._policy_value, draft_policy, str)
        raw_names = {k: v.lower().encode("latin-1") for k, v in merged.items()}
        self._raw = _Forms(raw_names, rules, self._policy_value, draft_policy, _latin1)
        #: Lower-case latin-1 names of every header this renderer may emit.
        self.raw_names: frozenset[bytes] = frozenset(self._raw.names.values())

    @property
    def policy_value(self) -> str:
        """The static ``RateLimit-Policy`` value of this route."""
        return self._policy_value

    @property
    def needs_wall_clock(self) -> bool:
        """Whether :meth:`render` reads ``wall_now`` (epoch-style resets only)."""
        return self._epoch and self._x

    def render(self, decision: Decision, wall_now: float = 0.0) -> list[tuple[str, str]]:
        """Header pairs for ``decision``; ``wall_now`` is needed only for epoch resets."""
        pairs: list[tuple[str, str]] = self._render(self._text, decision, wall_now)
        return pairs

    def render_raw(self, decision: Decision, wall_now: float = 0.0) -> list[tuple[bytes, bytes]]:
        """:meth:`render` as ASGI wants it: lower-case latin-1 names, latin-1 values."""
        pairs: list[tuple[bytes, bytes]] = self._render(self._raw, decision, wall_now)
        return pairs

    def renderer(self, raw: bool) -> Callable[[Decision, float], list[tuple[Any, Any]]]:
        """:meth:`render_raw` (``raw``) or :meth:`render` as one callable, one call shorter.

        A single-rule route with the default families (most routes) gets a closure
        that renders its allowed decisions in one frame from prepared locals; the
        rest goes to the general renderer.
        """
        forms = self._raw if raw else self._text
        general = partial(self._render, forms)
        if self._usual and self._rule is not None:
            return _single_rule_renderer(forms, self._rule, general)
        return general

    def allowed_renderers(self, raw: bool) -> tuple[Callable[[int, float], list[tuple[Any, Any]]], ...] | None:
        """Per rule of the route, in order, ``(remaining, reset_after) -> pairs`` for an
        allowed request reported by that rule, without a Decision: what the in-process
        fast lanes render with (see ``MemoryBackend.lane``). The pairs are those
        ``_render`` builds. ``None`` when rendering needs the wall clock (epoch resets)
        or the route has no rules.

        Every choice of families gets them: a route that sends fewer headers
        (``headers: [ietf]``, or ``none``) must not fall off the fast lane and cost
        more than one that sends all five. The default families get a straight-line
        closure; the others one that appends what the route emits.
        """
        if not self._rules or self.needs_wall_clock:
            return None
        forms = self._raw if raw else self._text
        if self._usual:
            return tuple(_allowed_renderer(forms, rule) for rule in self._rules)
        return tuple(_families_renderer(forms, rule, self._x, self._ietf, self._draft) for rule in self._rules)

    def _render(self, forms: _Forms, decision: Decision, wall_now: float = 0.0) -> Any:
        d = forms.digits
        remaining = decision.remaining
        reset_after = decision.reset_after
        reset = _ceil(reset_after - 1e-9) if reset_after > 1e-9 else 0
        if forms.raw:  # the cheapest of each type: b"%d" % n for bytes, str(n) for text
            remaining_text = d % remaining
            reset_text = d % reset
        else:
            remaining_text = str(remaining if type(remaining) is int else int(remaining))
            reset_text = str(reset)
        if self._usual:
            rule = decision.rule
            limit = decision.limit
            if rule is self._rule and limit == forms.only_limit:  # a single-rule route: no lookups
                head = forms.only_head
                limit_pair = forms.only_limit_pair
            else:
                head = forms.current.get(rule.name) if rule is not None else None
                limit_pair = forms.limit_pairs.get(limit) or (forms.limit, d % limit)
            if head is not None:
                out = [
                    limit_pair,
                    (forms.remaining, remaining_text),
                    (forms.reset, reset_text),
                    forms.policy_pair,
                    (forms.ratelimit, head + remaining_text + forms.t_sep + reset_text),
                ]
                if not decision.allowed:
                    out.append((forms.retry_after, d % retry_after_seconds(decision.retry_after)))
                return out
        limit_text = None
        if self._x:
            limit = decision.limit
            limit_text = forms.limits.get(limit) or d % limit
            out = [
                (forms.limit, limit_text),
                (forms.remaining, remaining_text),
                (forms.reset, d % _ceil(wall_now + reset_after) if self._epoch else reset_text),
            ]
        else:
            out = []
        if self._ietf:
            if forms.policy_value:
                out.append((forms.policy, forms.policy_value))
            rule = decision.rule
            if rule is not None:
                head = forms.current.get(rule.name)
                if head is None:
                    head = sf_string(rule.name) + ";r="
                    if isinstance(d, bytes):
                        head = head.encode("latin-1")
                out.append((forms.ratelimit, head + remaining_text + forms.t_sep + reset_text))
        if self._draft:
            if limit_text is None:
                limit_text = forms.limits.get(decision.limit) or d % decision.limit
            out.append((forms.draft_limit, limit_text))
            out.append((forms.draft_remaining, remaining_text))
            out.append((forms.draft_reset, reset_text))
            if not self._ietf and forms.draft_policy:
                out.append((forms.policy, forms.draft_policy))
        if not decision.allowed:
            out.append((forms.retry_after, d % retry_after_seconds(decision.retry_after)))
        return out


def _single_rule_renderer(
    forms: _Forms, rule: Rule, general: Callable[[Decision, float], list[tuple[Any, Any]]]
) -> Callable[[Decision, float], list[tuple[Any, Any]]]:
    """The renderer of a single-rule route with the ``x-ratelimit`` and ``ietf`` families.

    An allowed decision of that rule yields the five pairs ``_render`` builds, from
    :func:`_allowed_renderer`; anything else (a denial, another rule's decision) goes
    to ``general``.
    """
    capacity = rule.capacity
    allowed = _allowed_renderer(forms, rule)

    def render(decision: Decision, wall_now: float = 0.0) -> list[tuple[Any, Any]]:
        if not decision[0] or decision[5] is not rule or decision[1] != capacity:
            return general(decision, wall_now)
        return allowed(decision[2], decision[3])

    return render


def _allowed_renderer(forms: _Forms, rule: Rule) -> Callable[[int, float], list[tuple[Any, Any]]]:
    """``(remaining, reset_after) -> pairs`` for an allowed request of a single-rule route
    with the default families: the same five pairs ``_render`` builds, from closure
    locals. Each number is formatted once and joined into ``RateLimit`` (measured
    here: ``str(n)`` 80 ns, one ``"%d;t=%d"`` format of two numbers 260 ns, joining
    ready texts 70-100 ns).
    """
    limit_pair: tuple[Any, Any] = (forms.limit, forms.limits[rule.capacity])
    policy_pair = forms.policy_pair
    remaining_name, reset_name, ratelimit_name = forms.remaining, forms.reset, forms.ratelimit
    head, t_sep = forms.current[rule.name], forms.t_sep
    number, join = _formatters(forms)

    def allowed(remaining: int, reset_after: float) -> list[tuple[Any, Any]]:
        remaining_text = number(remaining if type(remaining) is int else int(remaining))
        reset_text = number(_ceil(reset_after - 1e-9) if reset_after > 1e-9 else 0)
        return [
            limit_pair,
            (remaining_name, remaining_text),
            (reset_name, reset_text),
            policy_pair,
            (ratelimit_name, join((head, remaining_text, t_sep, reset_text))),
        ]

    return allowed


def _families_renderer(
    forms: _Forms, rule: Rule, x: bool, ietf: bool, draft: bool
) -> Callable[[int, float], list[tuple[Any, Any]]]:
    """:func:`_allowed_renderer` for any other choice of families (delta resets): the
    pairs ``_render`` builds for an allowed request reported by ``rule``, in its order
    (x-ratelimit, ietf, draft03), from closure locals."""
    limit_text = forms.limits[rule.capacity]
    limit_pair: tuple[Any, Any] = (forms.limit, limit_text)
    draft_limit_pair: tuple[Any, Any] = (forms.draft_limit, limit_text)
    policy_pair = forms.policy_pair if forms.policy_value else None
    draft_policy_pair = (forms.policy, forms.draft_policy) if not ietf and forms.draft_policy else None
    remaining_name, reset_name, ratelimit_name = forms.remaining, forms.reset, forms.ratelimit
    draft_remaining_name, draft_reset_name = forms.draft_remaining, forms.draft_reset
    head, t_sep = forms.current[rule.name], forms.t_sep
    number, join = _formatters(forms)

    def allowed(remaining: int, reset_after: float) -> list[tuple[Any, Any]]:
        remaining_text = number(remaining if type(remaining) is int else int(remaining))
        reset_text = number(_ceil(reset_after - 1e-9) if reset_after > 1e-9 else 0)
        out: list[tuple[Any, Any]] = []
        if x:
            out.append(limit_pair)
            out.append((remaining_name, remaining_text))
            out.append((reset_name, reset_text))
        if ietf:
            if policy_pair is not None:
                out.append(policy_pair)
            out.append((ratelimit_name, join((head, remaining_text, t_sep, reset_text))))
        if draft:
            out.append(draft_limit_pair)
            out.append((draft_remaining_name, remaining_text))
            out.append((draft_reset_name, reset_text))
            if draft_policy_pair is not None:
                out.append(draft_policy_pair)
        return out

    return allowed


def _formatters(forms: _Forms) -> tuple[Callable[[int], Any], Callable[[tuple[Any, ...]], Any]]:
    """How ``forms`` formats a number and joins texts: ``b"%d" %`` and ``b"".join`` for
    ASGI's bytes, ``str`` and ``"".join`` for WSGI's text (the cheapest of each type)."""
    if forms.raw:
        return forms.digits.__mod__, b"".join
    return str, "".join


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")
