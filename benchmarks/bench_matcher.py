"""Route matching cost with 10 vs 1,000 routes, side by side in one run.

Usage: ``.venv/bin/python benchmarks/bench_matcher.py [--repeats 15]``

Both tables mix the same kinds of routes (static, ``{param}``, ``{id:int}``, ``*``,
``**``, ``re:``, a shared ``/api/v1`` prefix, method filters); requests hit routes
spread over the table, plus 10% misses. Prints the median nanoseconds per
``PolicySet.match`` call, and a naive first-match linear scan for reference.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

from ratelimit_mw.policy.loader import PolicySet, load_policies
from ratelimit_mw.policy.model import RouteMatch
from ratelimit_mw.policy.paths import compile_template

KINDS = (
    ("/r{i}/x", "/r{i}/x"),
    ("/p{i}/{{id}}", "/p{i}/abc"),
    ("/n{i}/{{id:int}}/tail", "/n{i}/77/tail"),
    ("/g{i}/*/end", "/g{i}/mid/end"),
    ("/d{i}/**", "/d{i}/a/b/c"),
    ("/api/v1/t{i}/{{id}}", "/api/v1/t{i}/9"),
    ("/api/v1/s{i}", "/api/v1/s{i}"),
)
#: A couple of routes that cannot be indexed (leading parameter, regex), as real files have.
UNINDEXED = (("re:^/legacy/v\\d+/ping$", "/legacy/v2/ping"), ("/{tenant}/dashboard", "/acme/dashboard"))


def build(n: int) -> tuple[PolicySet, dict[str, list[tuple[str, str]]]]:
    """A table of ``n`` routes, and a sample request for each route, grouped by kind."""
    lines = ["version: 1", "routes:"]
    probes: dict[str, list[tuple[str, str]]] = {}
    for template, path in UNINDEXED:
        lines.append(f"  - {{match: '{template}', limits: [1/second]}}")
        probes.setdefault(template, []).append(("GET", path))
    for i in range(n - len(UNINDEXED)):
        template, path = KINDS[i % len(KINDS)]
        method = ("GET", "POST")[i % 2]
        lines.append(f"  - {{match: '{method} {template.format(i=i)}', limits: [1/second]}}")
        probes.setdefault(template, []).append((method, path.format(i=i)))
    return load_policies("\n".join(lines) + "\n", env={}), probes


def requests(probes: dict[str, list[tuple[str, str]]], count: int, seed: int = 7) -> list[tuple[str, str]]:
    """The same mix for every table size: a kind uniformly, then a route of that kind; 10% misses."""
    rng = random.Random(seed)
    kinds = sorted(probes)
    out = [rng.choice(probes[rng.choice(kinds)]) for _ in range(count)]
    for i in range(0, count, 10):
        out[i] = ("GET", f"/missing/{i}")
    return out


def linear_scan(policies: PolicySet) -> Callable[[str, str], RouteMatch | None]:
    """The naive matcher: try every route in order (same result type as ``match``)."""
    routes = policies.routes
    regexes = [compile_template(str(route.extra["path"])).regex for route in routes]
    methods = [route.methods or None for route in routes]

    def match(method: str, path: str) -> RouteMatch | None:
        for index, regex in enumerate(regexes):
            allowed = methods[index]
            if allowed is None or method in allowed:
                found = regex.fullmatch(path)
                if found is not None:
                    return RouteMatch(routes[index], found.groupdict())
        return None

    return match


def run_once(func: Callable[[str, str], object], reqs: list[tuple[str, str]]) -> float:
    start = time.perf_counter_ns()
    for method, path in reqs:
        func(method, path)
    return (time.perf_counter_ns() - start) / len(reqs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    subjects: list[tuple[str, Callable[[str, str], object], list[tuple[str, str]]]] = []
    for n in (10, 1000):
        policies, probes = build(n)
        reqs = requests(probes, args.requests)
        naive = linear_scan(policies)
        for method, path in reqs[:500]:  # both measure the same thing
            assert policies.match(method, path) == naive(method, path), (method, path)
        subjects.append((f"{n} indexed", policies.match, reqs))
        subjects.append((f"{n} linear", naive, reqs[: args.requests // 10]))
    # Interleave the subjects in every repeat, so load on the machine hits all alike.
    samples: dict[str, list[float]] = {name: [] for name, _, _ in subjects}
    gc.disable()
    try:
        for _ in range(args.repeats):
            for name, func, reqs in subjects:
                samples[name].append(run_once(func, reqs))
    finally:
        gc.enable()
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"median of {args.repeats} repeats, ns per match")
    print(f"{'routes':>8} {'indexed':>10} {'linear scan':>12}")
    for n in (10, 1000):
        print(f"{n:>8} {med[f'{n} indexed']:>10.0f} {med[f'{n} linear']:>12.0f}")
    print(
        f"1000 vs 10 routes: indexed {med['1000 indexed'] / med['10 indexed']:.2f}x, "
        f"linear {med['1000 linear'] / med['10 linear']:.1f}x"
    )


if __name__ == "__main__":
    main()
