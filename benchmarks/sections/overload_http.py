"""Issue 17: the simulator's step scenario against a real uvicorn app, with and without protection.

``benchmarks/targets/overload_app.py`` on uvicorn (one worker, loopback): a pool of 8
threads serving a blocking call (median 100 ms). An open-loop Poisson load (httpx,
20% critical / 30% high / 30% normal / 20% sheddable in ``X-Priority``) steps from
0.5x to 3x and back to 0.5x of the pool's capacity; a response slower than 2 s
counts as failed (the client gave up). Reported from the middle of the overload
phase: goodput (good responses per second over capacity), critical availability and
critical p99, with and without the ``overload:`` section. Figures only, no target:
the machine's other load moves them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from benchmarks.context import Context
from benchmarks.servers import PLAIN_UVICORN, Uvicorn
from benchmarks.stats import SectionResult

NAME = "overload_http"
TITLE = "Overload: step 0.5x -> 3x -> 0.5x against uvicorn with 8 workers (issue 17)"

CLASSES = ("critical", "high", "normal", "sheddable")
MIX = (0.2, 0.3, 0.3, 0.2)
WORKERS = 8
MEDIAN = 0.100
TIMEOUT = 2.0


def capacity() -> float:
    return WORKERS / (MEDIAN * math.exp(0.5**2 / 2) * (1 + 0.02 * (WORKERS - 1)))


async def _drive(url: str, phases: tuple[tuple[float, float], ...], seed: int) -> list[tuple[float, int, bool, float]]:
    import httpx

    rng = random.Random(seed)
    rate = capacity()
    out: list[tuple[float, int, bool, float]] = []
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, limits=limits) as client:

        async def one(at: float, cls: int) -> None:
            start = time.monotonic()
            try:
                response = await client.get("/work", headers={"X-Priority": CLASSES[cls]})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latency = time.monotonic() - start
            out.append((at, cls, ok and latency <= TIMEOUT, latency))

        tasks = []
        begin = time.monotonic()
        at = 0.0
        for seconds, load in phases:
            end = at + seconds
            while True:
                at += rng.expovariate(rate * load)
                if at >= end:
                    at = end
                    break
                delay = begin + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                r, cls, acc = rng.random(), 0, MIX[0]
                while r > acc and cls < 3:
                    cls += 1
                    acc += MIX[cls]
                tasks.append(asyncio.create_task(one(at, cls)))
        await asyncio.gather(*tasks)
    return out


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    low, high = (1.0, 3.0) if ctx.smoke else (10.0, 30.0)
    phases = ((low, 0.5), (high, 3.0), (low, 0.5))
    start, stop = low + (1.0 if ctx.smoke else 5.0), low + high
    for label, protect in (("protected", "1"), ("unprotected", "0")):
        env = {"OVERLOAD_PROTECT": protect, "OVERLOAD_MEDIAN_MS": str(round(MEDIAN * 1000))}
        server = Uvicorn("benchmarks.targets.overload_app:app", env, log_dir=ctx.workdir, name=f"overload-{label}",
                         options=PLAIN_UVICORN).wait_ready()
        try:
            rows = asyncio.run(_drive(server.url, phases, seed=1))
        finally:
            server.stop()
        window = [r for r in rows if start <= r[0] < stop]
        critical = [r for r in window if r[1] == 0]
        crit_ok = sorted(r[3] for r in critical if r[2])
        p99 = crit_ok[min(len(crit_ok) - 1, int(len(crit_ok) * 0.99))] * 1000 if crit_ok else math.nan
        result.sample(f"goodput / capacity, {label}", "ratio", kind="info").values.append(
            sum(r[2] for r in window) / (stop - start) / capacity())
        result.sample(f"critical availability, {label}", "ratio", kind="info").values.append(
            sum(r[2] for r in critical) / max(1, len(critical)))
        result.sample(f"critical p99, {label}", "ms", kind="info").values.append(p99)
        before = sorted(r[3] for r in rows if r[0] < low and r[1] == 0 and r[2])
        result.sample(f"critical p99 at 0.5x, {label}", "ms", kind="info").values.append(
            before[min(len(before) - 1, int(len(before) * 0.99))] * 1000 if before else math.nan)
    result.notes.append(f"capacity {capacity():.0f} req/s (8 workers, median 100 ms); overload window "
                        f"{start:.0f}-{stop:.0f} s; one run each (figures only)")
    return result
