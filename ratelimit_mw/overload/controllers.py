"""Adaptive concurrency limits as pure functions of (state, window statistics, now).

A controller never reads a clock, never keeps hidden state and never does I/O: the
caller (the admission gate, or the simulator in virtual time) closes a window of
latency samples, hands its statistics here and stores the state it gets back. So
every control law is tested exactly, with time as an argument.

The laws (see docs/overload.md for the reasoning and a worked example):

- ``aimd``: additive increase (by 1) while the window's p99 is within the target and
  the limit was in play, faster (by a fraction) while nothing was shed;
  multiplicative decrease when it is over (by the overshoot, between a gentle and a
  hard factor; hard when requests failed or timed out).
- ``gradient``: the limit follows the ratio of a baseline median latency to the
  window's median (after Netflix's Gradient2), and of the target to the window's
  p99, plus a queue allowance of sqrt(limit) while neither is exceeded; the
  baseline learns only from windows without sheds, so a long overload cannot
  poison it.
- ``fixed``: the limit stays at ``initial``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["ALGORITHMS", "ControllerConfig", "ControllerState", "WindowStats", "initial_state", "update"]

ALGORITHMS = ("aimd", "gradient", "fixed")
#: How far the baseline median moves toward a slower window's median, per window.
BASELINE_DRIFT = 0.01
#: A median within this factor of the baseline means no queue behind the limit.
QUEUE_FREE = 1.25
#: How much of gradient's proposed increase it takes per window.
GRADIENT_SMOOTHING = 0.5


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """How one pool's limit moves.

    Attributes:
        algorithm: ``aimd`` (default), ``gradient`` or ``fixed``.
        initial: the limit before any window closed.
        min: the limit never goes below this (at least 1).
        max: nor above this.
        latency_target: seconds; the p99 of a window above this is overload.
        warmup: seconds from the start during which the gate only observes.
        window: seconds a window of samples lasts (at least ``min_samples`` samples).
        min_samples: fewer samples than this in a window carry no decision.
        backoff: aimd's factor when only latency is over the target.
        drop_backoff: aimd's factor when requests failed or timed out.
        increase: aimd's growth per window, as a fraction of the limit, while nothing
            was shed; while requests are shed it grows by 1.
        probe_use: the limit grows only if the window's peak in-flight reached this
            fraction of it (an idle app must not inflate its limit without bound); the
            gate scales it by the smallest class share.
    """

    algorithm: str = "aimd"
    initial: float = 20.0
    min: float = 2.0
    max: float = 200.0
    latency_target: float = 0.25
    warmup: float = 0.0
    window: float = 1.0
    min_samples: int = 50
    backoff: float = 0.9
    drop_backoff: float = 0.5
    increase: float = 0.5
    probe_use: float = 0.3

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if not 1 <= self.min <= self.initial <= self.max:
            raise ValueError(f"need 1 <= min <= initial <= max, got {self.min}, {self.initial}, {self.max}")
        if not (0 < self.backoff < 1 and 0 < self.drop_backoff < 1):
            raise ValueError("backoff factors must lie strictly between 0 and 1")
        if self.latency_target <= 0 or self.window <= 0 or self.warmup < 0:
            raise ValueError("latency_target and window must be positive, warmup not negative")


class WindowStats(NamedTuple):
    """What one window of samples says.

    Attributes:
        samples: samples in the window (requests that started after the last change).
        p99: their 99th-percentile latency, seconds.
        p50: their median latency, seconds.
        dropped: how many of them failed or timed out.
        peak_inflight: the most requests in flight at once during the window.
        shed: requests refused (or that would have been) during the window.
    """

    samples: int
    p99: float
    p50: float
    dropped: int
    peak_inflight: int
    shed: int = 0


class ControllerState(NamedTuple):
    """A pool's limit and what its law remembers.

    Attributes:
        limit: the current limit (a float; the gate compares against it directly).
        baseline: the median latency without queueing, seconds (0: none yet).
        changed_at: when the limit last changed.
        started: when the controller started (for the warm-up).
    """

    limit: float
    baseline: float
    changed_at: float
    started: float


def initial_state(config: ControllerConfig, now: float) -> ControllerState:
    """The state before any window closed."""
    return ControllerState(float(config.initial), 0.0, now, now)


def update(config: ControllerConfig, state: ControllerState, stats: WindowStats, now: float) -> ControllerState:
    """The state after one closed window; a window with too few samples changes nothing."""
    if config.algorithm == "fixed" or (stats.samples < config.min_samples and not stats.dropped):
        return state
    baseline = _baseline(state, stats) if stats.samples >= config.min_samples else state.baseline
    if config.algorithm == "aimd":
        limit = _aimd(config, state, stats, baseline)
    else:
        limit = _gradient(config, state, stats, baseline)
    limit = min(config.max, max(config.min, limit))
    if not math.isfinite(limit):  # a NaN latency must not take the limit with it
        limit = state.limit
    changed_at = now if limit != state.limit else state.changed_at
    return ControllerState(limit, baseline, changed_at, state.started)


def _baseline(state: ControllerState, stats: WindowStats) -> float:
    """The median latency without queueing: a faster window lowers it at once; it
    rises slowly, and only from windows where nothing was shed, so a long overload
    cannot poison it (the drifting-baseline failure of latency-gradient limiters)."""
    baseline = state.baseline
    if not math.isfinite(stats.p50):
        return baseline
    if baseline <= 0 or stats.p50 < baseline:
        return stats.p50
    if stats.shed or stats.dropped:
        return baseline
    return baseline + (stats.p50 - baseline) * BASELINE_DRIFT


def _aimd(config: ControllerConfig, state: ControllerState, stats: WindowStats, baseline: float) -> float:
    limit = state.limit
    if stats.peak_inflight < limit * config.probe_use:
        return limit  # the limit was not in play: neither latency nor failures are its doing
    if stats.dropped:
        return limit * config.drop_backoff
    target = config.latency_target
    if stats.p99 > target:
        # Past 1.5x the target, cut by the overshoot (down to the hard factor): a window
        # far over the target brings the limit down in one step, not in ten, while a
        # window just over it (noise, mostly) costs only the gentle factor.
        if stats.p99 > target * 1.5:
            return limit * max(config.drop_backoff, target / stats.p99)
        return limit * config.backoff
    if not stats.shed or stats.p50 <= baseline * QUEUE_FREE:
        return limit * (1 + config.increase)  # no queue behind the limit: catch up fast
    return limit + 1.0


def _gradient(config: ControllerConfig, state: ControllerState, stats: WindowStats, baseline: float) -> float:
    limit = state.limit
    if stats.peak_inflight < limit * config.probe_use:
        return limit
    if stats.dropped:
        return limit * config.drop_backoff
    # The median may grow to twice its baseline (a short queue keeps the workers busy),
    # and the p99 up to the target; past either, the limit shrinks in proportion.
    ratio = min(2.0 * baseline / stats.p50 if stats.p50 > 0 else 1.0,
                config.latency_target / stats.p99 if stats.p99 > 0 else 1.0)
    gradient = max(0.5, min(1.0, ratio))
    if gradient < 1.0:
        return limit * gradient
    proposed = limit + math.sqrt(limit)  # room for a queue of sqrt(limit), as Gradient2 allows
    return limit * (1 - GRADIENT_SMOOTHING) + proposed * GRADIENT_SMOOTHING
