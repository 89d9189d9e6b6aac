"""The overload simulator's scenarios, with the issue's measured goals asserted exactly.

The simulator drives the middlewares' own gate and controller in virtual time, so
these runs take a second or two and are deterministic per seed.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.overload_sim import SCENARIOS, default_gate, goals, simulate, step

UP, DOWN = 60.0, 120.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_step_up_to_3x_and_back_meets_the_goals(seed: int) -> None:
    result = simulate(replace(step(), seed=seed), default_gate())
    g = goals(result, UP, DOWN)
    assert g["critical_p99_ratio"] <= 1.5
    assert g["critical_availability"] >= 0.999
    assert g["goodput_ratio"] >= 0.9
    assert g["monotonicity_violations"] == 0
    assert g["limit_cv"] <= 0.10
    assert 0.9 <= g["recovery_ratio"] <= 1.1


def test_without_protection_the_same_step_fails_critical_traffic() -> None:
    g = goals(simulate(step(), None), UP, DOWN)
    assert g["critical_availability"] < 0.5  # the queue grows past every client's timeout
    assert g["goodput_ratio"] < 0.5


def test_no_sheds_over_ten_minutes_at_70_percent_load() -> None:
    result = simulate(SCENARIOS["steady_70"], default_gate())
    assert result.scenario.duration == 600.0
    assert len(result.arrived) > 100_000
    assert all(latency >= 0 for latency in result.latency)  # -1.0 marks a shed request


def test_stable_timeouts_bring_the_limit_to_min_within_30s_and_keep_it_there() -> None:
    scenario = SCENARIOS["stable_timeouts"]
    result = simulate(scenario, default_gate())
    start = scenario.hang[0] if scenario.hang else 0.0
    after = [limit for t, limit in result.limits if t >= start + 30.0]
    assert after and all(limit == 8 for limit in after)  # the simulator's min


def test_slow_downstream_keeps_critical_traffic_and_recovers() -> None:
    scenario = SCENARIOS["slow_downstream"]
    protected, bare = simulate(scenario, default_gate()), simulate(scenario, None)

    def critical_availability(r: object) -> float:
        crit = [i for i, c in enumerate(r.cls) if c == 0]  # type: ignore[attr-defined]
        return sum(r.ok[i] for i in crit) / len(crit)  # type: ignore[attr-defined]

    assert critical_availability(protected) >= 0.99
    assert critical_availability(bare) < 0.5
    assert sum(protected.ok) > 2 * sum(bare.ok)
    assert protected.limits[-1][1] == 160  # back at max once the downstream is fast again


def test_throughput_collapse_is_avoided() -> None:
    """Queued requests slow the app (memory, GC): without a limit, goodput collapses."""
    scenario = SCENARIOS["collapse"]
    protected, bare = simulate(scenario, default_gate()), simulate(scenario, None)

    def goodput(r: object) -> float:
        return sum(1 for t, ok in zip(r.arrived, r.ok) if ok and t >= 35.0) / 55.0 / scenario.capacity  # type: ignore[attr-defined]

    assert goodput(protected) >= 0.9
    assert goodput(bare) < 0.3
