"""The compiled, immutable form of a policy document.

Everything here is prepared once when the policies load: rules are parsed, keys
compiled, header prefixes rendered. The request path only reads these objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ratelimit_mw.core.keys import KeySpec
from ratelimit_mw.core.rates import Rule

__all__ = [
    "FailureMode",
    "HEADER_STYLES",
    "KeyFunc",
    "PlanChoice",
    "Route",
    "RouteMatch",
]

FailureMode = Literal["allow", "deny", "memory"]
FAILURE_MODES: tuple[FailureMode, ...] = ("allow", "deny", "memory")

#: Header families a route may emit; ``none`` disables headers on allowed responses.
HEADER_STYLES = ("x-ratelimit", "ietf", "draft03", "none")

#: A compiled key: bound to each protocol by the engine, callable on a request view.
KeyFunc = KeySpec


@dataclass(frozen=True, slots=True, eq=False)
class PlanChoice:
    """A route's ``plan:``: how to read the client's plan, and one route per plan.

    Attributes:
        resolver: the compiled resolver (see :mod:`ratelimit_mw.plans`).
        spec: the resolver as written (``call:app.billing:plan_of``, ``header:X-Plan``).
        routes: plan name -> the route compiled with that plan's policy (plans naming
            the same policy share one route object).
        default: the plan used for a missing or unknown value, or a resolver that raised.
    """

    resolver: Any
    spec: str
    routes: Mapping[str, Route]
    default: str


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled entry of ``routes:`` (or the rule for unmatched requests).

    Attributes:
        template: the ``match`` text as written, e.g. ``"GET /users/{id}"``; used as
            the label for metrics and logs, and as the default bucket scope.
        methods: upper-case methods this route applies to; empty means any.
        rules: the limits, checked together and all-or-nothing.
        scope: bucket namespace; routes sharing a scope share buckets.
        key: compiled client key (see :class:`~ratelimit_mw.core.keys.KeySpec`).
        key_spec: the key as written (for ``explain`` and the admin API).
        cost: units each request consumes.
        exempt: never limited, no headers.
        policy: name of the named policy used, if any.
        headers: header styles to emit (subset of :data:`HEADER_STYLES`).
        on_backend_error: failure mode when the backend cannot answer.
        shadow: decide and report, but never reject (dry-run rollout).
        line: line of the route in its file (for error messages and ``explain``).
        priority: its overload class (``priority:``), or ``None``: the request's.
        pool: its overload pool (``pool:``), or ``None``: the default pool.
        plan: the ``plan:`` choice, when the route's limits depend on the client's plan
            (the route's own ``rules`` are then the default plan's).
        exempt_when: ``request -> truthy`` exempts a request after the route matched.
        exempt_when_spec: ``exempt_when`` as written.
    """

    template: str
    methods: frozenset[str]
    rules: tuple[Rule, ...]
    scope: str
    key: KeyFunc
    key_spec: str = "ip"
    cost: int = 1
    exempt: bool = False
    policy: str | None = None
    headers: tuple[str, ...] = ("x-ratelimit", "ietf")
    on_backend_error: FailureMode = "allow"
    shadow: bool = False
    line: int | None = None
    priority: str | None = None
    pool: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    plan: PlanChoice | None = field(default=None, compare=False, hash=False)
    exempt_when: Callable[[Any], object] | None = field(default=None, compare=False, hash=False)
    exempt_when_spec: str | None = None


class RouteMatch(NamedTuple):
    """A route plus the path parameters the match captured.

    A NamedTuple: built on every request, where a frozen dataclass costs several
    times more to construct (see README, Design).
    """

    route: Route
    params: dict[str, str]
