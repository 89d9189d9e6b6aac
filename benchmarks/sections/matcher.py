"""Target 9: route matching with 1,000 routes vs 10, with ``benchmarks/bench_matcher.py``'s logic.

The tables, the request mix and the timing loop are that script's (``build``,
``requests``, ``run_once``, ``linear_scan``); this section only runs them in the
suite's interleaved repeats, so the figure lands in the same table and JSON.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from benchmarks import bench_matcher
from benchmarks.context import Context
from benchmarks.stats import SectionResult

NAME = "matcher"
TITLE = "Route matching, ns per PolicySet.match (target 9)"


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(20_000, 500)
    subjects: list[tuple[str, str, Callable[[str, str], object], list[tuple[str, str]]]] = []
    for n in (10, 1000):
        policies, probes = bench_matcher.build(n)
        reqs = bench_matcher.requests(probes, count)
        naive = bench_matcher.linear_scan(policies)
        for method, path in reqs[:200]:
            if policies.match(method, path) != naive(method, path):
                raise RuntimeError(f"matcher and linear scan disagree on {method} {path}")
        subjects.append((f"{n} routes, indexed", "ours", policies.match, reqs))
        subjects.append((f"{n} routes, linear scan", "info", naive, reqs[: max(count // 10, 50)]))
    samples = {name: result.sample(name, "ns/match", kind=kind) for name, kind, _, _ in subjects}
    gc.disable()
    try:
        for _ in range(ctx.repeats):
            for name, _, func, reqs in subjects:
                samples[name].values.append(bench_matcher.run_once(func, reqs))
    finally:
        gc.enable()
    result.add_ratio_target(9, "route matching, 1,000 routes vs 10", "1000 routes, indexed", "10 routes, indexed",
                            2.0, "<=")
    return result
