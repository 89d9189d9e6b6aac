"""Limits declared in code (decorators, dependencies), compiled like YAML routes.

A declaration names a route (``view:myapp.views.index``, ``dependency:GET /items``)
and its limits; :meth:`Engine.declare <ratelimit_mw.engine.Engine.declare>` turns it
into a :class:`~ratelimit_mw.policy.model.Route` over the active policy set's
defaults, so it shares the backend, headers, metrics and admin usage/reset with the
YAML routes and is rebuilt on every policy swap. A rate that does not parse is a
:class:`~ratelimit_mw.errors.ConfigError` naming the declaration, raised when the
decorator or dependency is declared (at start-up), never on a request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from ratelimit_mw.core.keys import KeySpec
from ratelimit_mw.core.keyspec import compile_key
from ratelimit_mw.core.rates import Rule, parse_rates
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.policy.model import Route

__all__ = ["SOURCES", "Declaration", "declared_route", "stricter"]

#: Where a limit comes from, as ``explain`` names it.
SOURCES = ("yaml", "decorator", "dependency", "plan")

KeyArg = str | Sequence[str | Callable[[Any], object]] | Callable[[Any], object] | KeySpec | None


class Declaration(NamedTuple):
    """What a decorator or dependency asked for; equal declarations are one route."""

    name: str
    limits: tuple[str | Rule, ...]
    key: Any
    source: str
    cost: int

    @classmethod
    def of(cls, name: str, limits: str | Rule | Sequence[str | Rule], key: KeyArg, source: str,
           cost: int) -> Declaration:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a declared limit needs a non-empty name, got {name!r}")
        if source not in SOURCES:
            raise ConfigError(f"{name!r}: source must be one of {', '.join(SOURCES)}, got {source!r}")
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ConfigError(f"{source} {name!r}: cost must be a whole number >= 1, got {cost!r}")
        items = (limits,) if isinstance(limits, (str, Rule)) else tuple(limits)
        if not items:
            raise ConfigError(f"{source} {name!r}: give at least one limit, e.g. '5/minute'")
        return cls(name, items, tuple(key) if isinstance(key, list) else key, source, cost)


def _rules(decl: Declaration, algorithm: str | None) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for item in decl.limits:
        try:
            found = (item,) if isinstance(item, Rule) else parse_rates(item, algorithm)
        except ConfigError as exc:
            raise ConfigError(f"{decl.source} {decl.name!r}: {exc}") from None
        for rule in found:
            if any(r.signature == rule.signature for r in rules):
                raise ConfigError(f"{decl.source} {decl.name!r}: duplicate limit {str(rule)!r}")
            if decl.cost > rule.capacity:
                raise ConfigError(f"{decl.source} {decl.name!r}: cost {decl.cost} exceeds the capacity "
                                  f"{rule.capacity} of {str(rule)!r}, so no request could ever pass")
            rules.append(rule)
    used: set[str] = set()  # names label the limits in headers: unique within the route
    out = []
    for rule in rules:
        name, n = rule.name, 2
        while name in used:
            name, n = f"{rule.name}-{n}", n + 1
        used.add(name)
        out.append(rule if name == rule.name else replace(rule, name=name))
    return tuple(out)


def _key(decl: Declaration, policies: Any) -> tuple[KeySpec, str]:
    if decl.key is None:
        spec = policies.defaults.get("key", "ip")
        text = spec if isinstance(spec, str) else "[" + ", ".join(spec) + "]"
        if policies.default_key is not None:
            return policies.default_key, text
        return compile_key(list(spec) if isinstance(spec, tuple) else spec, client_ip=policies.client_ip), text
    if isinstance(decl.key, KeySpec):
        return decl.key, decl.key.text
    try:
        key = compile_key(list(decl.key) if isinstance(decl.key, tuple) else decl.key, client_ip=policies.client_ip)
    except ConfigError as exc:
        raise ConfigError(f"{decl.source} {decl.name!r}: invalid key: {exc}") from None
    return key, key.text


def declared_route(decl: Declaration, policies: Any) -> Route:
    """The route of ``decl`` over ``policies``' defaults (algorithm, headers, failure mode)."""
    defaults = policies.defaults
    rules = _rules(decl, defaults.get("algorithm"))
    key, key_text = _key(decl, policies)
    return Route(
        template=decl.name,
        methods=frozenset(),
        rules=rules,
        scope=decl.name,
        key=key,
        key_spec=key_text,
        cost=decl.cost,
        headers=tuple(defaults.get("headers", ("x-ratelimit", "ietf"))),
        on_backend_error=defaults.get("on_backend_error", "allow"),
        shadow=bool(defaults.get("shadow", False)),
        extra={"source": decl.source, "key": key_text},
    )


def stricter(first: Any, second: Any) -> Any:
    """Of two verdicts (a YAML route's and a declared route's, ``None`` for no check),
    the one whose headers a response should carry: a denial, else the fewer remaining
    requests (then the lower limit). Used by integrations that check both."""
    if first is None:
        return second
    if second is None:
        return first
    if first.reject != second.reject:
        return first if first.reject else second
    a, b = first.decision, second.decision
    return first if (a.remaining, a.limit) < (b.remaining, b.limit) else second
