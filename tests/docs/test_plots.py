"""docs/plots.py: one committed plot per algorithm, drawn from the real functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from ratelimit_mw.core.rates import ALGORITHMS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _plots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_plots", DOCS / "plots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plots = _plots()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_has_a_committed_plot_shown_on_its_page(algorithm: str) -> None:
    image = DOCS / "img" / f"algorithm_{algorithm}.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](img/algorithm_{algorithm}.png)" in (DOCS / "algorithms.md").read_text(encoding="utf-8")


def _most_in_any_period(times: list[float], period: float) -> int:
    return max(sum(1 for u in times if t <= u < t + period) for t in times)


def test_the_plotted_decisions_show_what_the_page_says() -> None:
    admitted = {name: [at for _, at in plots.simulate(name)] for name in ALGORITHMS}
    sent = plots.traffic()
    assert all(0 < len(times) < len(sent) for times in admitted.values())
    assert _most_in_any_period(admitted["sliding_log"], 10.0) == 10           # exact moving window
    assert _most_in_any_period(admitted["fixed_window"], 10.0) >= 19          # the 2x at a window edge
    assert plots.simulate("gcra") == plots.simulate("token_bucket")          # the same meter
    shaped = plots.simulate("leaky_bucket")
    assert any(at > arrival for arrival, at in shaped)                       # requests are held


def test_the_script_draws_every_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert plots.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"algorithm_{a}.png" for a in ALGORITHMS)
