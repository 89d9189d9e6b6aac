"""Worker for the processes-and-servers accuracy test (a module of its own so that
``spawn`` children import only this, not pytest and the test module)."""

from __future__ import annotations

from typing import Any

#: (variant id, rate text with its algorithm, scope shared with the route)
Target = tuple[str, str, str]


def direct_worker(url: str, api: str, targets: list[Target], keys: list[str], rounds: int,
                  barrier: Any, out: Any) -> None:
    """Check every (target, key) once per round, for ``rounds`` rounds in step with the others.

    ``barrier`` holds every participant (these workers and the HTTP driver) at the
    start and after each round, so all of them contend for every key in every round
    whatever their speed. Reports ``{"row|key": [admitted, checks, degraded]}``.
    ``api="async"`` sends a round's checks concurrently on one event loop, so coalesced
    batches race the other processes too. Deny on errors, a generous timeout and no
    local cache: every check is a real, contended round trip, and a timeout could
    never over-admit.
    """
    from ratelimit_mw.limiter import Limiter

    limiter = Limiter(url, on_backend_error="deny", over_limit_cache=0, socket_timeout=5.0,
                      socket_connect_timeout=5.0)
    counts = {f"{row}|{key}": [0, 0, 0] for row, _, _ in targets for key in keys}
    pairs = [(f"{row}|{key}", f"header:x-client:{key}", rate, scope)
             for row, rate, scope in targets for key in keys]

    def record(name: str, decision: Any) -> None:
        entry = counts[name]
        entry[0] += decision.allowed
        entry[1] += 1
        entry[2] += decision.degraded

    if api == "sync":
        limiter.peek("warm-up", targets[0][1])  # connect before the race
        barrier.wait(60)
        for _ in range(rounds):
            for name, key, rate, scope in pairs:
                record(name, limiter.check(key, rate, scope=scope))
            barrier.wait(60)
        limiter.close()
    else:
        import asyncio

        async def main() -> None:
            loop = asyncio.get_running_loop()
            await limiter.apeek("warm-up", targets[0][1])
            await loop.run_in_executor(None, barrier.wait, 60)
            for _ in range(rounds):
                decisions = await asyncio.gather(*(limiter.acheck(key, rate, scope=scope)
                                                   for _, key, rate, scope in pairs))
                for (name, *_), decision in zip(pairs, decisions):
                    record(name, decision)
                await loop.run_in_executor(None, barrier.wait, 60)
            await limiter.aclose()

        asyncio.run(main())
    out.put(counts)
