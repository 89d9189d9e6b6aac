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
from dataclasses import dataclass
from time import perf_counter
from typing import Any, NamedTuple

from ratelimit_mw import log
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import HeaderRenderer, retry_after_seconds
from ratelimit_mw.limiter import Limiter, Quota
from ratelimit_mw.observe import Observer
from ratelimit_mw.policy.model import Route
from ratelimit_mw.types import RequestView

__all__ = ["Engine", "Rejection", "Verdict", "build_engine"]

PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"


@dataclass(frozen=True, slots=True)
class _Prepared:
    route: Route
    quota: Quota
    renderer: HeaderRenderer


class Verdict(NamedTuple):
    """The engine's answer for one limited request.

    Attributes:
        route: the matched route.
        decision: the limiter's decision.
        headers: header pairs to add (to the app's response, or to the 429).
        reject: answer 429 now instead of calling the app.
        delay: seconds to hold the request first (leaky bucket shaping).
    """

    route: Route
    decision: Decision
    headers: list[tuple[str, str]]
    reject: bool
    delay: float


class Rejection(NamedTuple):
    """A ready-to-send 429 (or configured status)."""

    status: int
    headers: list[tuple[str, str]]
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
        #: Optional :class:`~ratelimit_mw.observe.Observer` (metrics); ``None``: no cost.
        self.observer: Observer | None = None
        self._state: tuple[Any, dict[int, _Prepared]] = (None, {})
        self.set_policies(policies)

    # -- policies --------------------------------------------------------------------

    @property
    def policies(self) -> Any:
        """The active policy set."""
        return self._state[0]

    def set_policies(self, policies: Any) -> None:
        """Prepare and atomically activate a new policy set."""
        prepared: dict[int, _Prepared] = {}
        routes = list(policies.routes)
        if policies.unmatched is not None:
            routes.append(policies.unmatched)
        names = policies.header_names
        reset = policies.reset_format
        for route in routes:
            if route.exempt or not route.rules:
                continue
            prepared[id(route)] = _Prepared(
                route,
                self.limiter.quota(route.rules, route.scope),
                HeaderRenderer(route.rules, route.headers, names=names, reset=reset),
            )
        self._state = (policies, prepared)

    # -- per request -----------------------------------------------------------------

    def _select(self, request: RequestView) -> tuple[_Prepared, str] | None:
        policies, prepared = self._state
        method = request.method
        if (
            method == "OPTIONS"
            and not policies.count_preflight
            and request.header("access-control-request-method") is not None
        ):
            return None
        match = policies.match(method, request.path)
        if match is None:
            return None
        entry = prepared.get(id(match.route))
        if entry is None:  # exempt
            if self.observer is not None:
                self.observer.decision(match.route.template, match.route.policy or "", "exempt", 0.0)
            return None
        return entry, match.route.key(request)

    def _observe(self, route: Route, decision: Decision, shadowed: bool, seconds: float) -> None:
        assert self.observer is not None
        if decision.degraded:
            outcome = "degraded"
        elif shadowed:
            outcome = "shadow"
        else:
            outcome = "allowed" if decision.allowed else "limited"
        self.observer.decision(route.template, route.policy or "", outcome, seconds)

    def _finish(self, entry: _Prepared, key: str, decision: Decision, started: float) -> Verdict:
        route = entry.route
        if self.observer is not None:
            self._observe(route, decision, route.shadow and not decision.allowed, perf_counter() - started)
        if decision.degraded and decision.allowed:
            return Verdict(route, decision, [], False, 0.0)
        reject = not decision.allowed
        if reject:
            self._denials.denied(
                self._wall(), route.template, self.limiter.hash_key(key),
                policy=route.policy, limit=decision.rule.name if decision.rule else None,
                retry_after=round(decision.retry_after, 3), shadow=route.shadow,
            )
            if route.shadow:
                decision = decision._replace(allowed=True, retry_after=0.0)
                reject = False
        headers = entry.renderer.render(decision, self._wall())
        return Verdict(route, decision, headers, reject, decision.delay)

    def decide(self, request: RequestView) -> Verdict | None:
        """Decide for ``request`` (sync backends); ``None`` means pass through untouched."""
        try:
            selected = self._select(request)
            if selected is None:
                return None
            entry, key = selected
            started = perf_counter() if self.observer is not None else 0.0
            decision = self.limiter.check(
                key, entry.quota, cost=entry.route.cost, on_error=entry.route.on_backend_error
            )
            return self._finish(entry, key, decision, started)
        except Exception as exc:  # a limiter bug must never become a 500
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=request.path)
            return None

    async def adecide(self, request: RequestView) -> Verdict | None:
        """Async :meth:`decide`."""
        try:
            selected = self._select(request)
            if selected is None:
                return None
            entry, key = selected
            started = perf_counter() if self.observer is not None else 0.0
            decision = await self.limiter.acheck(
                key, entry.quota, cost=entry.route.cost, on_error=entry.route.on_backend_error
            )
            return self._finish(entry, key, decision, started)
        except Exception as exc:
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=request.path)
            return None

    def rejection(self, verdict: Verdict) -> Rejection:
        """The 429 for a rejected verdict: status, headers and body."""
        policies = self._state[0]
        decision = verdict.decision
        retry = retry_after_seconds(decision.retry_after)
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
        headers = [
            ("Content-Type", policies.response_content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *verdict.headers,
        ]
        return Rejection(status, headers, body)


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
