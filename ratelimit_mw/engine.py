"""Policies compiled into plans, and the one path a request runs.

When policies are set, each route is compiled once into its parts: a key spec, a
check bound to the limiter's backend (tables or script, quota and failure mode
resolved), and a header renderer. A :class:`Router` binds those parts to one
protocol (the ASGI scope, the WSGI environ, or a request view) as one :class:`Plan`
per route; a request looks its plan up by (method, path) and runs it, and nothing
else decides. A policy swap replaces each router's state as a whole, so a request
in flight sees either the old set or the new one, never a mix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, NamedTuple

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import HeaderRenderer
from ratelimit_mw.core.keys import NO_USER, VIEW_ACCESS, Access, KeyReader
from ratelimit_mw.core.problem import Rejection, Rejections
from ratelimit_mw.core.quota import Quota
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.declared import Declaration, declared_route
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.limiter import BoundCheck, Limiter
from ratelimit_mw.observe import Observer
from ratelimit_mw.overload.admission import GuardedPlan, Overload
from ratelimit_mw.overload.scaling import ladders
from ratelimit_mw.plans import ExemptWhen, PlanSwitch
from ratelimit_mw.policy.model import Route
from ratelimit_mw.settings import env_enabled
from ratelimit_mw.types import RequestView
from ratelimit_mw.verdict import Verdict

__all__ = ["MISS", "NO_METHODS", "Engine", "Plan", "Rejection", "Router", "Verdict", "build_engine"]

#: Most (method, path) -> plan answers remembered per router; past it the cache
#: starts over, so a scan of random paths costs memory for at most this many entries.
ROUTE_CACHE_SIZE = 4096
_METHODS_PER_PATH = 16

_new = tuple.__new__


class _Compiled(NamedTuple):
    """What a route compiles to, whatever the protocol: shared by every router."""

    route: Route
    bound: BoundCheck
    renderer: HeaderRenderer


class Plan:
    """One limited route, bound to one protocol: read the key, check, render.

    :meth:`decide` and its async twin :meth:`adecide` differ only in how they wait
    for the check; the rest is shared. Neither raises for a client's input: keys
    never raise (a failing key function is reported and the request still limited),
    and a bound check answers by the failure policy when its backend fails.
    """

    __slots__ = ("acheck", "check", "cost", "engine", "key", "observer", "render", "route", "shadow")

    def __init__(self, engine: Engine, compiled: _Compiled, key: KeyReader, raw: bool) -> None:
        route = compiled.route
        self.engine = engine
        self.route = route
        self.key = key
        self.check = compiled.bound.check
        self.acheck = compiled.bound.acheck
        self.cost = route.cost
        self.render = compiled.renderer.render_raw if raw else compiled.renderer.render
        self.shadow = route.shadow
        self.observer = engine.observer

    def decide(self, source: Any) -> Verdict | None:
        """Decide for the request whose scope, environ or view is ``source``."""
        observer = self.observer
        started = perf_counter() if observer is not None else 0.0
        key = self.key(source)
        decision = self.check(key, self.cost)
        if observer is None and decision[0] and not decision[8]:  # allowed by the backend: nothing to report
            return _new(Verdict, (self.route, decision, self.render(decision), False, decision[6], None))  # type: ignore[no-any-return]
        return self._finish(key, decision, started)

    async def adecide(self, source: Any) -> Verdict | None:
        """Async :meth:`decide` (remote backends)."""
        observer = self.observer
        started = perf_counter() if observer is not None else 0.0
        key = self.key(source)
        decision = await self.acheck(key, self.cost)
        if observer is None and decision[0] and not decision[8]:
            return _new(Verdict, (self.route, decision, self.render(decision), False, decision[6], None))  # type: ignore[no-any-return]
        return self._finish(key, decision, started)

    def _finish(self, key: str, decision: Decision, started: float) -> Verdict:
        """Everything but the plain allowed answer: observe, log denials, shadow, degrade."""
        route = self.route
        shadowed = self.shadow and not decision.allowed
        if self.observer is not None:
            if decision.degraded:
                outcome = "degraded"
            elif shadowed:
                outcome = "shadow"
            else:
                outcome = "allowed" if decision.allowed else "limited"
            self.engine.observe(route, outcome, perf_counter() - started)
        if decision.allowed:
            headers = [] if decision.degraded else self.render(decision)
            return Verdict(route, decision, headers, False, decision.delay)
        self.engine.denied(route, key, decision)
        if shadowed:
            decision = decision._replace(allowed=True, retry_after=0.0)
        return Verdict(route, decision, self.render(decision), not shadowed, 0.0)


class LeasedPlan(Plan):
    """The plan of a route holding an in-flight limit (``N concurrent``): an admitted
    request's lease rides in ``verdict.slot``, which the adapters release when the
    response ends (as they release an overload slot)."""

    __slots__ = ()

    def decide(self, source: Any) -> Verdict | None:
        return _with_lease(super().decide(source))

    async def adecide(self, source: Any) -> Verdict | None:
        return _with_lease(await super().adecide(source))


def _with_lease(verdict: Verdict | None) -> Verdict | None:
    lease = None if verdict is None else verdict[1].lease
    if lease is None:
        return verdict
    assert verdict is not None
    return _new(Verdict, (verdict[0], verdict[1], verdict[2], verdict[3], verdict[4], lease))  # type: ignore[no-any-return]


class _Exempt:
    """The plan of an exempt route while an observer counts exempt requests."""

    __slots__ = ("engine", "route")

    def __init__(self, engine: Engine, route: Route) -> None:
        self.engine = engine
        self.route = route

    def decide(self, source: Any) -> None:
        self.engine.observe(self.route, "exempt", 0.0)

    async def adecide(self, source: Any) -> None:
        self.decide(source)


class _Preflight:
    """A route's plan for OPTIONS while CORS preflights are not counted: a request
    carrying ``Access-Control-Request-Method`` passes untouched, others are decided."""

    __slots__ = ("plan", "is_preflight")

    def __init__(self, plan: AnyPlan, access: Access) -> None:
        self.plan = plan
        self.is_preflight = access.header("access-control-request-method")

    def decide(self, source: Any) -> Verdict | None:
        return None if self.is_preflight(source) is not None else self.plan.decide(source)

    async def adecide(self, source: Any) -> Verdict | None:
        return None if self.is_preflight(source) is not None else await self.plan.adecide(source)


AnyPlan = Plan | _Exempt | _Preflight | PlanSwitch | ExemptWhen | GuardedPlan


class _RouterState(NamedTuple):
    policies: Any
    #: id(route) -> its plan, or ``None`` (exempt and unobserved: pass through)
    plans: dict[int, AnyPlan | None]
    #: declared name -> its plan (see :meth:`Engine.declare`)
    named: dict[str, AnyPlan]
    #: path -> method -> plan (``None``: no route or nothing to do); by path first:
    #: two lookups of strings cost less than building and hashing a tuple
    routes: dict[str, dict[str, AnyPlan | None]]
    #: paths seen once and not cached yet (see Router._match)
    seen: set[str]


#: What the route cache answers for a (method, path) it does not hold.
MISS: Any = object()
NO_METHODS: dict[str, Any] = {}


class Router:
    """The plans of one protocol, and the route cache that finds them.

    Args:
        engine: the engine whose compiled routes it binds.
        access: how keys read this protocol's request object.
        raw: render headers as lower-case latin-1 ``bytes`` pairs (ASGI).
    """

    def __init__(self, engine: Engine, access: Access, raw: bool) -> None:
        self.engine = engine
        self.access = access
        self.raw = raw
        self._state = _RouterState(None, {}, {}, {}, set())
        #: The route cache: path -> method -> plan (``None``: pass through). The adapters
        #: read it first and call :meth:`plan` on a miss; replaced on a policy swap.
        self.routes: dict[str, dict[str, AnyPlan | None]] = self._state.routes

    def rebuild(self, policies: Any, compiled: dict[int, _Compiled], exempt: list[Route],
                named: dict[str, _Compiled]) -> None:
        """Bind every compiled route to this protocol; activate them all at once.
        A disabled engine binds nothing: every request passes through untouched."""
        engine = self.engine
        plans: dict[int, AnyPlan | None] = {}
        if not engine.enabled:
            compiled, exempt, named = {}, [], {}
        for entry in compiled.values():
            plans[id(entry.route)] = self._bind(entry)
        for entry in compiled.values():
            if entry.route.plan is not None or entry.route.exempt_when is not None:
                plans[id(entry.route)] = self._dress(entry.route, plans)
        for route in exempt:
            plans[id(route)] = _Exempt(engine, route) if engine.observer is not None else None
        overload = engine.overload if engine.enabled else None
        if overload is not None:  # every route but the exempt ones behind its pool's gate
            for route in (*policies.routes, *((policies.unmatched,) if policies.unmatched else ())):
                if not route.exempt:
                    plan = plans.get(id(route)) if route.rules else None
                    ladder = engine.ladders.get(id(route))
                    steps = None if ladder is None else (plan, *(self._bind(entry) for entry in ladder))
                    plans[id(route)] = overload.guard(route, plan, self.access, policies.priority_key, self.raw,
                                                      steps)
        bound: dict[str, AnyPlan] = {name: self._bind(entry) for name, entry in named.items()}
        self._state = state = _RouterState(policies, plans, bound, {}, set())
        self.routes = state.routes

    def _bind(self, entry: _Compiled) -> Plan:
        engine, access, route = self.engine, self.access, entry.route
        if route.key.uses_user and access.user is NO_USER:
            engine.warn_user_key(route)
        kind = LeasedPlan if entry.bound.quota.in_flight else Plan
        return kind(engine, entry, route.key.bind(access, engine.key_error_reporter(route)), self.raw)

    def _dress(self, route: Route, plans: dict[int, AnyPlan | None]) -> AnyPlan:
        """A route's plan behind its ``plan:`` switch and ``exempt_when`` (see ratelimit_mw.plans)."""
        plan = plans[id(route)]
        assert plan is not None  # compiled routes always have a plan
        choice = route.plan
        if choice is not None:
            by_name = {name: plans[id(variant)] for name, variant in choice.routes.items()}
            plan = PlanSwitch(route, choice.resolver.bind(self.access), by_name, by_name[choice.default])
        if route.exempt_when is not None:
            plan = ExemptWhen(route, plan, route.exempt_when, self.access.request, self.engine.observe)
        return plan

    def named(self, name: str) -> AnyPlan | None:
        """The plan of the route declared as ``name`` (:meth:`Engine.declare`), or ``None``:
        not declared, or the engine is disabled."""
        plan = self._state.named.get(name)
        if plan is None:  # declared while a policy swap rebuilt this router: bind it now
            entry = self.engine.named_entry(name)
            if entry is not None and self.engine.enabled:
                plan = self._state.named[name] = self._bind(entry)
        return plan

    def add_named(self, name: str, entry: _Compiled) -> None:
        """Bind one newly declared route (no rebuild of the others)."""
        if self.engine.enabled:
            self._state.named[name] = self._bind(entry)

    @property
    def cached(self) -> int:
        """How many (method, path) answers the route cache holds (bounded; diagnostics)."""
        return sum(len(methods) for methods in self._state.routes.values())

    def plan(self, method: str, path: str) -> AnyPlan | None:
        """The plan for (method, path), or ``None``: pass the request through untouched.

        ``routes.get(path, {}).get(method, MISS)``, then this on a miss, gives the same."""
        state = self._state
        plan: AnyPlan | None = state.routes.get(path, NO_METHODS).get(method, MISS)
        if plan is MISS:
            plan = self._match(state, method, path)
        return plan

    def _match(self, state: _RouterState, method: Any, path: str) -> AnyPlan | None:
        """Match (method, path) against the policies; remember the answer from the second
        time the path is seen, in a bounded cache (at most ``ROUTE_CACHE_SIZE`` paths,
        16 methods each).

        Why not the first: under a templated route (``/items/{id}``) most paths may
        never come again, and caching each one (and clearing thousands) costs more than
        matching. The doorkeeper set is bounded like the cache.
        """
        upper = method if type(method) is str and method.isupper() else str(method).upper()
        match = state.policies.match(upper, path)
        plan = None if match is None else state.plans.get(id(match.route))
        if plan is not None and upper == "OPTIONS" and not state.policies.count_preflight:
            plan = _Preflight(plan, self.access)
        seen = state.seen
        if path not in seen:
            if len(seen) >= ROUTE_CACHE_SIZE:
                seen.clear()
            seen.add(path)
            return plan
        cache = state.routes
        methods = cache.get(path)
        if methods is None:
            if len(cache) >= ROUTE_CACHE_SIZE:
                cache.clear()
            methods = cache[path] = {}
        elif len(methods) >= _METHODS_PER_PATH:  # methods are client-chosen text too
            methods.clear()
        methods[method] = plan
        return plan


