"""Worker for the multi-process accuracy test (a module of its own so that
``spawn`` children import only this, not pytest and the test module)."""

from __future__ import annotations

import time
from typing import Any


def hammer(url: str, algorithms: list[str], attempts: int, ready: Any, go: Any, out: Any) -> None:
    """Check one shared key per algorithm ``attempts`` times; report admissions.

    Signals ``ready`` once imported and connected, then waits for ``go`` so that
    all processes race together; gives up after 20 s so a stuck server cannot
    hang the test.
    """
    from ratelimit_mw.core.rates import parse_rate
    from ratelimit_mw.limiter import Limiter

    # deny on errors, a generous timeout, no local cache: every check is a real,
    # contended round trip, and a timeout could never over-admit.
    limiter = Limiter(url, on_backend_error="deny", over_limit_cache=0, socket_timeout=2.0, socket_connect_timeout=2.0)
    rules = {a: parse_rate("50/week", a) for a in algorithms}
    limiter.peek("warm-up", rules[algorithms[0]])  # connect before the race
    admitted = dict.fromkeys(algorithms, 0)
    degraded = 0
    ready.put(True)
    if go.wait(30):
        deadline = time.monotonic() + 20.0
        for _ in range(attempts):
            if time.monotonic() > deadline:
                break
            for algorithm in algorithms:
                d = limiter.check("shared-client", rules[algorithm], scope=f"hammer-{algorithm}")
                admitted[algorithm] += d.allowed
                degraded += d.degraded
    limiter.close()
    out.put((admitted, degraded))


def ahammer(url: str, algorithms: list[str], attempts: int, ready: Any, go: Any, out: Any) -> None:
    """:func:`hammer` with ``acheck``: 8 tasks per process race on one event loop, so
    the checks are coalesced into batches that race the other processes' batches."""
    import asyncio

    from ratelimit_mw.core.rates import parse_rate
    from ratelimit_mw.limiter import Limiter

    async def main() -> tuple[dict[str, int], int]:
        limiter = Limiter(url, on_backend_error="deny", over_limit_cache=0, socket_timeout=2.0,
                          socket_connect_timeout=2.0)
        rules = {a: parse_rate("50/week", a) for a in algorithms}
        await limiter.apeek("warm-up", rules[algorithms[0]])  # connect before the race
        admitted = dict.fromkeys(algorithms, 0)
        degraded = 0
        ready.put(True)
        started = await asyncio.get_running_loop().run_in_executor(None, go.wait, 30)
        deadline = time.monotonic() + 20.0

        async def task(share: int) -> None:
            nonlocal degraded
            for _ in range(share):
                if time.monotonic() > deadline:
                    return
                for algorithm in algorithms:
                    d = await limiter.acheck("shared-client", rules[algorithm], scope=f"ahammer-{algorithm}")
                    admitted[algorithm] += d.allowed
                    degraded += d.degraded

        if started:
            await asyncio.gather(*(task(attempts // 8) for _ in range(8)))
        await limiter.aclose()
        return admitted, degraded

    out.put(asyncio.run(main()))
