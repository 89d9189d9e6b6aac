"""Failure policy end to end: real Redis faults through ``Limiter.check``/``acheck``.

For each fault (stopped mid-run, paused with SIGSTOP, restarted empty, refusing
connections at start-up) and each ``on_backend_error`` mode (allow, deny, memory):

* no exception escapes the check;
* while Redis is out, decisions are the configured ones, marked ``degraded``;
* no check takes longer than a generous bound (a hang detector: the socket
  timeout is 50 ms and the breaker skips Redis once open);
* once Redis is back, checks return to it (``degraded=False``) by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.limiter import Limiter
from tests.support.redis_servers import RedisServer, ServerBinary, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MODES = ("allow", "deny", "memory")
LIMIT = "3/minute"  # the memory fallback admits exactly 3, then denies
MAX_CHECK_SECONDS = 1.0  # hang detector, not a benchmark
RECOVERY_SECONDS = 5.0


def _limiter(url: str, mode: str) -> Limiter:
    return Limiter(
        url,
        on_backend_error=mode,
        breaker_threshold=2,
        breaker_recovery=0.2,
        over_limit_cache=0,
        socket_timeout=0.05,
        socket_connect_timeout=0.05,
    )


class Runner:
    """Sync or async checks through one interface, each one timed."""

    def __init__(self, limiter: Limiter, api: str) -> None:
        self.limiter = limiter
        self.api = api
        self.slowest = 0.0

    async def check(self, key: str) -> Decision:
        start = time.perf_counter()
        if self.api == "sync":
            decision = self.limiter.check(key, LIMIT)
        else:
            decision = await self.limiter.acheck(key, LIMIT)
        elapsed = time.perf_counter() - start
        self.slowest = max(self.slowest, elapsed)
        assert elapsed <= MAX_CHECK_SECONDS, f"a check took {elapsed:.3f}s"
        return decision

    async def healthy(self, key: str) -> None:
        d = await self.check(key)
        assert d.allowed and not d.degraded, d

    async def degraded(self, mode: str, key: str) -> None:
        """Checks while Redis is out (failing, then skipped by the open breaker):
        all degraded, all decided by the configured mode."""
        decisions = [await self.check(f"{key}-{i // 4}") for i in range(8)]
        assert all(d.degraded for d in decisions), decisions
        if mode == "allow":
            assert all(d.allowed for d in decisions)
        elif mode == "deny":
            assert not any(d.allowed for d in decisions)
            assert all(d.retry_after > 0 for d in decisions)
        else:  # memory: the same limit, per process: 3 of every 4 checks of one key pass
            assert [d.allowed for d in decisions] == [True, True, True, False] * 2

    async def recovers(self, key: str) -> None:
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:
            d = await self.check(key)
            if not d.degraded:
                assert d.allowed
                return
            assert time.monotonic() < deadline, "never returned to Redis"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.api == "sync":
            self.limiter.close()
        else:
            await self.limiter.aclose()


Scenario = Callable[[RedisServer, Runner, str], Awaitable[None]]


async def stopped_mid_run(server: RedisServer, run: Runner, mode: str) -> None:
    await run.healthy("a")
    server.kill()
    await run.degraded(mode, "b")
    server.restart(empty=True)  # same port
    await run.recovers("c")


async def paused(server: RedisServer, run: Runner, mode: str) -> None:
    await run.healthy("a")
    server.pause()  # accepts TCP, answers nothing: timeouts, not refusals
    try:
        await run.degraded(mode, "b")
    finally:
        server.resume()
    await run.recovers("c")


async def restarted_empty(server: RedisServer, run: Runner, mode: str) -> None:
    await run.healthy("a")
    server.restart(empty=True)  # no keys, no script cache, every pooled connection closed
    await asyncio.sleep(0.05)  # as in a live server, the event loop notices the closed sockets
    await run.recovers("b")  # NOSCRIPT is handled; at most a stale connection costs one check
    d = await run.check("b")
    assert d.allowed and not d.degraded


async def refused_at_start_up(server: RedisServer, run: Runner, mode: str) -> None:
    await run.degraded(mode, "b")  # nothing listens on the port yet
    server.start()
    await run.recovers("c")


SCENARIOS: dict[str, Scenario] = {
    "stopped-mid-run": stopped_mid_run,
    "paused": paused,
    "restarted-empty": restarted_empty,
    "refused-at-start-up": refused_at_start_up,
}


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_failure_policy(redis_server_binary: ServerBinary, scenario: str, mode: str, api: str) -> None:
    server = RedisServer(port=free_port(), binary=redis_server_binary.path, name="fault")
    if scenario != "refused-at-start-up":
        server.start()
    run = Runner(_limiter(f"redis://127.0.0.1:{server.port}/0", mode), api)

    async def main() -> None:
        try:
            await SCENARIOS[scenario](server, run, mode)
        finally:
            await run.close()

    try:
        asyncio.run(main())
    finally:
        server.stop()
    assert run.slowest <= MAX_CHECK_SECONDS
