"""Several limits checked together: all-or-nothing, most restrictive reported.

``evaluate`` is what every backend runs inside its atomic section (the memory
backend under its lock, Redis inside one Lua script): compute every rule's step
from the current states, and commit the new states only if *every* rule admits
the request, so a request denied by one limit consumes nothing from the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ratelimit_mw.core.algorithms import ALGORITHM_FUNCTIONS, Step, StepTuple
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule

__all__ = ["combine", "evaluate", "inspect"]

_new = tuple.__new__


def combine(rules: Sequence[Rule], steps: Sequence[StepTuple]) -> Decision:
    """Fold per-rule steps into one :class:`Decision`.

    Allowed: report the rule with the fewest remaining (ties: the later reset).
    Denied: report the denying rule with the longest wait; ``retry_after`` is the
    time until *every* denying rule would admit the request.
    """
    if len(steps) == 1:
        s = steps[0]
        rule = rules[0]
        return _new(Decision, (
            s[0], rule.capacity, s[2], s[3], s[4], rule,
            s[6], () if s[0] else (rule.name,), False,
        ))
    best = -1
    allowed = True
    violated: list[str] = []
    delay = 0.0
    for i, s in enumerate(steps):
        if s[6] > delay:
            delay = s[6]
        if not s[0]:
            violated.append(rules[i].name)
            if allowed or s[4] > steps[best][4]:
                best = i
            allowed = False
        elif allowed:
            if best < 0:
                best = i
            else:
                b = steps[best]
                if s[2] < b[2] or (
                    s[2] == b[2] and s[3] > b[3]
                ):
                    best = i
    s = steps[best]
    rule = rules[best]
    return _new(Decision, (
        allowed, rule.capacity, s[2], s[3], s[4], rule,
        delay if allowed else 0.0, tuple(violated), False,
    ))


def evaluate(
    rules: Sequence[Rule], states: Sequence[Any], now: float, cost: int
) -> tuple[list[Step], Decision]:
    """Run every rule on its state; the caller stores ``step.state``/``step.ttl`` if allowed."""
    steps = [
        Step(*ALGORITHM_FUNCTIONS[rule.algorithm](state, now, rule, cost))
        for rule, state in zip(rules, states)
    ]
    return steps, combine(rules, steps)


def inspect(rules: Sequence[Rule], states: Sequence[Any], now: float) -> Decision:
    """Report usage without consuming: remaining/reset as of ``now`` (a cost-0 look),
    and whether a request of cost 1 would pass, with its ``retry_after``."""
    funcs = [ALGORITHM_FUNCTIONS[rule.algorithm] for rule in rules]
    look = combine(rules, [f(s, now, r, 0) for f, s, r in zip(funcs, states, rules)])
    probe = combine(rules, [f(s, now, r, 1) for f, s, r in zip(funcs, states, rules)])
    return Decision(
        probe.allowed, look.limit, look.remaining, look.reset_after, probe.retry_after,
        look.rule, 0.0, probe.violated,
    )
