"""The ``overload:`` section: an adaptive concurrency limit per process, and priority classes.

Parsed once when the policies load into an :class:`OverloadSpec`; the engine turns it
into one :class:`~ratelimit_mw.overload.OverloadGate` per pool. Every value is checked
here, so a mistake names its file, line and field instead of surfacing per request.

``priority_from`` reads a request header (or query, cookie, callable): whoever can set
it can choose their class. Use it behind a proxy that sets or strips the header, or
with a callable over the authenticated user; a route's ``priority:`` wins over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ratelimit_mw.core.rates import parse_duration
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.overload.controllers import ALGORITHMS, ControllerConfig

if TYPE_CHECKING:
    from ratelimit_mw.policy.schema import Checker
    from ratelimit_mw.policy.source import FieldPath

__all__ = ["CONTROLLER_FIELDS", "DEFAULT_POOL", "MODES", "OVERLOAD_FIELDS", "OverloadSpec", "parse_overload_section"]

#: Fields of ``overload:`` (and of each pool under ``pools:``) that shape a controller.
CONTROLLER_FIELDS = ("algorithm", "initial", "min", "max", "latency_target", "warmup", "window", "mode")
OVERLOAD_FIELDS = (*CONTROLLER_FIELDS, "priorities", "default_priority", "priority_from", "pools", "retry_after",
                   "scale_rates")
MODES = ("enforce", "shadow")
#: The pool of every route that names none.
DEFAULT_POOL = "default"
DEFAULT_PRIORITIES = {"critical": 1.0, "high": 0.9, "normal": 0.8, "sheddable": 0.5}


@dataclass(frozen=True, slots=True)
class OverloadSpec:
    """A validated ``overload:`` section.

    Attributes:
        pools: controller configuration per pool (``default`` always exists).
        modes: ``enforce`` or ``shadow`` per pool.
        priorities: class names in order of share, highest first.
        shares: the share of the limit each class may fill, in the order of ``priorities``.
        default_priority: the class of a request nothing else classifies.
        priority_from: a key spec (as written) whose value names the class, or ``None``.
        retry_after: a shed request's ``Retry-After`` is drawn from 1 to this many seconds.
        scale_floor: with ``scale_rates:``, the lowest factor the routes' rate limits are
            scaled by (their pool's limit over its ``max``); ``None``: rates are not scaled.
    """

    pools: Mapping[str, ControllerConfig]
    modes: Mapping[str, str]
    priorities: tuple[str, ...]
    shares: tuple[float, ...]
    default_priority: str
    priority_from: str | tuple[str, ...] | None = None
    retry_after: int = 5
    lines: Mapping[str, int | None] = field(default_factory=dict, compare=False)
    scale_floor: float | None = None


def _number(check: Checker, value: Any, path: FieldPath, what: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        check.fail(path, f"{what} must be a number >= {low:g}, got {value!r}")
    return float(value)


def _seconds(check: Checker, value: Any, path: FieldPath, what: str, *, positive: bool) -> float:
    try:
        seconds = parse_duration(value, what=what)
    except ConfigError as exc:
        check.fail(path, str(exc))
    if positive and seconds <= 0:
        check.fail(path, f"{what} must be more than 0, got {value!r}")
    return seconds


def _controller(
    check: Checker, body: Mapping[str, Any], path: FieldPath, base: ControllerConfig, what: str
) -> tuple[ControllerConfig, str | None]:
    """The controller fields present in ``body`` over ``base``; and the mode, if given."""
    changes: dict[str, Any] = {}
    if "algorithm" in body:
        changes["algorithm"] = check.choice(body["algorithm"], (*path, "algorithm"), "overload algorithm", ALGORITHMS)
    for name in ("initial", "min", "max"):
        if name in body:
            changes[name] = _number(check, body[name], (*path, name), f"{what} {name}", 1)
    if "latency_target" in body:
        changes["latency_target"] = _seconds(check, body["latency_target"], (*path, "latency_target"),
                                             "latency_target", positive=True)
    if "warmup" in body:
        changes["warmup"] = _seconds(check, body["warmup"], (*path, "warmup"), "warmup", positive=False)
    if "window" in body:
        changes["window"] = _seconds(check, body["window"], (*path, "window"), "window", positive=True)
    if changes.get("max", base.max) < changes.get("min", base.min):
        check.fail((*path, "max"), f"{what} max ({changes.get('max', base.max):g}) is below min "
                   f"({changes.get('min', base.min):g})")
    if "initial" not in changes:  # an unset initial follows min/max when they exclude the default
        low, high = changes.get("min", base.min), changes.get("max", base.max)
        changes["initial"] = min(max(base.initial, low), high)
    elif not changes.get("min", base.min) <= changes["initial"] <= changes.get("max", base.max):
        check.fail((*path, "initial"), f"{what} initial ({changes['initial']:g}) must lie between min and max")
    mode = check.choice(body["mode"], (*path, "mode"), "overload mode", MODES) if "mode" in body else None
    return replace(base, **changes), mode


def parse_overload_section(check: Checker, value: Any, path: FieldPath) -> OverloadSpec:
    """Validate ``overload:`` and build its spec."""
    body = check.fields(value, path, OVERLOAD_FIELDS, "overload")
    base, mode = _controller(check, body, path, ControllerConfig(), "overload")
    mode = mode or "enforce"
    pools: dict[str, ControllerConfig] = {DEFAULT_POOL: base}
    modes: dict[str, str] = {DEFAULT_POOL: mode}
    if "pools" in body:
        pools_path = (*path, "pools")
        for name, pool in check.mapping(body["pools"], pools_path, "overload pools").items():
            where = (*pools_path, name)
            if name == DEFAULT_POOL:
                check.fail(where, f"pool {DEFAULT_POOL!r} is the pool of routes that name none; "
                           "set its fields at the top of 'overload:'")
            pool_body = check.fields(pool if pool is not None else {}, where, CONTROLLER_FIELDS, f"pool {name!r}")
            pools[name], pool_mode = _controller(check, pool_body, where, base, f"pool {name!r}")
            modes[name] = pool_mode or mode
    priorities = dict(DEFAULT_PRIORITIES)
    if "priorities" in body:
        where = (*path, "priorities")
        given = check.mapping(body["priorities"], where, "priorities")
        if not given:
            check.fail(where, "priorities must name at least one class")
        priorities = {}
        for name, share in given.items():
            share_path = (*where, name)
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
                check.fail(share_path, f"the share of class {name!r} must be a number in (0, 1], got {share!r}")
            priorities[name] = float(share)
    ordered = sorted(priorities, key=lambda n: -priorities[n])
    default = "normal" if "normal" in priorities else ordered[-1]
    if "default_priority" in body:
        default = check.choice(body["default_priority"], (*path, "default_priority"), "default_priority", ordered)
    source: str | tuple[str, ...] | None = None
    if "priority_from" in body:
        source = check.key_spec(body["priority_from"], (*path, "priority_from"))
    retry = check.integer(body["retry_after"], (*path, "retry_after"), "retry_after", 1, 3600) \
        if "retry_after" in body else 5
    floor = _scale_floor(check, body["scale_rates"], (*path, "scale_rates")) if "scale_rates" in body else None
    return OverloadSpec(
        pools=MappingProxyType(pools), modes=MappingProxyType(modes), priorities=tuple(ordered),
        shares=tuple(priorities[n] for n in ordered), default_priority=default, priority_from=source,
        retry_after=retry, lines={"overload": check.line(path)}, scale_floor=floor,
    )


def _scale_floor(check: Checker, value: Any, path: FieldPath) -> float | None:
    """``scale_rates: 0.25`` or ``scale_rates: {floor: 0.25}``: the lowest scale factor;
    ``scale_rates: false`` turns scaling off."""
    if value is False:
        return None
    if isinstance(value, Mapping):
        body = check.fields(value, path, ("floor",), "scale_rates")
        if "floor" not in body:
            check.fail(path, "scale_rates needs a floor, e.g. scale_rates: {floor: 0.25}")
        value, path = body["floor"], (*path, "floor")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        check.fail(path, f"the scale_rates floor must be a number in (0, 1], got {value!r}")
    return float(value)
