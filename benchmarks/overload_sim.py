"""A discrete-event simulator of an app under overload, in virtual time.

The app has a finite worker pool (8 workers by default) with a FIFO queue in front,
as a thread pool or a pre-fork server has; its service time is log-normal (median
20 ms) and grows with the number of busy workers (shared CPU, locks, a database).
Traffic is 20% critical, 30% high, 30% normal and 20% sheddable, Poisson, at a
load that follows the scenario's phases (multiples of the app's capacity).

Admission runs through :class:`ratelimit_mw.overload.OverloadGate`, the same gate
and controller the middlewares use: ``acquire`` when a request arrives, ``release``
when its response ends, with the virtual time as ``now``. Without a gate every
request is admitted, which is the unprotected app.

``python -m benchmarks.overload_sim`` prints the step scenario's measured goals,
with and without protection.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ratelimit_mw.overload import ControllerConfig, OverloadGate, Ticket

__all__ = ["CLASSES", "SCENARIOS", "Result", "Scenario", "default_gate", "goals", "simulate", "step"]

CLASSES = ("critical", "high", "normal", "sheddable")
MIX = (0.2, 0.3, 0.3, 0.2)
#: Shares used by the simulated app. Critical must keep room for its own bursts above
#: every other class: at 3x load critical alone offers 60% of capacity.
SHARES = (1.0, 0.35, 0.25, 0.15)
#: Steady overload (for the limit's variation) counts from this long after the step up.
STEADY_AFTER = 15.0


@dataclass(frozen=True)
class Scenario:
    """What the simulated app and its traffic do.

    Attributes:
        name: a label.
        phases: (seconds, offered load as a multiple of capacity), in order.
        workers: the app's worker pool.
        median: median service time, seconds.
        sigma: log-normal shape of the service time.
        contention: service time grows by this fraction per busy worker beyond the first.
        queue_contention: and by this per queued request (memory, GC: a collapse).
        client_timeout: a response slower than this is not goodput (the client gave up).
        slow: (start, end, factor): the downstream is ``factor`` times slower meanwhile.
        hang: (start, seconds): from ``start`` on, every request awaits a downstream
            that times out after ``seconds`` (no worker busy meanwhile) and fails.
        seed: the random seed (runs are deterministic).
    """

    name: str
    phases: tuple[tuple[float, float], ...]
    workers: int = 8
    median: float = 0.020
    sigma: float = 0.5
    contention: float = 0.02
    queue_contention: float = 0.0
    client_timeout: float = 1.0
    slow: tuple[float, float, float] | None = None
    hang: tuple[float, float] | None = None
    seed: int = 1

    @property
    def capacity(self) -> float:
        """Requests per second the pool completes with every worker busy."""
        mean = self.median * math.exp(self.sigma**2 / 2)
        return self.workers / (mean * (1 + self.contention * (self.workers - 1)))

    @property
    def duration(self) -> float:
        return sum(seconds for seconds, _ in self.phases)

    def load(self, now: float) -> float:
        edge = 0.0
        for seconds, load in self.phases:
            edge += seconds
            if now < edge:
                return load
        return self.phases[-1][1]


@dataclass
class Result:
    """One run: every request, and the limit sampled every 100 ms."""

    scenario: Scenario
    arrived: list[float] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    #: latency of the response, or ``-1.0`` for a shed request
    latency: list[float] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    limits: list[tuple[float, float]] = field(default_factory=list)
    sheds_below: int = 0


def default_gate(
    config: ControllerConfig | None = None, *, shares: tuple[float, ...] = SHARES
) -> Callable[[float], OverloadGate]:
    """A gate factory with the simulator's defaults (latency target 95 ms)."""
    cfg = config or ControllerConfig(initial=40, min=8, max=160, latency_target=0.095, warmup=10.0,
                                      window=1.0, min_samples=100, increase=0.5, backoff=0.95)
    return lambda now: OverloadGate(cfg, shares, now)


