"""``PolicySet``: a loaded policy document, immutable, with its compiled matcher.

A policy swap (admin API, reload) replaces the whole object, so a request in flight
sees one complete set. Nothing here changes after loading; mappings are read-only
views and :attr:`PolicySet.document` hands out a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from ratelimit_mw.core.clientip import ClientIP
from ratelimit_mw.core.keys import KeySpec
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.policy.interpolate import escape
from ratelimit_mw.policy.matcher import Matcher
from ratelimit_mw.policy.model import Route, RouteMatch
from ratelimit_mw.policy.outbound import OutboundRule
from ratelimit_mw.policy.overload import OverloadSpec

__all__ = ["UNMATCHED_LABEL", "PolicySet", "rule_text"]

#: Label (and default scope) of the route applied to requests no route matches.
UNMATCHED_LABEL = "<unmatched>"



def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


def rule_text(rule: Rule) -> str:
    """A rate string that :func:`~ratelimit_mw.core.rates.parse_rate` turns back into ``rule``.

    Used by ``explain`` so the CLI shows every option that shapes the limit.
    """
    text = str(rule)
    if rule.algorithm == "leaky_bucket" and rule.max_delay is not None:
        text += "; max_delay=" + format(rule.max_delay, ".6f").rstrip("0").rstrip(".") + "s"
    return f"{text}; algorithm={rule.algorithm}; name={rule.name}"


@dataclass(frozen=True, slots=True, eq=False)
class PolicySet:
    """Every route, limit and response setting of one policy document.

    Build it with :func:`~ratelimit_mw.policy.loader.load_policies`.

    Attributes:
        routes: the routes in match order.
        unmatched: the route applied when none matches, or ``None`` (pass through).
        policies: each named policy's resolved limits.
        trusted_proxies: networks whose ``X-Forwarded-For`` entries are believed.
        client_ip: the client-address resolver built from them.
        response_status: status of a rejection (429 unless configured).
        response_content_type: content type of the rejection body.
        response_body: ``string.Template`` for the body, or ``None`` for RFC 9457 JSON.
        reset_format: ``"delta"`` or ``"epoch"`` for ``X-RateLimit-Reset``.
        header_names: header renames, keyed by ``DEFAULT_HEADER_NAMES`` keys.
        count_preflight: whether CORS preflights are limited.
        limit_websockets: whether WebSocket handshakes are limited.
        source: the file path, ``"<string>"``, ``"<mapping>"`` or ``"<env>"``.
        version: the document's ``version``.
        matcher: the compiled route index (built by the loader from ``routes``).
        outbound: the ``outbound:`` rules, for :class:`~ratelimit_mw.outbound.OutboundLimiter`.
        overload: the ``overload:`` section, or ``None`` (no overload protection).
        priority_key: the compiled ``overload.priority_from`` key, or ``None``.
        defaults: the settings of ``defaults:`` over the built-in ones (``key`` as
            written, ``algorithm``, ``headers``...): what declared limits
            (:meth:`Engine.declare <ratelimit_mw.engine.Engine.declare>`) start from.
        default_key: ``defaults.key`` compiled, for declared limits without a key.
    """

    routes: tuple[Route, ...]
    unmatched: Route | None
    policies: Mapping[str, tuple[Rule, ...]]
    trusted_proxies: tuple[str, ...]
    client_ip: ClientIP
    matcher: Matcher = field(repr=False)
    response_status: int = 429
    response_content_type: str = "application/problem+json"
    response_body: str | None = None
    reset_format: str = "delta"
    header_names: Mapping[str, str] = field(default_factory=_empty)
    count_preflight: bool = False
    limit_websockets: bool = False
    source: str = "<mapping>"
    version: int = 1
    raw_document: Mapping[str, Any] = field(default_factory=_empty, repr=False)
    outbound: tuple[OutboundRule, ...] = ()
    overload: OverloadSpec | None = None
    priority_key: KeySpec | None = None
    defaults: Mapping[str, Any] = field(default_factory=_empty)
    default_key: KeySpec | None = None

    @property
    def document(self) -> dict[str, Any]:
        """The interpolated document as plain data (a fresh copy each time).

        Literal ``${`` appear as ``$${``, as in a file, so
        ``load_policies(ps.document)`` rebuilds an equal set.
        """
        document: dict[str, Any] = _escaped(copy.deepcopy(dict(self.raw_document)))
        return document

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for a request: first match in file order, else ``unmatched``.

        Exempt routes are returned too (the caller checks ``route.exempt``), so an
        exempt route placed first shields later ones.

        Args:
            method: upper-case HTTP method.
            path: the decoded path, after ``root_path``/``SCRIPT_NAME`` is stripped.
        """
        hit = self.matcher.match(method, path)
        if hit is not None:
            return RouteMatch(self.routes[hit[0]], hit[1])
        if self.unmatched is not None:
            return RouteMatch(self.unmatched, {})
        return None

    def explain(self, method: str, path: str) -> dict[str, Any]:
        """What a request would get, for ``ratelimit-mw explain`` and the admin API."""
        method = method.upper()
        found = self.match(method, path)
        out: dict[str, Any] = {"method": method, "path": path}
        if found is None:
            out.update(matched=False, route=None, action="pass")
            return out
        route = found.route
        out.update(
            matched=route is not self.unmatched,
            route=route.template,
            line=route.line,
            params=dict(found.params),
            exempt=route.exempt,
            action="exempt" if route.exempt else ("shadow" if route.shadow else "limit"),
        )
        if not route.exempt:
            out.update(
                policy=route.policy,
                source=str(route.extra.get("source", "yaml")),
                limits=[rule_text(rule) for rule in route.rules],
                key=route.extra.get("key", route.key_spec),
                scope=route.scope,
                cost=route.cost,
                headers=list(route.headers),
                on_backend_error=route.on_backend_error,
                shadow=route.shadow,
            )
            if self.overload is not None:
                out.update(pool=route.pool or "default",
                           priority=route.priority or f"from {self.overload.priority_from or 'default_priority'}")
            if route.plan is not None:  # the limits above are the default plan's
                out["plan"] = {
                    "resolver": route.plan.spec,
                    "default": route.plan.default,
                    "plans": {name: {"policy": variant.policy, "source": "plan",
                                     "limits": [rule_text(rule) for rule in variant.rules]}
                              for name, variant in route.plan.routes.items()},
                }
            if route.exempt_when_spec is not None:
                out["exempt_when"] = route.exempt_when_spec
        return out

    def to_yaml(self) -> str:
        """The document as YAML (comments are not kept); loads back to an equal set."""
        return yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value
