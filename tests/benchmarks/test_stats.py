"""The benchmark statistics: the order subjects run in, and how ratios are paired."""

from __future__ import annotations

from benchmarks.stats import Sample, interleave, paired_ratio


def test_interleave_alternates_the_order_of_subjects() -> None:
    calls: list[str] = []
    subjects = []
    for name in "abc":
        sample = Sample(name, "x")
        subjects.append((sample, lambda name=name: calls.append(name) or 1.0))
    interleave(subjects, 4)
    assert "".join(calls) == "abc" "cba" "abc" "cba"
    assert all(len(sample.values) == 4 for sample, _ in subjects)


def test_paired_ratio_pairs_by_repeat() -> None:
    assert paired_ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0]) == (2.0, 1.0, 3.0)