class Engine:
    """Applies a policy set with a limiter.

    Args:
        policies: a loaded ``PolicySet``.
        limiter: the :class:`Limiter` holding the backend.
        wall_clock: time source for epoch-style reset headers and log aggregation.
        enabled: limit at all; ``None`` reads ``RATELIMIT_ENABLED`` (default true;
            ``false``, ``0``, ``no``, ``off`` disable). Disabled, every router's
            :meth:`Router.plan` and :meth:`Router.named` answer ``None``: no limits,
            no headers, and no special path in the integrations.
    """

    def __init__(
        self, policies: Any, limiter: Limiter, *, wall_clock: Callable[[], float] = time.time,
        enabled: bool | None = None,
    ) -> None:
        self.limiter = limiter
        self._wall = wall_clock
        self._denials = log.DenialLog()
        self._observer: Observer | None = None
        #: Checks never wait on I/O (memory backend): async callers may run :meth:`Plan.decide`.
        self.inline = limiter.in_process
        #: Lower-case names of every header any policy set so far may emit (``str`` and
        #: latin-1 ``bytes``): the adapters skip their de-duplication when none of the
        #: app's headers is in here. Only grows, so it covers a verdict from before a swap.
        self.header_names: frozenset[str] = frozenset()
        self.raw_header_names: frozenset[bytes] = frozenset()
        self._routers: dict[tuple[int, bool], Router] = {}
        self._user_warned: set[str] = set()
        self._enabled = env_enabled(os.environ) if enabled is None else bool(enabled)
        self._declarations: dict[str, Declaration] = {}
        self._named: dict[str, _Compiled] = {}
        self._policies: Any = None
        self._compiled: dict[int, _Compiled] = {}
        self._exempt: list[Route] = []
        #: The ``overload:`` section's gates (``None``: no overload protection).
        self.overload: Overload | None = None
        #: ``scale_rates:``: id(route) -> its limits compiled at each factor below 1
        #: (see :mod:`ratelimit_mw.overload.scaling`).
        self.ladders: dict[int, list[_Compiled]] = {}
        self.set_policies(policies)

    # -- policies --------------------------------------------------------------------

    @property
    def policies(self) -> Any:
        """The active policy set."""
        return self._policies

    @property
    def enabled(self) -> bool:
        """Whether anything is limited (see the ``enabled`` argument)."""
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        self._enabled = bool(enabled)
        self._rebuild_routers()

    def _rebuild_routers(self) -> None:
        for router in self._routers.values():
            router.rebuild(self._policies, self._compiled, self._exempt, self._named)

    def _compile(self, route: Route, policies: Any, raw_names: set[bytes], quota: Quota | None = None) -> _Compiled:
        """``route`` compiled over ``policies``' header settings; ``quota``: its limits
        scaled (``scale_rates:``), in its own storage slots, instead of its own."""
        quota = quota or self.limiter.quota(route.rules, route.scope)
        renderer = HeaderRenderer(quota.rules, route.headers, names=policies.header_names,
                                  reset=policies.reset_format, wall_clock=self._wall)
        raw_names.update(renderer.raw_names)
        return _Compiled(route, self.limiter.bind(quota, on_error=route.on_backend_error), renderer)

    def _set_header_names(self, raw_names: set[bytes]) -> None:
        self.raw_header_names = frozenset(raw_names)
        self.header_names = frozenset(n.decode("latin-1") for n in raw_names)

    def set_policies(self, policies: Any) -> None:
        """Compile a new policy set and activate it in every router at once; declared
        routes (:meth:`declare`) are compiled again over its defaults."""
        compiled: dict[int, _Compiled] = {}
        exempt: list[Route] = []
        routes = list(policies.routes)
        if policies.unmatched is not None:
            routes.append(policies.unmatched)
        raw_names = set(self.raw_header_names)
        for route in routes:
            if route.exempt or not route.rules:
                exempt.append(route)
                continue
            compiled[id(route)] = self._compile(route, policies, raw_names)
            if route.plan is not None:  # one compiled route per plan, picked per request
                for variant in route.plan.routes.values():
                    if id(variant) not in compiled:
                        compiled[id(variant)] = self._compile(variant, policies, raw_names)
        named = {name: self._compile(declared_route(decl, policies), policies, raw_names)
                 for name, decl in list(self._declarations.items())}  # declare() may run in another thread
        self._policies, self._compiled, self._exempt = policies, compiled, exempt
        self._rejections = Rejections(policies)
        spec = getattr(policies, "overload", None)
        self.overload = None if spec is None else Overload(spec, self.limiter.interval_clock, self.overload)
        self.ladders = ladders(spec, compiled, lambda route, quota: self._compile(route, policies, raw_names, quota))
        self._set_header_names(raw_names)
        self._named = named
        self._rebuild_routers()

    # -- declared limits ---------------------------------------------------------------

    def declare(self, name: str, limits: str | Rule | Sequence[str | Rule], *, key: Any = None,
                source: str = "decorator", cost: int = 1) -> None:
        """Register limits declared in code (a decorator, a dependency) as route ``name``.

        The route is compiled like a YAML route over the active policy set's defaults
        (same backend, headers, metrics, admin usage/reset by ``route=name``) and
        survives policy swaps; :meth:`Router.named` gives its plan. Declaring ``name``
        again with the same arguments does nothing; with others, it replaces the route.

        Args:
            name: the route's label and bucket scope, e.g. ``view:myapp.views.index``.
            limits: ``"5/minute"``, ``"1/second;5/minute"``, or a list of rates.
            key: a key spec, chain or callable; ``None``: the policies' default key.
            source: ``decorator`` or ``dependency`` (shown by ``explain``).
            cost: units each request consumes.

        Raises:
            ConfigError: a rate or key that does not parse, naming ``name``.
        """
        decl = Declaration.of(name, limits, key, source, cost)
        if self._declarations.get(name) == decl:
            return
        raw_names = set(self.raw_header_names)
        entry = self._compile(declared_route(decl, self._policies), self._policies, raw_names)
        self._declarations[name] = decl
        self._named[name] = entry
        self._set_header_names(raw_names)
        for router in self._routers.values():
            router.add_named(name, entry)

    def named_entry(self, name: str) -> _Compiled | None:
        """The compiled declared route ``name``, or ``None``."""
        return self._named.get(name)

    @property
    def declared(self) -> dict[str, Route]:
        """The declared routes by name (a copy), for the admin API and ``explain``."""
        return {name: entry.route for name, entry in self._named.items()}

    def router(self, access: Access, *, raw: bool = False) -> Router:
        """The router of one protocol (created once, rebuilt on every policy swap)."""
        ident = (id(access), raw)
        router = self._routers.get(ident)
        if router is None:
            router = self._routers[ident] = Router(self, access, raw)
            router.rebuild(self._policies, self._compiled, self._exempt, self._named)
        return router

    # -- observation and logs --------------------------------------------------------

    @property
    def observer(self) -> Observer | None:
        """Optional :class:`~ratelimit_mw.observe.Observer` (metrics); ``None``: no cost."""
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        self._rebuild_routers()  # plans hold the observer they were built with

    def observe(self, route: Route, outcome: str, seconds: float) -> None:
        """Report one decision (key + check time) to the observer; a failing one is logged."""
        if self._observer is None:
            return
        try:
            self._observer.decision(route.template, route.policy or "", outcome, seconds)
        except Exception as exc:
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=route.template)

    def denied(self, route: Route, key: str, decision: Decision) -> None:
        """Log a denial (aggregated per route and key hash)."""
        self._denials.denied(
            self._wall(), route.template, self.limiter.hash_key(key),
            policy=route.policy, limit=decision.rule.name if decision.rule else None,
            retry_after=round(decision.retry_after, 3), shadow=route.shadow,
        )

    def warn_user_key(self, route: Route) -> None:
        """Log once per route that its ``user`` key can never be read by a protocol
        (plain WSGI, request views): its requests fall to the next key of the chain."""
        if route.template in self._user_warned:
            return
        self._user_warned.add(route.template)
        log.logger.warning(log.USER_KEY_UNAVAILABLE, route=route.template, key=route.key_spec,
                           detail="this protocol knows no users; the next key of the chain (or the "
                                  "shared anonymous bucket) limits these requests")

    @staticmethod
    def key_error_reporter(route: Route) -> Callable[[str, Exception], None]:
        """What a route's keys call when a key function raises: one log line each time."""
        template = route.template

        def report(label: str, exc: Exception) -> None:
            log.logger.error(log.KEY_ERROR, route=template, key_function=label, error=type(exc).__name__,
                             detail=str(exc)[:200])

        return report

    # -- request views ---------------------------------------------------------------

    def decide(self, request: RequestView, *, raw: bool = False) -> Verdict | None:
        """Decide for a request view (sync backends); ``None`` means pass through untouched.

        The same plans the middlewares run, bound to the view. ``raw=True`` renders the
        headers as lower-case latin-1 ``bytes`` pairs. With an ``overload:`` section, an
        admitted verdict holds ``verdict.slot``: call its ``release()`` when the response
        ends, as the middlewares do, or the slot stays taken.
        """
        plan = self.router(VIEW_ACCESS, raw=raw).plan(request.method, request.path)
        return None if plan is None else plan.decide(request)

    async def adecide(self, request: RequestView, *, raw: bool = False) -> Verdict | None:
        """Async :meth:`decide`."""
        plan = self.router(VIEW_ACCESS, raw=raw).plan(request.method, request.path)
        return None if plan is None else await plan.adecide(request)

    # -- 429 -------------------------------------------------------------------------

    def rejection(self, verdict: Verdict, *, raw: bool = False) -> Rejection:
        """The 429 (or configured status) for a rejected verdict, or the 503 of a shed one;
        ``raw=True``: latin-1 ``bytes`` header pairs, for a verdict of a raw router."""
        if verdict.slot is not None:
            return verdict.slot.rejection(raw)  # type: ignore[no-any-return]
        return self._rejections(verdict.decision, verdict.headers, raw)


