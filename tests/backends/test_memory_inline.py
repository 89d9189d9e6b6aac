"""The compiled single-rule check answers exactly as calling the algorithm does.

``MemoryBackend(inline=True)`` splices each algorithm's own source into the check
(:mod:`ratelimit_mw.backends.memory_inline`); ``inline=False`` calls the function
in the bound multi-rule check, and the generic ``hit`` goes through ``combine`` on
arbitrary keys. The same random traces must give bit-identical decisions, and the same
usage afterwards, on all three.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.backends.memory import MemoryBackend
from ratelimit_mw.backends.memory_inline import factory
from ratelimit_mw.core.algorithms import ALGORITHM_FUNCTIONS
from ratelimit_mw.core.quota import make_quota
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.testing import FakeClock

RATES = {
    "gcra": "5/second; burst=8",
    "token_bucket": "3/second; algorithm=token_bucket",
    "leaky_bucket": "4/second; burst=3; algorithm=leaky_bucket",
    "fixed_window": "4/minute; algorithm=fixed_window",
    "sliding_window": "4/minute; algorithm=sliding_window",
    "sliding_log": "3/minute; algorithm=sliding_log",
}
STEPS = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5),
                           st.sampled_from([0.0, 1e-6, 0.001, 0.2, 0.25, 1.0, 15.0, 61.0])), max_size=60)


def test_every_algorithm_compiles() -> None:
    assert all(factory(step) is not None for step in ALGORITHM_FUNCTIONS.values())


@pytest.mark.parametrize("algorithm", sorted(RATES))
@settings(max_examples=60, deadline=None)
@given(steps=STEPS, start=st.sampled_from([0.0, 1_000_000.0, 1_733_000_000.123]))
def test_compiled_called_and_generic_checks_agree(algorithm: str, steps: list[tuple[str, int, float]],
                                                 start: float) -> None:
    clock = FakeClock(start)
    quota = make_quota((parse_rate(RATES[algorithm]),), "scope")
    compiled, called, generic = MemoryBackend(), MemoryBackend(inline=False), MemoryBackend()
    checks = [compiled.bind(quota, clock), called.bind(quota, clock)]
    for key, cost, gap in steps:
        clock.advance(gap)
        answers: list[Any] = [check(key, cost) for check in checks]
        answers.append(generic.hit([key], quota.rules, cost, clock()))
        assert answers[0] == answers[1] == answers[2], (key, cost, clock())
    for key in ("a", "b"):
        assert compiled.peek_key(key, quota, clock()) == called.peek_key(key, quota, clock())
    assert len(compiled) == len(called)


def _three_returns(state: Any, now: float, rule: Any, cost: int) -> Any:
    if cost > 2:
        return (False, state, 0, 0.0, 1.0, 0.0, 0.0)
    if cost > 1:
        return (False, state, 1, 0.0, 1.0, 0.0, 0.0)
    return (True, now, 2, 0.0, 0.0, 0.0, 0.0)


def _computed_return(state: Any, now: float, rule: Any, cost: int) -> Any:
    result = (True, now, 2, 0.0, 0.0, 0.0, 0.0)
    return result


@pytest.mark.parametrize("step", [_three_returns, _computed_return, lambda state, now, rule, cost: None, len])
def test_another_shape_is_called_not_compiled(step: Any) -> None:
    assert factory(step) is None
