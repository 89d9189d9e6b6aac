"""The control laws as pure functions: bounds, failures, warm-up-free exact steps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.overload import ControllerConfig, WindowStats, update
from ratelimit_mw.overload.controllers import ALGORITHMS, initial_state

configs = st.builds(
    lambda algorithm, lo, span, start, target: ControllerConfig(
        algorithm=algorithm, min=lo, initial=lo + span * start, max=lo + span, latency_target=target,
        min_samples=1),
    st.sampled_from(ALGORITHMS), st.floats(1, 50), st.floats(0, 500), st.floats(0, 1), st.floats(0.001, 5),
)
latencies = st.floats(0, 1e4) | st.sampled_from([math.nan, math.inf])
windows = st.builds(
    lambda count, p99, p50, dropped, peak, shed: WindowStats(count, p99, p50, min(dropped, count), peak, shed),
    st.integers(0, 10_000), latencies, latencies, st.integers(0, 10_000), st.integers(0, 10_000),
    st.integers(0, 100),
)


@settings(max_examples=400)
@given(configs, st.lists(windows, max_size=60))
def test_limit_stays_within_min_and_max(config: ControllerConfig, stats: list[WindowStats]) -> None:
    state = initial_state(config, 0.0)
    for i, window in enumerate(stats):
        state = update(config, state, window, float(i + 1))
        assert config.min <= state.limit <= config.max
        assert math.isfinite(state.limit)


@settings(max_examples=200)
@given(configs, st.integers(1, 1000), st.floats(0.001, 100), st.integers(1, 10_000))
def test_stable_timeouts_never_grow_the_limit(config: ControllerConfig, count: int, latency: float, peak: int) -> None:
    """Every request times out at the same latency, window after window: the limit
    never grows (the gradient's "stable RTT" failure), and reaches min."""
    state = initial_state(config, 0.0)
    window = WindowStats(count, latency, latency, count, peak)
    for i in range(60):
        before = state.limit
        state = update(config, state, window, float(i + 1))
        assert state.limit <= before
    if config.algorithm != "fixed" and peak >= config.initial * config.probe_use:
        assert state.limit == config.min


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        pytest.param(WindowStats(100, 0.05, 0.02, 0, 20, 0), 30.0, id="no-sheds-grows-fast"),
        pytest.param(WindowStats(100, 0.05, 0.05, 0, 20, 7), 21.0, id="queued-and-shedding-grows-by-one"),
        pytest.param(WindowStats(100, 0.12, 0.05, 0, 20, 7), 18.0, id="just-over-target-gentle-cut"),
        pytest.param(WindowStats(100, 0.40, 0.05, 0, 20, 7), 10.0, id="far-over-target-cut-by-overshoot"),
        pytest.param(WindowStats(100, 0.05, 0.02, 5, 20, 0), 10.0, id="failures-hard-cut"),
        pytest.param(WindowStats(100, 0.40, 0.05, 0, 2, 0), 20.0, id="limit-not-in-play-holds"),
        pytest.param(WindowStats(3, 0.40, 0.05, 0, 20, 0), 20.0, id="too-few-samples-holds"),
    ],
)
def test_aimd_steps(stats: WindowStats, expected: float) -> None:
    config = ControllerConfig(initial=20, min=2, max=200, latency_target=0.1, min_samples=10)
    state = initial_state(config, 0.0)._replace(baseline=0.02)
    new = update(config, state, stats, 5.0)
    assert new.limit == pytest.approx(expected)
    assert new.changed_at == (5.0 if expected != 20.0 else 0.0)


def test_gradient_follows_latency_ratio_and_grows_by_a_queue_allowance() -> None:
    config = ControllerConfig(algorithm="gradient", initial=16, min=2, max=200, latency_target=0.1, min_samples=10)
    state = initial_state(config, 0.0)
    calm = WindowStats(100, 0.05, 0.02, 0, 16, 0)
    state = update(config, state, calm, 1.0)
    assert state.baseline == pytest.approx(0.02)
    assert state.limit == pytest.approx(16 + math.sqrt(16) / 2)
    queued = WindowStats(100, 0.08, 0.08, 0, 18, 5)  # median 4x the baseline: halve at most
    assert update(config, state, queued, 2.0).limit == pytest.approx(state.limit * 0.5)
    # a long overload does not teach the baseline its latency
    for i in range(100):
        state = update(config, state, WindowStats(100, 0.09, 0.06, 0, 1, 5), 3.0 + i)
    assert state.baseline == pytest.approx(0.02)


def test_fixed_never_moves() -> None:
    config = ControllerConfig(algorithm="fixed", initial=7, min=1, max=9)
    state = initial_state(config, 0.0)
    assert update(config, state, WindowStats(500, 9.0, 9.0, 500, 7, 50), 1.0) == state


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"algorithm": "vegas"}, id="unknown-algorithm"),
        pytest.param({"min": 10, "initial": 5}, id="initial-below-min"),
        pytest.param({"max": 10, "initial": 20}, id="initial-above-max"),
        pytest.param({"backoff": 1.0}, id="backoff-not-below-1"),
        pytest.param({"latency_target": 0.0}, id="zero-target"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ControllerConfig(**kwargs)  # type: ignore[arg-type]
