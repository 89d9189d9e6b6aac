"""``benchmarks.profile cold-parts`` still builds its variants (it takes the route's plan
from the engine's router and times its parts, so a change there must show up here)."""

from __future__ import annotations

import pytest

from benchmarks.profile import cold_parts


def test_cold_parts_times_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    rows = cold_parts(repeats=1, count=30, evict_mib=1)
    assert set(rows) == {
        "app: bare Starlette", "app: ours, the plan returns a fixed verdict", "app: ours", "plan",
        "plan: key", "plan: check", "plan: render",
    }
    assert all(hot > 0 and cold > 0 for hot, cold in rows.values())
    assert "ratio to bare" in capsys.readouterr().out