def build_engine(
    policies: Any = None,
    backend: Any = None,
    limiter: Limiter | None = None,
    *,
    env: Any = None,
    enabled: bool | None = None,
    **limiter_options: Any,
) -> Engine:
    """Build an :class:`Engine` from middleware arguments, falling back to the environment.

    ``policies``: a path, YAML text, mapping or PolicySet; if ``None``, the file named
    by ``RATELIMIT_POLICIES``, else ``DEFAULT_RATE_LIMIT`` per ``DEFAULT_WINDOW_SECONDS``
    on every request. ``backend``: a URL or client; if ``None``, ``REDIS_URL`` or memory.
    ``enabled``: see :class:`Engine`; ``None`` reads ``RATELIMIT_ENABLED`` from ``env``.
    """
    from ratelimit_mw.policy.loader import load_policies, policies_from_env

    environ = os.environ if env is None else env
    if policies is None:
        loaded = policies_from_env(environ)
        if loaded is None:
            raise ConfigError(
                "no policies: pass policies=..., or set RATELIMIT_POLICIES (a YAML file) "
                "or DEFAULT_RATE_LIMIT (and DEFAULT_WINDOW_SECONDS)"
            )
    else:
        loaded = load_policies(policies, env=environ)
    if limiter is None:
        if backend is None:
            backend = environ.get("REDIS_URL") or "memory://"
        limiter = Limiter(backend, **limiter_options)
    elif backend is not None or limiter_options:
        raise ConfigError("give either limiter=... or backend options, not both")
    return Engine(loaded, limiter, enabled=env_enabled(environ) if enabled is None else enabled)
