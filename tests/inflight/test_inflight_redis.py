"""In-flight limits on a real Redis: the same decisions as memory, no over-admission
under contention, and slots that come back when their holder dies or stalls."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ratelimit_mw import Limiter
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.testing import FakeClock
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
RELAXED = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def release(decision: Decision) -> None:
    decision.lease.release()


def capacity(limiter: Limiter, limit: str, key: str = "worker-test") -> int:
    """How many slots of ``key`` are free now (taken and given back at once)."""
    taken = []
    while True:
        decision = limiter.check(key, limit)
        if not decision.allowed:
            break
        taken.append(decision)
    for decision in taken:
        release(decision)
    limiter.flush_leases()
    return len(taken)


# -- memory and Redis decide alike ----------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("take"), st.integers(0, 2), st.integers(0, 3)),
        st.tuples(st.just("give"), st.integers(0, 30), st.just(0)),
    ),
    max_size=40,
)
LIMITS = ("3 concurrent", "2 concurrent; lease=15s, 5/minute", "1 concurrent; name=solo")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, limit=st.sampled_from(LIMITS))
def test_memory_and_redis_decide_alike(redis_url: str, ops: list[tuple[str, int, int]], limit: str) -> None:
    redis.Redis.from_url(redis_url).flushall()
    clock = FakeClock(1_700_000_000.0)
    memory = Limiter("memory://", clock=clock)
    remote = Limiter(redis_url, clock=clock, **RELAXED)
    held: list[tuple[Decision, Decision]] = []
    try:
        for op, a, cost in ops:
            clock.advance(0.25)
            if op == "take":
                pair = (memory.check(f"k{a}", limit, cost=cost), remote.check(f"k{a}", limit, cost=cost))
                assert tuple(pair[0]) == tuple(pair[1])
                if pair[0].allowed and cost:
                    held.append(pair)
            elif held:
                m, r = held.pop(a % len(held))
                release(m)
                release(r)
                remote.flush_leases()
        for a in range(3):
            assert tuple(memory.peek(f"k{a}", limit)) == tuple(remote.peek(f"k{a}", limit))
    finally:
        remote.close()


# -- contention ---------------------------------------------------------------------


def test_a_thousand_acquirers_on_threads_never_exceed_the_limit(redis_url: str) -> None:
    """1,000 acquirers on 64 threads take a slot, hold it a moment and give it back:
    the slots held at once (counted here, before each release) never pass the limit."""
    limiter = Limiter(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    lock = threading.Lock()
    in_flight = peak = admitted = 0

    def acquirer(_: int) -> None:
        nonlocal in_flight, peak, admitted
        decision = limiter.check("hot", "10 concurrent")
        if not decision.allowed:
            assert decision.retry_after >= 1 and not decision.degraded
            return
        with lock:
            admitted += 1
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.001)
        with lock:
            in_flight -= 1
        release(decision)

    started = time.perf_counter()
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(acquirer, range(1000), timeout=25))
    elapsed = time.perf_counter() - started
    limiter.close()
    assert peak <= 10 and admitted >= 10, (peak, admitted)
    print(f"1000 acquirers on threads: peak {peak} of 10, admitted {admitted}, {elapsed:.2f}s")


def test_held_slots_are_counted_exactly_under_contention(redis_url: str) -> None:
    """1,000 asyncio tasks at once, each holding its slot to the end: exactly the limit is
    admitted, and Redis holds exactly that many leases."""

    async def main() -> int:
        limiter = Limiter(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        decisions = await asyncio.wait_for(
            asyncio.gather(*(limiter.acheck("held", "50 concurrent") for _ in range(1000))), 25)
        allowed = [d for d in decisions if d.allowed]
        stored = redis.Redis.from_url(redis_url).zcard(limiter.storage_keys("held", limiter.quota("50 concurrent"))[0])
        assert stored == len(allowed)
        for d in allowed:
            release(d)
        await limiter.aclose()
        return len(allowed)

    assert asyncio.run(main()) == 50  # 1,000 tasks at once, every admitted one still holding: exactly 50


# -- a worker that dies or stalls -----------------------------------------------------


@pytest.fixture
def worker(redis_url: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.inflight.lease_worker", redis_url, "3 concurrent; lease=2s", "3"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def wait_for_capacity(limiter: Limiter, limit: str, want: int, deadline: float) -> float:
    """Seconds until ``want`` slots are free (polled), or fail at ``deadline``."""
    started = time.monotonic()
    while time.monotonic() < deadline:
        if capacity(limiter, limit) >= want:
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"capacity not back to {want} in time")


def test_a_live_worker_renews_its_leases_past_the_lease(redis_url: str, worker: subprocess.Popen[str]) -> None:
    limiter = Limiter(redis_url, **RELAXED)
    limit = "3 concurrent; lease=2s"
    until = time.monotonic() + 3.0  # past the lease: still held, because renewed
    while time.monotonic() < until:
        assert not limiter.check("worker-test", limit).allowed
        time.sleep(0.1)
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("release\n")
    worker.stdin.flush()
    assert worker.stdout.readline().strip() == "released lost=0 expired=0"
    assert capacity(limiter, limit) == 3


def test_slots_of_a_killed_worker_come_back_within_the_lease(redis_url: str, worker: subprocess.Popen[str]) -> None:
    limiter = Limiter(redis_url, **RELAXED)
    limit = "3 concurrent; lease=2s"
    assert capacity(limiter, limit) == 0
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=5)
    killed = time.monotonic()
    took = wait_for_capacity(limiter, limit, 3, killed + 2.0 + 1.0)
    print(f"capacity whole {took:.2f}s after kill -9 (lease 2s)")
    assert took <= 3.0


def test_a_stalled_worker_loses_its_slots_and_releases_late_without_harm(
    redis_url: str, worker: subprocess.Popen[str]
) -> None:
    limiter = Limiter(redis_url, **RELAXED)
    limit = "3 concurrent; lease=2s"
    os.kill(worker.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    deadline = stopped + 2.0 + 1.0
    mine: list[Decision] = []
    while len(mine) < 3 and time.monotonic() < deadline:
        decision = limiter.check("worker-test", limit)
        if decision.allowed:
            mine.append(decision)
        else:
            time.sleep(0.05)
    assert len(mine) == 3, "the stalled worker's leases did not expire"
    os.kill(worker.pid, signal.SIGCONT)
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("release\n")
    worker.stdin.flush()
    line = worker.stdout.readline().strip()
    lost = int(line.split("lost=")[1].split()[0])
    expired = int(line.split("expired=")[1])
    assert line.startswith("released") and lost == 3 and expired <= lost, line  # it found its leases gone
    assert not limiter.check("worker-test", limit).allowed  # our three slots are still ours
    for decision in mine:
        release(decision)
    limiter.flush_leases()
    assert capacity(limiter, limit) == 3


def test_a_failing_backend_never_fails_a_release_and_the_lease_expires(fresh_redis_server: RedisServer) -> None:
    limiter = Limiter(fresh_redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    decision = limiter.check("k", "2 concurrent; lease=1s")
    assert decision.allowed
    fresh_redis_server.kill()
    with capture_logs() as logs:
        decision.lease.release()  # queued; the send fails in the keeper: logged, not raised
        limiter.flush_leases()
    assert any(entry["event"] == "lease_error" for entry in logs)
    assert limiter.leases_held == 0
    assert limiter.check("k", "2 concurrent; lease=1s").degraded  # the failure policy answers
    fresh_redis_server.restart(empty=False)
    deadline = time.monotonic() + 3.0  # the unreleased lease runs out by itself (if the restart kept it)
    while capacity(limiter, "2 concurrent; lease=1s", "k") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    limiter.close()


def test_metrics_count_held_and_lost_leases(redis_url: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from ratelimit_mw.metrics import RateLimitMetrics

    registry = CollectorRegistry()
    limiter = Limiter(redis_url, **RELAXED)
    RateLimitMetrics(registry).attach(limiter)
    held = [limiter.check("m", "2 concurrent") for _ in range(2)]
    text = generate_latest(registry).decode()
    assert "ratelimit_inflight_leases 2.0" in text
    redis.Redis.from_url(redis_url).delete(*limiter.storage_keys("m", limiter.quota("2 concurrent")))
    for decision in held:  # their leases are gone (as if expired and dropped)
        release(decision)
    limiter.flush_leases()
    text = generate_latest(registry).decode()
    assert "ratelimit_inflight_lease_lost_total 2.0" in text
    assert "ratelimit_inflight_leases 0.0" in text and "ratelimit_inflight_lease_expired_total 0.0" in text


def test_leases_on_a_cluster_are_taken_renewed_and_released(redis_cluster_url: str) -> None:
    """Every key of a check shares a hash slot; renewals and releases of keys on several
    nodes go in one cluster pipeline."""
    limiter = Limiter(redis_cluster_url, **RELAXED)
    keeper_ticks = 0
    try:
        held = {key: limiter.check(key, "1 concurrent; lease=1s, 100/minute") for key in ("a", "b", "c", "d")}
        assert all(d.allowed for d in held.values())
        until = time.monotonic() + 1.6  # past the lease: renewed, so still held
        while time.monotonic() < until:
            assert not limiter.check("a", "1 concurrent; lease=1s, 100/minute").allowed
            keeper_ticks += 1
            time.sleep(0.1)
        for decision in held.values():
            release(decision)
        limiter.flush_leases()
        assert all(limiter.check(key, "1 concurrent; lease=1s, 100/minute").allowed for key in held)
        assert limiter.lease_stats.lost == 0 and limiter.leases_held == 4
    finally:
        limiter.close()  # releases the four still held
    assert limiter.leases_held == 0
    assert keeper_ticks > 0


def test_an_async_only_client_renews_and_releases_on_its_event_loop(redis_url: str) -> None:
    """Given a redis.asyncio client, the keeper runs its pipelines on the loop that took
    the leases: renewed past the lease, released after."""

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2.0)
        limiter = Limiter(client)
        limit = "1 concurrent; lease=1s"
        held = await limiter.acheck("k", limit)
        assert held.allowed
        until = time.monotonic() + 1.6
        while time.monotonic() < until:
            assert not (await limiter.acheck("k", limit)).allowed
            await asyncio.sleep(0.1)
        release(held)
        await limiter.aflush_leases()
        again = await limiter.acheck("k", limit)
        assert again.allowed and limiter.lease_stats.lost == 0
        release(again)
        await limiter.aclose()
        await client.aclose()

    asyncio.run(main())
