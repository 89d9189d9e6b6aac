"""What ``@limiter.limit`` and ``@limiter.exempt`` record, and what applies to an endpoint.

Decorators run at import time, before any app exists, so they only record: a
declaration per view (or blueprint) with its limits, key and cost. Each app's
engine declares them all (``Engine.declare``) when the extension is initialised on
it, and the hook finds an endpoint's declarations by the view's name, once per
endpoint.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ratelimit_mw.errors import ConfigError, PolicyError

__all__ = [
    "NO_VIEW", "Declaration", "Declarations", "EndpointLimits", "KeyArg", "check_declaration", "normalise_key",
    "view_name",
]

KeyArg = str | Sequence[Any] | Callable[..., Any] | None


class Declaration(NamedTuple):
    """The limits one decorator (or a stack of them with one key and cost) declares.

    ``name`` is the declared route's name in the engine (metrics, logs, admin API):
    ``view:<module>.<function>`` or ``blueprint:<name>``.
    """

    name: str
    limits: tuple[str, ...]
    key: Any
    cost: int


class EndpointLimits(NamedTuple):
    """What applies to one endpoint: whether the YAML routes do, and the declared names."""

    yaml: bool
    names: tuple[str, ...]


#: A request that reached no view (404, 405): the YAML routes only.
NO_VIEW = EndpointLimits(True, ())


def view_name(obj: Any) -> str:
    """The name a decorated view or view class is known by: ``module.name``.

    ``__name__`` rather than ``__qualname__``, as flask-limiter does: ``as_view``
    names every class-based view function after its endpoint, and decorators that use
    ``functools.wraps`` (``login_required``) keep it, so the decorator order is free.
    """
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__name__', type(obj).__name__)}"


def _zero_arg_key(part: Any) -> Any:
    """A key function taking no argument (flask-limiter's ``key_func`` style) gets a
    one-argument wrapper: ours receive the request, and may ignore it."""
    if not callable(part) or isinstance(part, str):
        return part
    try:
        params = inspect.signature(part).parameters.values()
    except (TypeError, ValueError):
        return part
    if any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params):
        return part

    @functools.wraps(part)
    def with_request(request: Any) -> Any:
        return part()

    return with_request


def normalise_key(key: KeyArg) -> Any:
    """The key as the engine takes it: zero-argument functions wrapped, lists kept lists."""
    if isinstance(key, (list, tuple)):
        return [_zero_arg_key(part) for part in key]
    return _zero_arg_key(key)


def check_declaration(name: str, limits: tuple[str, ...], key: Any) -> None:
    """Parse the limits and the key now, as the engine will, so a bad one fails at import."""
    from ratelimit_mw.core.keyspec import compile_key
    from ratelimit_mw.policy.loader import load_policies

    try:
        load_policies({"version": 1, "routes": [{"match": "/", "limits": list(limits)}]}, env={})
        if key is not None:
            compile_key(key)
    except PolicyError as exc:
        raise ConfigError(f"@limiter.limit on {name}: {exc.reason}") from None
    except ConfigError as exc:
        raise ConfigError(f"@limiter.limit on {name}: {exc}") from None


def _join(declarations: list[Declaration], name: str, limits: tuple[str, ...], key: Any, cost: int) -> Declaration:
    """Join a stacked decorator with the same key and cost (one check, all limits
    together), else add a check of its own."""
    for index, old in enumerate(declarations):
        if old.key == key and old.cost == cost:
            declaration = declarations[index] = old._replace(limits=old.limits + limits)
            return declaration
    suffix = f"#{len(declarations) + 1}" if declarations else ""
    declaration = Declaration(name + suffix, limits, key, cost)
    declarations.append(declaration)
    return declaration


class Declarations:
    """Every declaration and exemption of one ``RateLimiter`` (not thread-safe: the
    limiter holds its lock around changes)."""

    def __init__(self) -> None:
        #: view name -> (the function first decorated, unwrapped; its declarations)
        self.views: dict[str, tuple[Any, list[Declaration]]] = {}
        #: blueprint (by identity) -> its declarations
        self.blueprints: dict[int, list[Declaration]] = {}
        self.exempt_views: set[str] = set()
        self.exempt_blueprints: set[int] = set()

    def add_view(self, target: Any, limits: tuple[str, ...], key: Any, cost: int) -> Declaration:
        view = view_name(target)
        origin = inspect.unwrap(target)
        known = self.views.get(view)
        if known is None or known[0] is not origin:  # a new function (an app factory's): start over
            known = self.views[view] = (origin, [])
        return _join(known[1], f"view:{view}", limits, key, cost)

    def add_blueprint(self, blueprint: Any, limits: tuple[str, ...], key: Any, cost: int) -> Declaration:
        return _join(self.blueprints.setdefault(id(blueprint), []), f"blueprint:{blueprint.name}", limits, key, cost)

    def exempt(self, target: Any, is_blueprint: bool) -> None:
        if is_blueprint:
            self.exempt_blueprints.add(id(target))
        else:
            self.exempt_views.add(view_name(target))

    def all(self) -> list[Declaration]:
        found = [d for _, declarations in self.views.values() for d in declarations]
        return found + [d for declarations in self.blueprints.values() for d in declarations]

    def for_endpoint(self, app: Any, endpoint: str | None) -> EndpointLimits:
        """What applies to ``endpoint`` of ``app``: the YAML routes unless exempt, the
        view's own declarations, then its blueprints' (innermost first) unless exempt."""
        if endpoint is None:
            return NO_VIEW
        view = app.view_functions.get(endpoint)
        names: list[str] = []
        exempt = False
        for obj in (view, getattr(view, "view_class", None)):
            if obj is not None:
                name = view_name(obj)
                exempt = exempt or name in self.exempt_views
                names += [d.name for d in self.views.get(name, (None, []))[1]]
        inherited: list[str] = []
        parts = endpoint.split(".")[:-1]
        for end in range(len(parts), 0, -1):  # "outer.inner.view": inner first, then outer
            blueprint = app.blueprints.get(".".join(parts[:end]))
            if blueprint is not None:
                exempt = exempt or id(blueprint) in self.exempt_blueprints
                inherited += [d.name for d in self.blueprints.get(id(blueprint), [])]
        if exempt:
            return EndpointLimits(False, tuple(names))
        return EndpointLimits(True, tuple(names + inherited))
