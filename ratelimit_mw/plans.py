"""Per-client plans and ``exempt_when``: what a matched route does before it checks.

A route with ``plan:`` is compiled once per plan when policies load (each plan's
policy gives its limits); a request reads its plan with the resolver and runs that
plan's :class:`~ratelimit_mw.engine.Plan`, so the request still runs one check. A
missing or unknown plan, or a resolver that raises, falls to the default plan:
the client is never unlimited because its plan could not be read. Unknown values
are logged once each (bounded: they may come from a client's header), a raising
resolver once per failure.

``exempt_when`` runs after the route matched; a truthy answer passes the request
through untouched. One that raises does **not** exempt (logged once per failure):
a failing check for "staff" must not lift everybody's limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ratelimit_mw import log
from ratelimit_mw.core.keys import Access
from ratelimit_mw.core.keyspec import TOKEN, import_callable
from ratelimit_mw.errors import ConfigError

if TYPE_CHECKING:
    from ratelimit_mw.policy.model import Route
    from ratelimit_mw.verdict import Verdict

__all__ = ["RESOLVER_KINDS", "ExemptWhen", "PlanSwitch", "Resolver", "compile_predicate", "compile_resolver"]

#: Kinds a ``plan:`` resolver may use (key-spec syntax; the value is the plan name).
RESOLVER_KINDS = ("call", "header", "query", "cookie", "user")
#: Most distinct unknown plan values logged per route (they may be client-chosen).
UNKNOWN_LOGGED = 256

_Reader = Callable[[Any], object]


class Resolver:
    """A compiled ``plan:`` spec: bound to each protocol like a key."""

    __slots__ = ("bind", "text")

    def __init__(self, bind: Callable[[Access], _Reader], text: str) -> None:
        self.bind = bind
        self.text = text


def compile_resolver(spec: object) -> Resolver:
    """``call:pkg.mod:func``, ``header:X-Plan``, ``query:plan``, ``cookie:plan``, ``user``,
    or a callable ``f(request) -> plan name | None``.

    Raises:
        ConfigError: an unknown kind, a missing name, or a ``call:`` that cannot be imported.
    """
    if callable(spec):
        func = spec
        name = getattr(spec, "__qualname__", type(spec).__qualname__)
        return Resolver(lambda access: _calling(func, access), f"{spec.__module__}:{name}")
    if not isinstance(spec, str):
        raise ConfigError(f"a plan resolver is a spec such as 'call:app.billing:plan_of' or 'header:X-Plan', "
                          f"not {type(spec).__name__}")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in RESOLVER_KINDS:
        raise ConfigError(f"unknown plan resolver kind {kind!r} in {spec!r}; expected one of: "
                          f"{', '.join(RESOLVER_KINDS)}")
    if kind == "user":
        if sep:
            raise ConfigError(f"plan resolver {spec!r}: 'user' takes no argument")
        return Resolver(lambda access: access.user, text)
    if not arg:
        raise ConfigError(f"plan resolver {spec!r}: {kind!r} needs a name, e.g. 'header:X-Plan'")
    if kind == "call":
        target, _ = import_callable(arg, spec)
        return Resolver(lambda access: _calling(target, access), text)
    if kind in ("header", "cookie") and not TOKEN.fullmatch(arg):
        raise ConfigError(f"plan resolver {spec!r}: {arg!r} is not a valid {kind} name")
    if kind == "header":
        return Resolver(lambda access: access.header(arg.lower()), text)
    if kind == "query":
        return Resolver(lambda access: _viewing(access, lambda view: view.query(arg)), text)
    return Resolver(lambda access: _viewing(access, lambda view: view.cookie(arg)), text)


def _calling(func: Callable[[Any], object], access: Access) -> _Reader:
    request_of = access.request
    return lambda source: func(request_of(source))


def _viewing(access: Access, read: Callable[[Any], object]) -> _Reader:
    view_of = access.view
    return lambda source: read(view_of(source))


def compile_predicate(spec: object) -> tuple[Callable[[Any], object], str]:
    """An ``exempt_when``: a callable, or ``call:pkg.mod:func`` (imported now)."""
    if callable(spec):
        return spec, f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', type(spec).__qualname__)}"
    if isinstance(spec, str) and spec.strip().startswith("call:"):
        text = spec.strip()
        func, _ = import_callable(text[5:].strip(), text)
        return func, text
    raise ConfigError(f"exempt_when must be 'call:package.module:function' or a callable, got {spec!r}")


class PlanSwitch:
    """The plan of a route with ``plan:``: read the client's plan, run that plan's check."""

    __slots__ = ("default", "plans", "read", "route", "unknown")

    def __init__(self, route: Route, read: _Reader, plans: dict[str, Any], default: Any) -> None:
        self.route = route
        self.read = read
        self.plans = plans
        self.default = default
        self.unknown: set[str] = set()

    def pick(self, source: Any) -> Any:
        """The plan for this request: its plan's, else the default plan's."""
        try:
            value = self.read(source)
        except Exception as exc:  # the app's resolver failed: the default plan, never unlimited
            log.logger.error(log.PLAN_ERROR, route=self.route.template, resolver=self.route.plan.spec  # type: ignore[union-attr]
                             if self.route.plan else "", error=type(exc).__name__, detail=str(exc)[:200])
            return self.default
        if value is None:
            return self.default
        name = value if type(value) is str else str(value)
        plan = self.plans.get(name)
        if plan is None:
            name = name.strip()
            plan = self.plans.get(name)
            if plan is None:
                if name and name not in self.unknown and len(self.unknown) < UNKNOWN_LOGGED:
                    self.unknown.add(name)
                    log.logger.warning(log.PLAN_UNKNOWN, route=self.route.template, plan=name[:100])
                return self.default
        return plan

    def decide(self, source: Any) -> Verdict | None:
        return self.pick(source).decide(source)  # type: ignore[no-any-return]

    async def adecide(self, source: Any) -> Verdict | None:
        return await self.pick(source).adecide(source)  # type: ignore[no-any-return]


class ExemptWhen:
    """A matched route's plan behind its ``exempt_when`` predicate; ``observe`` counts
    the requests it exempts (the engine's ``observe``)."""

    __slots__ = ("observe", "plan", "predicate", "request_of", "route")

    def __init__(self, route: Route, plan: Any, predicate: Callable[[Any], object],
                 request_of: Callable[[Any], Any], observe: Callable[[Route, str, float], None]) -> None:
        self.observe = observe
        self.route = route
        self.plan = plan
        self.predicate = predicate
        self.request_of = request_of

    def exempt(self, source: Any) -> bool:
        try:
            exempt = bool(self.predicate(self.request_of(source)))
        except Exception as exc:  # a failing predicate must not lift the limit
            log.logger.error(log.EXEMPT_ERROR, route=self.route.template, exempt_when=self.route.exempt_when_spec,
                             error=type(exc).__name__, detail=str(exc)[:200])
            return False
        if exempt:
            self.observe(self.route, "exempt", 0.0)
        return exempt

    def decide(self, source: Any) -> Verdict | None:
        return None if self.exempt(source) else self.plan.decide(source)  # type: ignore[no-any-return]

    async def adecide(self, source: Any) -> Verdict | None:
        return None if self.exempt(source) else await self.plan.adecide(source)  # type: ignore[no-any-return]
