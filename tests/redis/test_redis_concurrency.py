"""Accuracy under contention: 8 processes share one key; never more than the limit."""

from __future__ import annotations

import multiprocessing

import pytest

from ratelimit_mw.core.rates import ALGORITHMS
from tests.redis.redis_hammer import ahammer, hammer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES = 8
ATTEMPTS = 40  # per process and algorithm: 320 contenders for 50 slots each


@pytest.mark.parametrize("api", ["sync", "async"])
def test_eight_processes_never_exceed_the_limit(redis_url: str, api: str) -> None:
    """async: 8 tasks per process, so coalesced batches race each other too."""
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    target = hammer if api == "sync" else ahammer
    workers = [
        ctx.Process(target=target, args=(redis_url, list(ALGORITHMS), ATTEMPTS, ready, go, out))
        for _ in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready.get(timeout=30)  # every child imported and connected
        go.set()
        results = [out.get(timeout=30) for _ in workers]
    finally:
        go.set()
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)
    assert sum(degraded for _, degraded in results) == 0  # every check reached Redis
    for algorithm in ALGORITHMS:
        total = sum(admitted[algorithm] for admitted, _ in results)
        # 50/week: nothing refills during the test, so exactly the quota is handed out
        assert total == 50, f"{algorithm}: {total} admitted for a limit of 50"