def simulate(scenario: Scenario, gate_factory: Callable[[float], OverloadGate] | None) -> Result:
    """Run ``scenario`` through a gate (``None``: no protection); deterministic per seed."""
    rng = random.Random(scenario.seed)
    gate = gate_factory(0.0) if gate_factory is not None else None
    result = Result(scenario)
    capacity = scenario.capacity
    mu = math.log(scenario.median)
    events: list[tuple[float, int, int, int]] = []  # (time, seq, kind, request index)
    seq = 0
    ARRIVE, FINISH, SAMPLE = 0, 1, 2
    tickets: dict[int, Ticket | None] = {}
    failed: set[int] = set()
    queue: deque[int] = deque()
    busy = 0
    end = scenario.duration

    def push(at: float, kind: int, index: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, index))

    def start(index: int, now: float) -> None:
        nonlocal busy
        if scenario.hang is not None and now >= scenario.hang[0]:
            # an awaited call that times out: the request waits, no worker is busy
            failed.add(index)
            push(now + scenario.hang[1], FINISH, index)
            return
        busy += 1
        service = rng.lognormvariate(mu, scenario.sigma)
        service *= 1 + scenario.contention * (busy - 1) + scenario.queue_contention * len(queue)
        if scenario.slow is not None and scenario.slow[0] <= now < scenario.slow[1]:
            service *= scenario.slow[2]
        push(now + service, FINISH, index)

    push(rng.expovariate(capacity * scenario.load(0.0)), ARRIVE, -1)
    push(0.0, SAMPLE, -1)
    while events:
        now, _, kind, index = heapq.heappop(events)
        if kind == ARRIVE:
            if now >= end:
                continue
            push(now + rng.expovariate(capacity * scenario.load(now)), ARRIVE, -1)
            r = rng.random()
            c = 0
            acc = MIX[0]
            while r > acc and c < len(MIX) - 1:
                c += 1
                acc += MIX[c]
            index = len(result.arrived)
            result.arrived.append(now)
            result.cls.append(c)
            result.latency.append(-1.0)
            result.ok.append(False)
            ticket = gate.acquire(c, now) if gate is not None else None
            if gate is not None and ticket is None:
                continue
            tickets[index] = ticket
            if busy < scenario.workers:
                start(index, now)
            else:
                queue.append(index)
        elif kind == FINISH:
            bad = index in failed
            if not bad:
                busy -= 1
            latency = now - result.arrived[index]
            result.latency[index] = latency
            result.ok[index] = not bad and latency <= scenario.client_timeout
            ticket = tickets.pop(index)
            if gate is not None and ticket is not None:
                gate.release(ticket, now, dropped=bad)
            if queue:
                start(queue.popleft(), now)
        elif now < end:
            result.limits.append((now, gate.limit if gate is not None else math.nan))
            push(now + 0.1, SAMPLE, -1)
    return result


def _p99(values: list[float]) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def _limit_at(result: Result, at: float) -> float:
    best = math.nan
    for t, limit in result.limits:
        if t > at:
            break
        best = limit
    return best


def goals(result: Result, up: float, down: float) -> dict[str, float]:
    """The issue's measured goals for a step scenario (load up at ``up``, down at ``down``).

    Everything "in overload" counts from 5 s after the step up to the step down.
    """
    sc = result.scenario
    from_, to = up + 5.0, down
    crit_base = [lat for t, c, lat in zip(result.arrived, result.cls, result.latency, strict=True)
                 if 5.0 <= t < up and c == 0 and lat >= 0]
    crit = [i for i, t in enumerate(result.arrived) if from_ <= t < to and result.cls[i] == 0]
    crit_lat = [result.latency[i] for i in crit if result.latency[i] >= 0]
    good = sum(1 for i, t in enumerate(result.arrived) if from_ <= t < to and result.ok[i])
    buckets: dict[int, list[list[int]]] = {}
    for i, t in enumerate(result.arrived):
        if from_ <= t < to:
            counts = buckets.setdefault(int(t), [[0, 0] for _ in CLASSES])[result.cls[i]]
            counts[0] += 1
            counts[1] += result.ok[i]
    violations = 0
    for counts in buckets.values():
        avail = [ok / n if n else 1.0 for n, ok in counts]
        violations += sum(1 for a, b in zip(avail[1:], avail, strict=False) if a > b + 1e-12)
    steady = [limit for t, limit in result.limits if up + STEADY_AFTER <= t < to]
    mean = statistics.fmean(steady) if steady else math.nan
    before = _limit_at(result, up)
    after = _limit_at(result, down + 10.0)
    return {
        "capacity_rps": sc.capacity,
        "critical_p99_unloaded_ms": _p99(crit_base) * 1000,
        "critical_p99_ms": _p99(crit_lat) * 1000,
        "critical_p99_ratio": _p99(crit_lat) / _p99(crit_base),
        "critical_availability": sum(result.ok[i] for i in crit) / max(1, len(crit)),
        "goodput_ratio": good / (to - from_) / sc.capacity,
        "monotonicity_violations": float(violations),
        "limit_cv": statistics.pstdev(steady) / mean if steady and mean == mean else math.nan,
        "limit_before": before,
        "limit_after_10s": after,
        "recovery_ratio": after / before,
    }


def step(seconds: float = 60.0) -> Scenario:
    """0.5x of capacity, then 3x, then 0.5x again, ``seconds`` each."""
    return Scenario("step", ((seconds, 0.5), (seconds, 3.0), (seconds, 0.5)))


SCENARIOS: dict[str, Scenario] = {
    "step": step(),
    "steady_70": Scenario("steady_70", ((600.0, 0.7),)),
    "stable_timeouts": Scenario("stable_timeouts", ((90.0, 0.5),), hang=(30.0, 1.0)),
    "slow_downstream": Scenario("slow_downstream", ((90.0, 0.8),), slow=(30.0, 60.0, 3.0)),
    "collapse": Scenario("collapse", ((30.0, 0.5), (60.0, 3.0)), queue_contention=0.01),
}


def main() -> None:
    sc = SCENARIOS["step"]
    for label, factory in (("protected", default_gate()), ("unprotected", None)):
        result = simulate(sc, factory)
        print(label, {k: round(v, 4) for k, v in goals(result, 60.0, 120.0).items()})


if __name__ == "__main__":
    main()
