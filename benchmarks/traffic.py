"""The seed's traffic model as a send schedule, and the exact outcome it predicts.

Model: 12,000 API keys; requests arrive as a Poisson process at 500 req/s, with
4-second bursts at 1,200 req/s; the key of each request is drawn from a Zipf
distribution (exponent 1) over the keys, so a few clients are heavy (the top one
sends ~10% of the traffic, far over its 10/s) and most are light. Each key has the
demo's limits on ``GET /resource`` (``policies.example.yaml``: a 40-token bucket
refilled at 10/s, and 10,000/day), checked together, all-or-nothing.

Prediction: GCRA simulated per key over the schedule (an independent few lines,
not the package's code). A server decides with its own clock, a little after
the scheduled time, and that delay varies; a request scheduled within ``margin``
seconds of the instant its key's bucket admits the next request could fall on
either side. The schedule is therefore made *robust*: such a request is moved to
``margin`` after that instant, so as long as the delays of two requests of one
key differ by less than ``margin``, the server's decisions are exactly the
predicted ones. How many were moved is reported.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Bucket", "Schedule", "build_schedule", "predict"]


@dataclass(frozen=True)
class Bucket:
    """One GCRA limit: emission interval ``T`` and tolerance ``tau`` (capacity x T), in seconds."""

    interval: float
    tolerance: float


@dataclass
class Schedule:
    """Send times (seconds from the start, ascending) and the key index of each request."""

    times: list[float]
    keys: list[int]
    key_count: int
    moved: int = 0
    description: dict[str, float | int | str] = field(default_factory=dict)


def _rate_at(t: float, steady: float, burst: float, bursts: Sequence[tuple[float, float]]) -> float:
    return burst if any(start <= t < end for start, end in bursts) else steady


def build_schedule(
    *,
    duration: float,
    steady: float,
    burst: float,
    bursts: Sequence[tuple[float, float]],
    key_count: int,
    buckets: Sequence[Bucket],
    margin: float,
    zipf: float = 1.0,
    seed: int = 20240601,
) -> Schedule:
    """Poisson arrivals at ``steady`` req/s (``burst`` inside ``bursts``), Zipf keys, robust to ``margin``."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** zipf for rank in range(key_count)]
    cumulative: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    arrivals: list[tuple[float, int, int]] = []
    t = 0.0
    seq = 0
    while True:
        t += rng.expovariate(_rate_at(t, steady, burst, bursts))
        if t >= duration:
            break
        key = bisect.bisect_left(cumulative, rng.random() * total)
        arrivals.append((t, seq, min(key, key_count - 1)))
        seq += 1
    times, keys, moved = _robust(arrivals, buckets, margin)
    return Schedule(times, keys, key_count, moved, {
        "duration_s": duration, "steady_rps": steady, "burst_rps": burst,
        "bursts": ", ".join(f"{a:g}-{b:g}s" for a, b in bursts), "keys": key_count, "zipf_exponent": zipf,
        "margin_ms": margin * 1000, "requests": len(times), "distinct_keys_sent": len(set(keys)),
    })


def _robust(
    arrivals: list[tuple[float, int, int]], buckets: Sequence[Bucket], margin: float
) -> tuple[list[float], list[int], int]:
    """Replay in time order; a request within ``margin`` of its key's next admission instant moves after it."""
    heap = list(arrivals)
    heapq.heapify(heap)
    tat: list[dict[int, float]] = [{} for _ in buckets]
    times: list[float] = []
    keys: list[int] = []
    moved_ids: set[int] = set()
    while heap:
        t, seq, key = heapq.heappop(heap)
        shift_to = None
        for state, bucket in zip(tat, buckets):
            previous = state.get(key)
            if previous is None:
                continue
            admits_at = previous + bucket.interval - bucket.tolerance
            if abs(t - admits_at) < margin:
                shift_to = max(shift_to or 0.0, admits_at + margin * 1.001)
        if shift_to is not None:
            moved_ids.add(seq)
            heapq.heappush(heap, (shift_to, seq, key))
            continue
        _decide(tat, buckets, key, t)
        times.append(t)
        keys.append(key)
    return times, keys, len(moved_ids)


def _decide(tat: list[dict[int, float]], buckets: Sequence[Bucket], key: int, t: float) -> bool:
    """GCRA over every bucket of the route, all-or-nothing; updates ``tat`` when admitted."""
    new: list[float] = []
    for state, bucket in zip(tat, buckets):
        start = max(state.get(key, t), t)
        after = start + bucket.interval
        if after - t > bucket.tolerance + 1e-6:
            return False
        new.append(after)
    for state, value in zip(tat, new):
        state[key] = value
    return True


def predict(times: Sequence[float], keys: Sequence[int], buckets: Sequence[Bucket]) -> list[bool]:
    """Allowed (True) or blocked for every request of a schedule, in order."""
    tat: list[dict[int, float]] = [{} for _ in buckets]
    order = sorted(range(len(times)), key=times.__getitem__)
    out = [False] * len(times)
    for i in order:
        out[i] = _decide(tat, buckets, keys[i], times[i])
    return out
