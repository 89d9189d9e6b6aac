"""The admission gate: class ceilings on one counter, warm-up, shadow, samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.overload import ControllerConfig, LimitChange, OverloadGate, Ticket

SHARES = (1.0, 0.9, 0.8, 0.5)


def gate(**kwargs: object) -> OverloadGate:
    config = ControllerConfig(initial=10, min=2, max=100, latency_target=0.1, min_samples=5, window=1.0)
    return OverloadGate(config, SHARES, 0.0, **kwargs)  # type: ignore[arg-type]


def test_each_class_fills_only_its_share() -> None:
    g = gate()
    admitted = {cls: 0 for cls in range(4)}
    for cls in (3, 2, 1, 0):  # lowest first: each fills up to its ceiling
        while g.acquire(cls, 0.0) is not None:
            admitted[cls] += 1
    assert admitted == {3: 5, 2: 3, 1: 1, 0: 1}
    assert g.inflight == 10
    assert g.shed == [1, 1, 1, 1]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=300))
def test_in_flight_never_above_the_limit_and_higher_classes_pass_first(ops: list[tuple[bool, int]]) -> None:
    g = gate()
    held: list[Ticket] = []
    for release, cls in ops:
        if release and held:
            g.release(held.pop(0), 0.0)
            continue
        before = g.inflight
        ticket = g.acquire(cls, 0.0)
        if ticket is None:
            assert before >= SHARES[cls] * g.limit
            # a lower class (smaller share) would be refused too
            assert all(before >= SHARES[c] * g.limit for c in range(cls, 4))
        else:
            assert before < SHARES[cls] * g.limit
            held.append(ticket)
        assert g.inflight <= g.limit


def test_warmup_and_shadow_observe_without_shedding() -> None:
    config = ControllerConfig(initial=2, min=1, max=10, warmup=30.0)
    warm = OverloadGate(config, (1.0,), 0.0)
    assert all(warm.acquire(0, 10.0) is not None for _ in range(5))
    assert warm.shed == [0] and warm.observed == [3]
    assert warm.acquire(0, 30.0) is None  # warm-up over
    shadow = OverloadGate(ControllerConfig(initial=2, min=1, max=10), (1.0,), 0.0, enforce=False)
    assert all(shadow.acquire(0, 1e9) is not None for _ in range(5))
    assert shadow.observed == [3]


def test_samples_from_before_a_limit_change_are_ignored() -> None:
    changes: list[LimitChange] = []
    g = gate(on_change=changes.append)
    old = g.acquire(0, 0.0)  # started before the change below
    assert old is not None
    for i in range(6):  # slow responses: the first window cuts the limit
        ticket = g.acquire(1, 0.1)
        assert ticket is not None
        g.release(ticket, 0.5 + i * 0.1)
    last = g.acquire(1, 0.9)
    assert last is not None
    g.release(last, 1.2)
    assert [c.new for c in changes] == [5.0]  # p99 far over the target: the hard cut
    # a very slow response of the old generation is no sample: the next window has
    # only the fast one below and too few samples to decide
    g.release(old, 5.0)
    fast = g.acquire(1, 5.0)
    assert fast is not None
    g.release(fast, 5.01)
    assert len(changes) == 1
    assert g.inflight == 0


def test_failures_cut_the_limit_hard() -> None:
    g = gate()
    tickets = [g.acquire(0, 0.0) for _ in range(5)]
    for t in tickets:
        assert t is not None
        g.release(t, 1.0, dropped=True)
    assert g.limit == pytest.approx(5.0)


def test_refuses_shares_outside_zero_one() -> None:
    with pytest.raises(ValueError):
        OverloadGate(ControllerConfig(), (1.0, 0.0), 0.0)
