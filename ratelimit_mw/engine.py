"""What both middlewares share: request -> route -> key -> decision -> headers.

The ASGI and WSGI adapters only translate between their protocol and this engine,
so behaviour (and its tests) is the same for both. Everything that does not vary
per request (quotas, header renderers, 429 templates) is prepared when policies
are set; a policy swap replaces one tuple, so a request in flight sees either the
old set or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import string
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any, NamedTuple, cast

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import HeaderRenderer, retry_after_seconds
from ratelimit_mw.core.keys import KeyReader, environ_key_reader, scope_key_reader
from ratelimit_mw.limiter import Limiter, Quota
from ratelimit_mw.observe import Observer
from ratelimit_mw.policy.model import Route
from ratelimit_mw.requestview import ASGIRequest, WSGIRequest
from ratelimit_mw.types import RequestView

__all__ = ["Engine", "Rejection", "Verdict", "build_engine"]

PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"


#: Most (method, path) -> route answers remembered per policy set; past it the cache
#: starts over, so a scan of random paths costs memory for at most this many entries.
ROUTE_CACHE_SIZE = 4096
_METHODS_PER_PATH = 16
#: Most distinct 429 bodies remembered per policy set.
REJECTION_CACHE_SIZE = 1024


class _Prepared:
    """What one route needs per request, flattened so the hot path reads slots only."""

    __slots__ = ("route", "quota", "renderer", "render", "render_raw", "key", "cost", "on_error", "shadow", "exempt",
                 "wall", "scope_lane", "environ_lane")

    def __init__(self, route: Route, quota: Quota | None, renderer: HeaderRenderer | None) -> None:
        self.route = route
        self.quota = quota
        self.renderer = renderer
        if renderer is not None:
            self.render = renderer.renderer(raw=False)
            self.render_raw = renderer.renderer(raw=True)
        self.key = route.key
        self.cost = route.cost
        self.on_error = route.on_backend_error
        self.shadow = route.shadow
        self.exempt = quota is None
        self.wall = renderer is not None and renderer.needs_wall_clock
        #: In-process fast lanes (see Engine.scope_lanes): ASGI scope -> raw pairs, WSGI environ
        #: -> str pairs; ``None`` where the route is not eligible.
        self.scope_lane: Lane | None = None
        self.environ_lane: Lane | None = None

    def add_lanes(self, limiter: Limiter) -> None:
        """Build this route's fast lanes, if it has the plain shape: limited, not shadowed,
        no shaping (see ``MemoryBackend.lane``), headers that need no wall clock (any
        families; not epoch resets)."""
        if self.quota is None or self.renderer is None or self.shadow or self.wall:
            return
        key = self.key
        for raw in (True, False):
            renders = self.renderer.allowed_renderers(raw)
            if renders is None:
                return
            reader: KeyReader | None
            if raw:
                reader = scope_key_reader(key) or (lambda scope: key(ASGIRequest(scope)))
                self.scope_lane = limiter.lane(self.quota, self.cost, reader, renders)
            else:
                reader = environ_key_reader(key) or (lambda environ: key(WSGIRequest(environ)))
                self.environ_lane = limiter.lane(self.quota, self.cost, reader, renders)


#: A fast lane: the request's scope or environ -> header pairs, or ``None`` (take the
#: general path). See :attr:`Engine.lanes`.
Lane = Callable[[Any], "list[tuple[Any, Any]] | None"]


def _pass_through(source: Any) -> list[tuple[Any, Any]]:
    """The lane of a path that no route limits (no route matches it, or an exempt one
    while no observer counts exempt requests): nothing to check, no header to add.

    Why a lane: most apps limit a few routes and serve many more, and each of those
    requests should cost the middleware a dict lookup, not a request view, the route
    cache and the preflight test (in process: 1.09-1.36 us added to bare Starlette
    before, see the README's Design)."""
    return []


class _State(NamedTuple):
    """One policy set and everything prepared from it; replaced as a whole on a swap."""

    policies: Any
    prepared: dict[int, _Prepared]
    #: path -> method -> the route's entry, or ``None`` (no route: pass through). By path
    #: first: two lookups of strings cost less than building and hashing a tuple.
    routes: dict[str, dict[str, _Prepared | None]]
    #: the parts of a 429 that do not change with the request (see Engine.rejection)
    rejections: dict[tuple[Any, ...], tuple[bytes, list[tuple[str, str]], list[tuple[bytes, bytes]]]]
    #: path -> method -> fast lane, for the cached routes that have one (ASGI, WSGI)
    scope_lanes: dict[str, dict[str, Lane]]
    environ_lanes: dict[str, dict[str, Lane]]
    #: paths seen once and not cached yet (see Engine._route)
    seen: set[str]


_MISS: Any = object()
_NO_METHODS: dict[str, Any] = {}
_new = tuple.__new__


class Verdict(NamedTuple):
    """The engine's answer for one limited request.

    Attributes:
        route: the matched route.
        decision: the limiter's decision.
        headers: header pairs to add (to the app's response, or to the 429): ``str``
            pairs, or lower-case latin-1 ``bytes`` pairs when ``raw=True`` was asked.
        reject: answer 429 now instead of calling the app.
        delay: seconds to hold the request first (leaky bucket shaping).
    """

    route: Route
    decision: Decision
    headers: list[tuple[Any, Any]]
    reject: bool
    delay: float


class Rejection(NamedTuple):
    """A ready-to-send 429 (or configured status)."""

    status: int
    headers: list[tuple[Any, Any]]
    body: bytes


class Engine:
    """Applies a policy set with a limiter.

    Args:
        policies: a loaded ``PolicySet``.
        limiter: the :class:`Limiter` holding the backend.
        wall_clock: time source for epoch-style reset headers and log aggregation.
    """

    def __init__(
        self, policies: Any, limiter: Limiter, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.limiter = limiter
        self._wall = wall_clock
        self._denials = log.DenialLog()
        self._observer: Observer | None = None
        #: Checks never wait on I/O (memory backend): async callers may use :meth:`admit`.
        self.inline = limiter.in_process
        #: Lower-case names of every header any policy set so far may emit (``str`` and
        #: latin-1 ``bytes``): the adapters skip their de-duplication when none of the
        #: app's headers is in here. Only grows, so it covers a verdict from before a swap.
        self.header_names: frozenset[str] = frozenset()
        self.raw_header_names: frozenset[bytes] = frozenset()
        self._state = _State(None, {}, {}, {}, {}, {}, set())
        #: Fast lanes by path and method, for the adapters: ``scope_lanes`` (ASGI, raw
        #: pairs) and ``environ_lanes`` (WSGI, str pairs). A lane runs the whole allowed
        #: path of a plain in-process route in a few frames and answers ``None`` for
        #: anything else (see ``MemoryBackend.lane``); it is filled in as routes are first
        #: matched, and reports its decisions to the observer, if any.
        self.scope_lanes: dict[str, dict[str, Lane]] = {}
        self.environ_lanes: dict[str, dict[str, Lane]] = {}
        #: Use fast lanes. ``False`` (for diagnostics and benchmarks): routes matched from
        #: now on get none, and the next set_policies drops those already registered, so
        #: every request takes the general path.
        self.lanes_enabled = True
        self.set_policies(policies)

    @property
    def observer(self) -> Observer | None:
        """Optional :class:`~ratelimit_mw.observe.Observer` (metrics); ``None``: no cost."""
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        state = self._state  # the lanes registered so far were built for the old observer
        state.routes.clear()
        state.scope_lanes.clear()
        state.environ_lanes.clear()

    def _observed(self, lane: Lane, route: Route) -> Lane:
        """``lane`` reporting its allowed decisions to the observer, as ``Engine.admit`` does
        (outcome ``allowed``, the seconds the lane took). A failing observer is logged and
        the request still gets its headers: its state is already stored."""
        observer = self._observer
        if observer is None:
            return lane
        template, policy = route.template, route.policy or ""

        def observed(source: Any) -> list[tuple[Any, Any]] | None:
            started = perf_counter()
            headers = lane(source)
            if headers is not None:
                try:
                    observer.decision(template, policy, "allowed", perf_counter() - started)
                except Exception as exc:
                    log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=template)
            return headers

        return observed

    # -- policies --------------------------------------------------------------------

    @property
    def policies(self) -> Any:
        """The active policy set."""
        return self._state.policies

    def set_policies(self, policies: Any) -> None:
        """Prepare and atomically activate a new policy set (with an empty route cache)."""
        prepared: dict[int, _Prepared] = {}
        routes = list(policies.routes)
        if policies.unmatched is not None:
            routes.append(policies.unmatched)
        names = policies.header_names
        reset = policies.reset_format
        raw_names = set(self.raw_header_names)
        for route in routes:
            if route.exempt or not route.rules:
                prepared[id(route)] = _Prepared(route, None, None)
                continue
            renderer = HeaderRenderer(route.rules, route.headers, names=names, reset=reset)
            raw_names.update(renderer.raw_names)
            entry = prepared[id(route)] = _Prepared(route, self.limiter.quota(route.rules, route.scope), renderer)
            entry.add_lanes(self.limiter)
        self.raw_header_names = frozenset(raw_names)
        self.header_names = frozenset(n.decode("latin-1") for n in raw_names)
        state = self._state = _State(policies, prepared, {}, {}, {}, {}, set())
        self.scope_lanes, self.environ_lanes = state.scope_lanes, state.environ_lanes

    # -- per request -----------------------------------------------------------------

    def _route(self, state: _State, method: str, path: str) -> _Prepared | None:
        """The prepared route for (method, path), remembered in the state's bounded cache
        (at most ``ROUTE_CACHE_SIZE`` paths, 16 methods each) from the second time the
        path is seen.

        Why not the first: under a templated route (``/items/{id}``) most paths may
        never come again, and caching each one (three dicts, then a clear of thousands,
        and the garbage collections those dicts set off) cost more than matching. With
        100,000 distinct ids, in process: 18.1-18.3 us per request before, 13.8-14.0 us
        with this doorkeeper and :meth:`_uncached_lane` (bare Starlette 7.5-8.1 us). A
        path that repeats is cached on its second request, so a hot path pays one extra
        match. The doorkeeper set is bounded like the cache.
        """
        match = state.policies.match(method, path)
        entry = None if match is None else state.prepared.get(id(match.route))
        seen = state.seen
        if path not in seen:
            if len(seen) >= ROUTE_CACHE_SIZE:
                seen.clear()
            seen.add(path)
            return entry
        cache = state.routes
        methods = cache.get(path)
        if methods is None:
            if len(cache) >= ROUTE_CACHE_SIZE:
                cache.clear()
                state.scope_lanes.clear()
                state.environ_lanes.clear()
            methods = cache[path] = {}
        elif len(methods) >= _METHODS_PER_PATH:  # methods are client-chosen text too
            methods.clear()
            state.scope_lanes.pop(path, None)
            state.environ_lanes.pop(path, None)
        methods[method] = entry
        if method != "OPTIONS" and self.lanes_enabled:  # a preflight may pass untouched
            if entry is None or (entry.exempt and self._observer is None):  # nothing to check, count or add
                state.scope_lanes.setdefault(path, {})[method] = _pass_through
                state.environ_lanes.setdefault(path, {})[method] = _pass_through
            else:
                if entry.scope_lane is not None:
                    state.scope_lanes.setdefault(path, {})[method] = self._observed(entry.scope_lane, entry.route)
                if entry.environ_lane is not None:
                    state.environ_lanes.setdefault(path, {})[method] = self._observed(entry.environ_lane, entry.route)
        return entry

    def _select(self, request: RequestView) -> _Prepared | None:
        state = self._state
        method = request.method
        if (
            method == "OPTIONS"
            and not state.policies.count_preflight
            and request.header("access-control-request-method") is not None
        ):
            return None
        path = request.path
        entry: _Prepared | None = state.routes.get(path, _NO_METHODS).get(method, _MISS)
        if entry is _MISS:
            entry = self._route(state, method, path)
        if entry is None:
            return None
        if entry.exempt:
            if self._observer is not None:
                route = entry.route
                self._observer.decision(route.template, route.policy or "", "exempt", 0.0)
            return None
        return entry

    def _observe(self, route: Route, decision: Decision, shadowed: bool, seconds: float) -> None:
        assert self._observer is not None
        if decision.degraded:
            outcome = "degraded"
        elif shadowed:
            outcome = "shadow"
        else:
            outcome = "allowed" if decision.allowed else "limited"
        self._observer.decision(route.template, route.policy or "", outcome, seconds)

    def _finish(self, entry: _Prepared, key: str, decision: Decision, started: float, raw: bool) -> Verdict:
        route = entry.route
        if self._observer is not None:
            self._observe(route, decision, entry.shadow and not decision.allowed, perf_counter() - started)
        if decision.allowed:
            if decision.degraded:
                return Verdict(route, decision, [], False, 0.0)
            reject = False
        else:
            self._denials.denied(
                self._wall(), route.template, self.limiter.hash_key(key),
                policy=route.policy, limit=decision.rule.name if decision.rule else None,
                retry_after=round(decision.retry_after, 3), shadow=route.shadow,
            )
            reject = True
            if entry.shadow:
                decision = decision._replace(allowed=True, retry_after=0.0)
                reject = False
        wall = self._wall() if entry.wall else 0.0
        headers = entry.render_raw(decision, wall) if raw else entry.render(decision, wall)
        return Verdict(route, decision, headers, reject, decision.delay)

    def decide(self, request: RequestView, *, raw: bool = False) -> Verdict | None:
        """Decide for ``request`` (sync backends); ``None`` means pass through untouched.

        ``raw=True`` renders the headers as lower-case latin-1 ``bytes`` pairs (ASGI).
        """
        return cast("Verdict | None", self.admit(request, raw=raw, verdict=True))

    def admit(
        self, request: RequestView, *, raw: bool = False, verdict: bool = False
    ) -> Verdict | list[tuple[Any, Any]] | None:
        """:meth:`decide` for the adapters (sync backends), with the common case made cheap.

        Returns ``None`` (pass through untouched), a ``list`` of header pairs (allowed at
        once: call the app and add these), or a :class:`Verdict` for everything else
        (reject, delay, degraded). Same decision as :meth:`decide`, without building a
        Verdict for the allowed request; ``verdict=True`` always builds one.
        """
        try:
            method = request.method
            entry = self._state.routes.get(request.path, _NO_METHODS).get(method)
            if entry is None or entry.exempt or method == "OPTIONS":  # only a limited, cached route skips this
                entry = self._select(request)
                if entry is None:
                    return None
                if not verdict and self._observer is None and self.lanes_enabled:
                    # a path not cached (yet): the route's lane decides, as it does once cached
                    # (_select has passed over an uncounted preflight already)
                    headers = self._uncached_lane(entry, request, raw)
                    if headers is not None:
                        return headers
            key = entry.key(request)
            observer = self._observer
            started = perf_counter() if observer is not None else 0.0
            decision = self.limiter.check(key, entry.quota, cost=entry.cost, on_error=entry.on_error)  # type: ignore[arg-type]
            if observer is None and decision.allowed and not decision.degraded and not entry.wall:
                # the common case of _finish, written out: nothing to observe, log or shadow
                headers = entry.render_raw(decision, 0.0) if raw else entry.render(decision, 0.0)
                if not verdict and not decision.delay:
                    return headers
                return _new(Verdict, (entry.route, decision, headers, False, decision.delay))  # type: ignore[no-any-return]
            return self._finish(entry, key, decision, started, raw)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=request.path)
            return None

    @staticmethod
    def _uncached_lane(entry: _Prepared, request: RequestView, raw: bool) -> list[tuple[Any, Any]] | None:
        """Run ``entry``'s lane for a request whose path is not in the route cache: the
        headers of a plain allowed request, or ``None`` (no lane, or the lane stepped
        aside: the general path decides). Paths under a templated route may never come
        again (see :meth:`_route`); they should not pay for the general path."""
        try:
            if raw:
                if entry.scope_lane is not None and type(request) is ASGIRequest:
                    return entry.scope_lane(request.scope)
            elif entry.environ_lane is not None and type(request) is WSGIRequest:
                return entry.environ_lane(request.environ)
        except Exception as exc:  # as in the adapters: a failing lane hands over to the general path
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=request.path)
        return None

    async def adecide(self, request: RequestView, *, raw: bool = False) -> Verdict | None:
        """Async :meth:`decide`."""
        return cast("Verdict | None", await self.aadmit(request, raw=raw, verdict=True))

    async def aadmit(
        self, request: RequestView, *, raw: bool = False, verdict: bool = False
    ) -> Verdict | list[tuple[Any, Any]] | None:
        """Async :meth:`admit` (remote backends): the same answers, awaiting the check."""
        try:
            method = request.method
            entry = self._state.routes.get(request.path, _NO_METHODS).get(method)
            if entry is None or entry.exempt or method == "OPTIONS":  # only a limited, cached route skips this
                entry = self._select(request)
                if entry is None:
                    return None
            key = entry.key(request)
            observer = self._observer
            started = perf_counter() if observer is not None else 0.0
            decision = await self.limiter.acheck(key, entry.quota, cost=entry.cost, on_error=entry.on_error)  # type: ignore[arg-type]
            if observer is None and decision.allowed and not decision.degraded and not entry.wall:
                headers = entry.render_raw(decision, 0.0) if raw else entry.render(decision, 0.0)
                if not verdict and not decision.delay:
                    return headers
                return _new(Verdict, (entry.route, decision, headers, False, decision.delay))  # type: ignore[no-any-return]
            return self._finish(entry, key, decision, started, raw)
        except Exception as exc:
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=request.path)
            return None

    def rejection(self, verdict: Verdict, *, raw: bool = False) -> Rejection:
        """The 429 for a rejected verdict: status, headers and body.

        ``raw=True``: latin-1 ``bytes`` header pairs, for a verdict decided with ``raw=True``.
        The body and its own headers depend on a few values only (the whole seconds
        to wait, the violated limits, and for a custom template the numbers it shows):
        they are built once per distinct set and remembered with the policy set.
        """
        state = self._state
        policies = state.policies
        decision = verdict.decision
        retry = retry_after_seconds(decision.retry_after)
        if policies.response_body is None:
            ident: tuple[Any, ...] = (retry, decision.violated)
        else:
            ident = (retry, decision.violated, decision.limit, decision.remaining)
        cache = state.rejections
        parts = cache.get(ident)
        if parts is None:
            if len(cache) >= REJECTION_CACHE_SIZE:
                cache.clear()
            parts = cache[ident] = self._rejection_parts(policies, decision, retry)
        body, own, own_raw = parts
        return Rejection(policies.response_status, [*(own_raw if raw else own), *verdict.headers], body)

    @staticmethod
    def _rejection_parts(
        policies: Any, decision: Decision, retry: int
    ) -> tuple[bytes, list[tuple[str, str]], list[tuple[bytes, bytes]]]:
        status = policies.response_status
        body_template = policies.response_body
        if body_template is None:
            body = json.dumps(
                {
                    "type": PROBLEM_TYPE,
                    "title": "Too Many Requests",
                    "status": status,
                    "detail": f"Rate limit exceeded; retry after {retry} seconds.",
                    "violated-policies": list(decision.violated),
                    "retry_after": retry,
                },
                separators=(",", ":"),
            ).encode()
        else:
            body = string.Template(body_template).safe_substitute(
                {
                    "retry_after": retry,
                    "limit": decision.limit,
                    "remaining": decision.remaining,
                    "policy": ",".join(decision.violated),
                    "status": status,
                }
            ).encode()
        own = [
            ("Content-Type", policies.response_content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        own_raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in own]
        return body, own, own_raw


def build_engine(
    policies: Any = None,
    backend: Any = None,
    limiter: Limiter | None = None,
    *,
    env: Any = None,
    **limiter_options: Any,
) -> Engine:
    """Build an :class:`Engine` from middleware arguments, falling back to the environment.

    ``policies``: a path, YAML text, mapping or PolicySet; if ``None``, the file named
    by ``RATELIMIT_POLICIES``, else ``DEFAULT_RATE_LIMIT`` per ``DEFAULT_WINDOW_SECONDS``
    on every request. ``backend``: a URL or client; if ``None``, ``REDIS_URL`` or memory.
    """
    from ratelimit_mw.errors import ConfigError
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
    return Engine(loaded, limiter)
