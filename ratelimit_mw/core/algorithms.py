"""The limiting algorithms as pure functions ``(state, now, rule, cost) -> Step``.

Modelled on h11's sans-I/O core: no clock, no storage, no locks. A backend loads
the state, calls the function with the time it trusts, and stores ``Step.state``
only if the whole request was allowed. The Redis Lua scripts in
``ratelimit_mw/backends/lua`` mirror these functions line for line; a conformance
test replays one trace through both.

Floating point: times near the Unix epoch have a resolution of about 2e-7 s, so
comparisons tolerate ``EPS`` (1 microsecond). The Lua mirrors use the same constant.

State per algorithm (``None`` means fresh):

==================  =====================================  ==========================
algorithm           state                                  meaning
==================  =====================================  ==========================
gcra                float                                  theoretical arrival time
token_bucket        float                                  time the bucket was empty
leaky_bucket        float                                  time the queue drains
fixed_window        (window_index, count)
sliding_window      (window_index, current, previous)      two-counter approximation
sliding_log         tuple of timestamps                    exact, O(limit) memory
concurrency         int                                    requests in flight
==================  =====================================  ==========================
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, NamedTuple

from ratelimit_mw.core.rates import EPS, Rule

__all__ = ["ALGORITHM_FUNCTIONS", "EPS", "EXPIRY_FUNCTIONS", "Step", "StepTuple", "step"]

# EPS, the tolerance for time comparisons (see module docstring), is defined with
# Rule, which derives per-rule forms of it, and exported from here too.
_floor = math.floor


class Step(NamedTuple):
    """What one rule says about one request.

    The algorithm functions return a plain tuple of these seven fields in this order
    (``StepTuple``): building a NamedTuple costs ~0.2 us more per rule on the hot
    path. :func:`step` returns the named form.

    Attributes:
        allowed: the rule admits the request.
        state: the state to store if the request is admitted overall.
        remaining: requests left after this one (or now, if denied).
        reset_after: seconds until the rule's quota is whole again.
        retry_after: seconds until a request of this cost could pass (0 if allowed).
        ttl: seconds after which ``state`` is indistinguishable from fresh.
        delay: seconds to hold the request before passing it on (leaky bucket).
    """

    allowed: bool
    state: Any
    remaining: int
    reset_after: float
    retry_after: float
    ttl: float
    delay: float = 0.0


#: The positional form the algorithm functions return (see :class:`Step`).
StepTuple = tuple[bool, Any, int, float, float, float, float]


def gcra(state: float | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """Generic cell rate algorithm: one float (theoretical arrival time) per key."""
    interval = rule.interval
    tolerance = rule.tolerance
    tat = state if state is not None and state > now else now
    new_tat = tat + cost * interval
    ahead = new_tat - now
    if ahead > tolerance + EPS:
        used = tat - now
        remaining = _floor((tolerance - used + EPS) / interval)
        return (False, state, max(remaining, 0), used, ahead - tolerance, used, 0.0)
    remaining = _floor((tolerance - ahead + EPS) / interval)
    return (True, new_tat, remaining, ahead, 0.0, ahead, 0.0)


def token_bucket(state: float | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """Token bucket, stored as one float: the time at which the bucket was empty.

    Tokens at ``now`` are ``min(capacity, (now - empty_at) / interval)``. This is the
    same meter as :func:`gcra` computed the classic way; a property test checks
    that both give the same decisions.
    """
    interval = rule.interval
    capacity = rule.capacity_float  # exact for any real capacity: the same results as the int
    slack = rule.slack  # EPS / interval, divided once per rule
    if state is None:
        tokens = capacity
    else:
        tokens = (now - state) / interval
        if tokens > capacity:
            tokens = capacity
    if tokens + slack < cost:
        missing = (capacity - tokens) * interval
        return (False, state, max(_floor(tokens + slack), 0), missing, (cost - tokens) * interval, missing, 0.0)
    tokens -= cost
    refill = (capacity - tokens) * interval
    return (True, now - tokens * interval, _floor(tokens + slack), refill, 0.0, refill, 0.0)


def leaky_bucket(state: float | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """Leaky bucket as a meter that *shapes*: requests queue for a constant outflow.

    nginx ``limit_req`` semantics: a request is delayed until its slot in a queue
    draining at ``limit/period``, and rejected if that delay would exceed
    ``max_delay``. One float per key: the time the queue drains.
    """
    interval = rule.interval
    max_delay = rule.tolerance
    start = state if state is not None and state > now else now
    delay = start - now
    # a request of cost n is n unit requests arriving together: the last must fit
    last = delay + (cost - 1) * interval
    if last > max_delay + EPS:
        remaining = _floor((max_delay - delay + EPS) / interval) + 1
        return (False, state, max(remaining, 0), delay, last - max_delay, delay, 0.0)
    drained = start + cost * interval
    ahead = drained - now
    remaining = _floor((max_delay - ahead + EPS) / interval) + 1
    return (True, drained, max(remaining, 0), ahead, 0.0, ahead, delay)


def fixed_window(state: tuple[int, int] | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """Fixed window counter: ``limit`` per aligned window of ``period`` seconds."""
    period = rule.period
    index = _floor(now / period)
    count = state[1] if state is not None and state[0] == index else 0
    left = (index + 1) * period - now
    if count + cost > rule.limit:
        return (False, state, rule.limit - count, left if count else 0.0, left, left, 0.0)
    count += cost
    return (True, (index, count), rule.limit - count, left, 0.0, left, 0.0)


def sliding_window(
    state: tuple[int, int, int] | None, now: float, rule: Rule, cost: int
) -> StepTuple:
    """Two-counter sliding window: previous window weighted by its overlap.

    Approximate by design (O(1) state): in any aligned window it admits at most
    ``limit``; across a window boundary it assumes the previous window's requests
    were spread evenly.
    """
    period = rule.period
    limit = rule.limit
    index = _floor(now / period)
    current = previous = 0
    if state is not None:
        if state[0] == index:
            current, previous = state[1], state[2]
        elif state[0] == index - 1:
            previous = state[1]
    start = index * period
    weight = 1.0 - (now - start) / period
    estimate = previous * weight + current
    if estimate + cost > limit + 1e-9:
        if current + cost <= limit:
            # wait until the previous window's weight has shrunk enough
            wait = start + period * (1.0 - (limit - current - cost) / previous) - now
        elif cost <= limit:
            # wait for the next window, where this window becomes the previous one
            wait = start + period + period * (1.0 - (limit - cost) / current) - now
        else:
            wait = 2 * period
        reset = (start + 2 * period - now) if current else (start + period - now)
        remaining = _floor(limit - estimate + 1e-9)
        return (False, state, max(remaining, 0), reset, max(wait, 0.0), reset, 0.0)
    current += cost
    remaining = _floor(limit - estimate - cost + 1e-9)
    reset = start + 2 * period - now
    return (True, (index, current, previous), max(remaining, 0), reset, 0.0, reset, 0.0)


def sliding_log(state: tuple[float, ...] | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """Exact moving window: one timestamp per admitted unit of cost, O(limit) memory.

    A request at ``t`` counts against every request in ``(t - period, t]``.
    """
    period = rule.period
    limit = rule.limit
    log: tuple[float, ...] = state or ()
    if log:
        first_live = bisect_right(log, now - period)
        if first_live:
            log = log[first_live:]
    count = len(log)
    if count + cost > limit:
        excess = count + cost - limit
        wait = log[excess - 1] + period - now if excess <= count else period
        reset = log[-1] + period - now if log else 0.0
        return (False, state, limit - count, reset, max(wait, 0.0), reset, 0.0)
    log = log + (now,) * cost
    return (True, log, limit - count - cost, period, 0.0, period, 0.0)


def concurrency(state: int | None, now: float, rule: Rule, cost: int) -> StepTuple:
    """In-flight limit: the state is how many requests of the key are in flight.

    Admitting adds ``cost``; the end of the response takes it off again, outside this
    function (see :mod:`ratelimit_mw.inflight`). When a slot frees cannot be known, so
    a denial asks the client to come back in a second.
    """
    count = state or 0
    if count + cost > rule.limit:
        return (False, state, max(rule.limit - count, 0), 1.0, 1.0, 1.0, 0.0)
    count += cost
    return (True, count, rule.limit - count, 0.0, 0.0, rule.period, 0.0)


ALGORITHM_FUNCTIONS: dict[str, Callable[[Any, float, Rule, int], StepTuple]] = {
    "gcra": gcra,
    "token_bucket": token_bucket,
    "leaky_bucket": leaky_bucket,
    "fixed_window": fixed_window,
    "sliding_window": sliding_window,
    "sliding_log": sliding_log,
    "concurrency": concurrency,
}


def step(state: Any, now: float, rule: Rule, cost: int) -> Step:
    """Run ``rule``'s algorithm and name the fields (the hot path keeps the plain tuple)."""
    return Step(*ALGORITHM_FUNCTIONS[rule.algorithm](state, now, rule, cost))


def _expiry_tat(state: Any, rule: Rule) -> float:
    return float(state)


def _expiry_bucket(state: Any, rule: Rule) -> float:
    return float(state) + rule.capacity * rule.interval


def _expiry_fixed(state: Any, rule: Rule) -> float:
    return float((state[0] + 1) * rule.period) + EPS  # margin: the product may round below the edge


def _expiry_sliding(state: Any, rule: Rule) -> float:
    return float((state[0] + 2) * rule.period) + EPS


def _expiry_log(state: Any, rule: Rule) -> float:
    return state[-1] + rule.period if state else 0.0


def _expiry_count(state: Any, rule: Rule) -> float:
    return math.inf if state else 0.0  # a request in flight holds its count until it ends


#: When a stored state becomes indistinguishable from fresh, derived from the state
#: itself, so a store needs to keep nothing but the state (one float for GCRA).
EXPIRY_FUNCTIONS: dict[str, Callable[[Any, Rule], float]] = {
    "gcra": _expiry_tat,
    "token_bucket": _expiry_bucket,
    "leaky_bucket": _expiry_tat,
    "fixed_window": _expiry_fixed,
    "sliding_window": _expiry_sliding,
    "sliding_log": _expiry_log,
    "concurrency": _expiry_count,
}
