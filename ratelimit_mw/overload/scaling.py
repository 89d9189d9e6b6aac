"""``scale_rates:``: the routes' rate limits tighten while their pool is overloaded.

Prepared when the policies load: each protected route with rate limits gets a ladder
of variants of its limits, one per factor from 1 down to the floor in steps of
:data:`STEP`. Every variant keeps the storage slots of the route's own limits, so a
client's usage carries over when the factor changes; each has its own bound check
and headers (``RateLimit-Policy`` shows the scaled quota). A request takes the variant
of its pool's factor now (the adaptive limit over the pool's ``max``, never below the
floor), rounded down to a step: one division and one index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ratelimit_mw.core.quota import Quota
from ratelimit_mw.core.rates import BUCKET_ALGORITHMS, Rule

__all__ = ["STEP", "factors", "ladders", "level", "scaled_rule"]

_C = TypeVar("_C")

#: Distance between two factors of a ladder.
STEP = 0.05


def factors(floor: float) -> tuple[float, ...]:
    """``1.0, 0.95, ...`` down to ``floor`` (the last one is the floor itself)."""
    out = [1.0]
    while out[-1] - STEP > floor + 1e-9:
        out.append(round(out[-1] - STEP, 10))
    if out[-1] > floor:
        out.append(floor)
    return tuple(out)


def level(limit: float, maximum: float, steps: int) -> int:
    """The index in a ladder of ``steps`` factors for a pool at ``limit`` of ``maximum``:
    the largest factor not above ``limit / maximum`` (the floor below the last step)."""
    index = math.ceil((1.0 - limit / maximum) / STEP - 1e-9)
    return 0 if index <= 0 else min(index, steps - 1)


def scaled_rule(rule: Rule, factor: float) -> Rule:
    """``rule`` with its limit (and burst) times ``factor``, at least 1; same period,
    algorithm and name. An in-flight limit is not a rate and is kept as it is."""
    if rule.in_flight or factor >= 1.0:
        return rule
    limit = max(1, math.floor(rule.limit * factor + 1e-9))
    # the burst keeps at most its ratio to the limit, so a scaled bucket's window (and the
    # life of its state) never exceeds the route's own
    scaled_burst = rule.algorithm in BUCKET_ALGORITHMS and rule.algorithm != "leaky_bucket"
    return Rule(
        limit=limit,
        period=rule.period,
        burst=max(1, math.floor(rule.burst * limit / rule.limit + 1e-9)) if scaled_burst else 0,
        algorithm=rule.algorithm,
        max_delay=rule.max_delay if rule.algorithm == "leaky_bucket" else None,
        name=rule.name,
    )


def ladders(spec: Any, compiled: Mapping[int, Any], compile_at: Callable[[Any, Quota], _C]) -> dict[int, list[_C]]:
    """Each protected route's limits at every factor below 1 (``compile_at(route, quota)``),
    by ``id(route)``. Routes with a ``plan:`` switch or an ``exempt_when``, and those
    holding only in-flight limits, keep their limits as written."""
    if spec is None or spec.scale_floor is None:
        return {}
    steps = factors(spec.scale_floor)[1:]
    out: dict[int, list[_C]] = {}
    for ident, entry in compiled.items():
        route, base = entry.route, entry.bound.quota
        if route.plan is None and route.exempt_when is None and not all(r.in_flight for r in route.rules):
            out[ident] = [compile_at(route, Quota(tuple(scaled_rule(r, f) for r in base.rules), base.scope,
                                                  base.slots)) for f in steps]
    return out
