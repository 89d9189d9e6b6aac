"""Target 1: in-memory check cost, ours (gcra, token bucket) vs limits and throttled-py.

Every subject checks a limit nobody reaches (the allowed path), against 1 key and
against 12,000 keys visited round-robin (after one warm-up pass, so the states
exist: the steady state of 12,000 active clients). Ours gets a prepared quota, as
the middleware passes it; the peers get their parsed limit objects, as their docs
show. The string form (``limiter.check(key, "10/second")``) is reported as info, and so
is an in-flight limit (``N concurrent``): the check plus the release of its slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.apps import ALLOW, PEER_ALLOW
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult, interleave, timed

NAME = "inmem"
TITLE = "In-memory check, us per check (target 1)"
KEYS = 12_000


def _ours(algorithm: str) -> Callable[[str], Any]:
    from ratelimit_mw import Limiter

    limiter = Limiter("memory://")
    quota = limiter.quota(f"{ALLOW}; algorithm={algorithm}", scope="bench")
    check = limiter.check

    def call(key: str) -> Any:
        return check(key, quota)

    return call


def _ours_in_flight() -> Callable[[str], Any]:
    """An in-flight limit nobody reaches: take the slot and give it back, as a request does."""
    from ratelimit_mw import Limiter

    limiter = Limiter("memory://")
    quota = limiter.quota("1000000 concurrent", scope="bench")
    check = limiter.check

    def call(key: str) -> Any:
        decision = check(key, quota)
        decision.lease.release()
        return decision

    return call


def _ours_string() -> Callable[[str], Any]:
    from ratelimit_mw import Limiter

    limiter = Limiter("memory://")
    check = limiter.check
    return lambda key: check(key, ALLOW)


def _limits(strategy: str) -> Callable[[str], Any]:
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    item = parse(PEER_ALLOW if strategy == "fixed" else "1000/second")
    storage = MemoryStorage()
    limiter = (FixedWindowRateLimiter if strategy == "fixed" else MovingWindowRateLimiter)(storage)
    hit = limiter.hit
    return lambda key: hit(item, key)


def _throttled(algorithm: str) -> Callable[[str], Any]:
    from throttled import MemoryStore, Throttled, rate_limiter

    store = MemoryStore(options={"MAX_SIZE": 100_000})  # default 1,024 would evict at 12,000 keys
    throttle = Throttled(using=algorithm, quota=rate_limiter.per_sec(10, burst=10**9), store=store)
    limit = throttle.limit
    return lambda key: limit(key)


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    checks = ctx.n(20_000, 300)
    one = ["client-1"] * checks
    many_pool = [f"client-{i}" for i in range(KEYS)]
    many = (many_pool * (checks // KEYS + 1))[:checks] if not ctx.smoke else many_pool[:checks]

    factories: list[tuple[str, str, str, Callable[[], Callable[[str], Any]]]] = [
        ("ours gcra", "ours", "", lambda: _ours("gcra")),
        ("ours token_bucket", "ours", "", lambda: _ours("token_bucket")),
        ("ours gcra, limit as a string", "info", f"limiter.check(key, {ALLOW!r})", _ours_string),
        ("ours in-flight limit, take and give back", "info", "'1000000 concurrent': check + lease.release()",
         _ours_in_flight),
        ("limits fixed window", "baseline", "", lambda: _limits("fixed")),
        ("limits moving window", "peer", "limit 1000/second (moving window keeps one entry per hit)",
         lambda: _limits("moving")),
        ("throttled-py gcra", "peer", "", lambda: _throttled("gcra")),
        ("throttled-py token_bucket", "peer", "", lambda: _throttled("token_bucket")),
    ]
    subjects = []
    for keyset, keys in (("1 key", one), (f"{KEYS:,} keys", many)):
        for label, kind, note, factory in factories:
            if label.startswith("limits moving") and keyset == "1 key":
                continue  # 1 key x 20k hits would measure list growth, not the check
            peer = "limits" if label.startswith("limits") else "throttled-py" if label.startswith("throttled") else None
            reason = missing_peer(peer) if peer else None
            if reason:
                result.notes.append(f"{label}: skipped, {reason}")
                continue
            call = factory()
            for key in dict.fromkeys(keys if len(keys) <= KEYS else many_pool):
                call(key)  # warm-up: every state exists before timing
            sample = result.sample(f"{label} ({keyset})", "us/check", kind=kind, note=note)

            def measure(call: Callable[[str], Any] = call, keys: list[str] = keys) -> float:
                def loop() -> None:
                    for key in keys:
                        call(key)

                return timed(loop) / len(keys) * 1e6

            subjects.append((sample, measure))
    interleave(subjects, ctx.repeats)
    for algorithm in ("gcra", "token_bucket"):
        for keyset in ("1 key", f"{KEYS:,} keys"):
            result.add_ratio_target(
                1, f"in-memory {algorithm} ({keyset}) cost vs limits fixed window",
                f"ours {algorithm} ({keyset})", f"limits fixed window ({keyset})", 1 / 3, "<=",
            )
    return result
