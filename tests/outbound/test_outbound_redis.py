"""Outbound rules shared through a real Redis: one quota and one pause for every process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.outbound import OutboundLimiter
from tests.outbound.helpers import arrivals, assert_conforms, reset, upstream_server
from tests.support.http_servers import ROOT

pytestmark = pytest.mark.redis


def test_the_pause_key_uses_server_time_and_only_grows(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    try:
        assert backend.pause("rl:pause:t", 0) == 0.0
        assert 1.9 <= backend.pause("rl:pause:t", 2.0) <= 2.0
        assert 1.8 <= backend.pause("rl:pause:t", 0.5) <= 2.0  # a shorter pause does not cut it

        async def read_async() -> float:
            try:
                return await backend.apause("rl:pause:t", 0)
            finally:
                await backend.aclose()

        assert 1.8 <= asyncio.run(read_async()) <= 2.0
    finally:
        backend.close()


def test_a_pause_reaches_another_limiter_on_the_same_redis(redis_url: str) -> None:
    first = OutboundLimiter({"api.example.com": "100/second"}, backend=redis_url)
    second = OutboundLimiter({"api.example.com": "100/second"}, backend=redis_url, on_limit="raise")
    try:
        assert second.try_acquire("api.example.com").allowed
        first.observe_response("api.example.com", 429, {"retry-after": "2"})
        decision = second.try_acquire("api.example.com")
        assert not decision.allowed and 1.8 <= decision.retry_after <= 2.0
        assert decision.violated == ("remote-pause",)

        async def usage_async() -> float:
            try:
                return float((await second.ausage("api.example.com"))["paused_for"])
            finally:
                await second.limiter.aclose()

        assert 1.8 <= asyncio.run(usage_async()) <= 2.0
    finally:
        first.limiter.close()
        second.limiter.close()


def test_two_limiters_on_redis_share_one_quota(redis_url: str) -> None:
    a = OutboundLimiter({"openai": {"limit": 5, "window": 60}}, backend=redis_url, on_limit="raise")
    b = OutboundLimiter({"openai": {"limit": 5, "window": 60}}, backend=redis_url, on_limit="raise")
    try:
        results = [(a if i % 2 else b).try_acquire("openai").allowed for i in range(8)]
        assert results == [True] * 5 + [False] * 3
    finally:
        a.limiter.close()
        b.limiter.close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with upstream_server(tmp_path_factory.mktemp("upstream-redis")) as url:
        yield url


def _two_processes(
    redis_url: str, base: str, path: str, rule: str, seconds: float
) -> tuple[list[int], dict[str, float]]:
    start_at = time.time() + 2.5  # both interpreters import and warm up before this
    argv = [sys.executable, "-m", "tests.outbound.outbound_worker", redis_url, base, path, rule, "4",
            str(seconds), str(start_at)]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    statuses: list[int] = []
    sends: dict[str, float] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])  # after any log lines
        statuses += report["statuses"]
        sends.update(report["sends"])
    return statuses, sends


@pytest.mark.slow
def test_two_processes_sharing_a_rule_through_redis_never_exceed_it_together(redis_url: str, upstream: str) -> None:
    reset(upstream)
    statuses, sends = _two_processes(redis_url, upstream, "/free/procs", "20/second; algorithm=sliding_log", 2.0)
    assert set(statuses) == {200}
    rows = arrivals(upstream, "/free/procs")
    assert 35 <= len(rows) <= 60, len(rows)
    assert len({path.rsplit("/", 1)[1].split("-")[0] for path in sends}) == 2  # both processes sent
    assert_conforms(sends, rows, 20, scheduling=0.05)  # threads may wait for the GIL after admission


@pytest.mark.slow
def test_a_remote_429_pauses_every_process_on_the_same_redis(redis_url: str, upstream: str) -> None:
    reset(upstream)
    _two_processes(redis_url, upstream, "/strict/procs", "100/second", 1.6)
    rows = arrivals(upstream, "/strict/procs")
    first_429 = next(t for t, _, s in rows if s == 429)
    quiet = [t for t, _, _ in rows if first_429 + 0.25 <= t < first_429 + 0.9]
    assert quiet == [], f"{len(quiet)} requests reached the upstream during its Retry-After pause"
    assert any(t >= first_429 + 0.9 for t, _, _ in rows)
