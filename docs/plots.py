"""Draws docs/img/algorithm_<name>.png: admitted requests over time, per algorithm.

Every algorithm gets the same traffic and the same limit, and the figures come from
the real functions of ``ratelimit_mw.core.algorithms`` (one state, stored only when
a request is admitted, exactly as the backends do). Regenerate with::

    .venv/bin/python docs/plots.py          # needs the docs group (matplotlib)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ratelimit_mw.core.algorithms import step
from ratelimit_mw.core.rates import ALGORITHMS, Rule, parse_rate

#: The limit every plot uses: 10 requests per 10 seconds (capacity 10, refill 1/s).
RATE = "10/10s"
#: How long the plotted traffic lasts, in seconds.
DURATION = 40.0
OUT = Path(__file__).parent / "img"


def traffic() -> list[float]:
    """Arrival times: a trickle, a burst on each side of t=10 s, then a steady overload."""
    times = [float(t) for t in range(0, 8)]                # 1 request/s: under the limit
    times += [9.5 + i * 0.01 for i in range(15)]             # 15 just before t=10 s
    times += [10.05 + i * 0.01 for i in range(15)]           # 15 just after it
    times += [12.0 + i * 0.25 for i in range(int((DURATION - 12.0) / 0.25))]  # 4 requests/s
    return sorted(times)


def rule_for(algorithm: str) -> Rule:
    return parse_rate(RATE, algorithm)


def simulate(algorithm: str) -> list[tuple[float, float]]:
    """``(arrival, passed_at)`` for every admitted request (``passed_at`` > arrival when shaped)."""
    rule = rule_for(algorithm)
    state: Any = None
    admitted = []
    for now in traffic():
        result = step(state, now, rule, 1)
        if result.allowed:
            state = result.state
            admitted.append((now, now + result.delay))
    return admitted


def draw(algorithm: str, out_dir: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrivals = traffic()
    passed = sorted(at for _, at in simulate(algorithm))
    fig, ax = plt.subplots(figsize=(7.0, 3.0), dpi=100)
    ax.step(arrivals, range(1, len(arrivals) + 1), where="post", color="0.7", label=f"sent ({len(arrivals)} in all)")
    ax.step(passed, range(1, len(passed) + 1), where="post", color="C0", linewidth=2, label="admitted")
    ax.plot([0.0, DURATION], [10.0, 10.0 + DURATION], linestyle=":", color="C3", label="10 at once, then 1/s")
    ax.axvline(10.0, color="0.85", linewidth=0.8)
    ax.set_xlim(0, DURATION)
    ax.set_ylim(0, 60)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests (cumulative)")
    ax.set_title(f"{algorithm}, {RATE}: {len(passed)} of {len(arrivals)} admitted")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"algorithm_{algorithm}.png"
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else OUT
    for algorithm in ALGORITHMS:
        print(draw(algorithm, out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
