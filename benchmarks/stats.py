"""Samples, paired ratios and the result records the runner prints and writes as JSON.

Every timed subject of a section is run in the same repeat loop as the others
(interleaved: subject A, B, C, A, B, C, ...), so a burst of load from elsewhere on
the machine hits all of them alike. A ratio between two subjects is computed per
repeat (the pair ran seconds apart) and reported as the median of those ratios with
their min and max.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Sample", "SectionResult", "Target", "interleave", "paired_ratio", "percentile", "timed"]


@dataclass
class Sample:
    """Repeated measurements of one subject, in ``unit``."""

    subject: str
    unit: str
    values: list[float] = field(default_factory=list)
    note: str = ""
    #: "ours", "peer", "baseline" or "info": how the table labels the row.
    kind: str = "ours"

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "unit": self.unit, "kind": self.kind, "median": self.median,
            "min": self.min, "max": self.max, "values": self.values, "note": self.note,
        }


@dataclass
class Target:
    """One of the issue's targets: a ratio, the bound it must meet, and the verdict.

    ``ratio`` is the median of the paired per-repeat ratios, ``low``/``high`` their
    min and max. ``op`` is ``"<="`` or ``">="``; ``passed`` is ``None`` when the
    target could not be measured (``detail`` says why).
    """

    number: int
    text: str
    ratio: float | None
    bound: float
    op: str
    low: float | None = None
    high: float | None = None
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio <= self.bound if self.op == "<=" else self.ratio >= self.bound

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


@dataclass
class SectionResult:
    """What one section hands back to the runner."""

    name: str
    title: str
    samples: list[Sample] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def sample(self, subject: str, unit: str, *, kind: str = "ours", note: str = "") -> Sample:
        found = Sample(subject, unit, note=note, kind=kind)
        self.samples.append(found)
        return found

    def get(self, subject: str) -> Sample:
        for s in self.samples:
            if s.subject == subject:
                return s
        raise KeyError(subject)

    def has(self, subject: str) -> bool:
        return any(s.subject == subject for s in self.samples)

    def add_ratio_target(
        self, number: int, text: str, numerator: str, denominator: str, bound: float, op: str
    ) -> Target:
        """A target on ``numerator / denominator``, paired per repeat."""
        if not (self.has(numerator) and self.has(denominator)):
            missing = numerator if not self.has(numerator) else denominator
            target = Target(number, text, None, bound, op, detail=f"not measured: {missing}")
        else:
            ratio, low, high = paired_ratio(self.get(numerator).values, self.get(denominator).values)
            target = Target(number, text, ratio, bound, op, low, high, detail=f"{numerator} / {denominator}")
        self.targets.append(target)
        return target

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "samples": [s.as_dict() for s in self.samples],
            "targets": [t.as_dict() for t in self.targets], "notes": self.notes, "extra": self.extra,
        }


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, float, float]:
    """Median, min and max of ``numerator[i] / denominator[i]`` over the repeats both have."""
    ratios = [a / b for a, b in zip(numerator, denominator) if b]
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(ratios), min(ratios), max(ratios)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank on sorted data; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def timed(run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes, after a full collection (so garbage of earlier runs is not billed)."""
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleave(
    subjects: Sequence[tuple[Sample, Callable[[], float]]], repeats: int
) -> None:
    """Run every ``measure()`` once per repeat, in turn, appending its value to its sample.

    Every other repeat runs the subjects in reverse order (ABC, CBA, ...): on a
    machine whose speed drifts during a repeat (shared hosts do), a fixed order
    would bill the drift to whichever subject always runs last.
    """
    for repeat in range(repeats):
        for sample, measure in subjects if repeat % 2 == 0 else reversed(subjects):
            sample.values.append(measure())
