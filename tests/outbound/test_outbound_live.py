"""Against a real upstream (uvicorn on loopback): shared quotas hold under concurrency,
and a remote 429 pauses every sharer."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ratelimit_mw.httpx import AsyncRateLimitTransport, RateLimitTransport
from tests.outbound.helpers import (
    AsyncRecordingTransport,
    RecordingTransport,
    arrivals,
    assert_conforms,
    reset,
    upstream_server,
)

pytestmark = pytest.mark.slow

#: How late a thread may reach the wrapped transport after its admission (it may wait
#: for the GIL in between); a task reaches it in the same step of the event loop.
THREAD_SCHEDULING = 0.05
RULE = "20/second; algorithm=sliding_log"  # exact: at most 20 in any 1-second window


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with upstream_server(tmp_path_factory.mktemp("upstream")) as url:
        yield url


@pytest.fixture
def base(upstream: str) -> str:
    reset(upstream)
    return upstream


def _host(base: str) -> str:
    return base.split("://", 1)[1]


def _run_threads(client: httpx.Client, url: str, threads: int, seconds: float, *, unique: bool = False) -> list[int]:
    """``threads`` threads call ``url`` (``url/<n>`` with ``unique``) in a loop for ``seconds``."""
    statuses: list[int] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds
    numbers = itertools.count()

    def run() -> None:
        while time.monotonic() < end:
            status = client.get(f"{url}/{next(numbers)}" if unique else url).status_code
            with lock:
                statuses.append(status)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return statuses


async def _run_tasks(
    client: httpx.AsyncClient, url: str, tasks: int, seconds: float, *, unique: bool = False
) -> list[int]:
    """``tasks`` tasks call ``url`` (``url/<n>`` with ``unique``) in a loop; after
    ``seconds`` they are cancelled (those waiting for quota leave the queue)."""
    statuses: list[int] = []
    numbers = itertools.count()

    async def run() -> None:
        while True:
            statuses.append((await client.get(f"{url}/{next(numbers)}" if unique else url)).status_code)

    running = [asyncio.create_task(run()) for _ in range(tasks)]
    await asyncio.sleep(seconds)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    return statuses


def _assert_within_rule(base: str, prefix: str, sends: dict[str, float], scheduling: float) -> None:
    rows = arrivals(base, prefix)
    assert 35 <= len(rows) <= 60, len(rows)  # the rule's pace over ~2 s: 20 at once, 20 a second later
    assert_conforms(sends, rows, 20, scheduling=scheduling)


def test_eight_threads_share_a_rule_and_never_exceed_it(base: str) -> None:
    sends: dict[str, float] = {}
    inner = RecordingTransport(httpx.HTTPTransport(), sends)
    transport = RateLimitTransport({_host(base) + "/free/**": RULE}, transport=inner, max_wait=10.0)
    with httpx.Client(transport=transport, timeout=10) as client:
        _run_threads(client, base + "/warm", threads=8, seconds=0.2)  # open the connections: no rule
        sends.clear()
        statuses = _run_threads(client, base + "/free/threads", threads=8, seconds=2.0, unique=True)
    assert set(statuses) == {200}
    _assert_within_rule(base, "/free/threads", sends, scheduling=THREAD_SCHEDULING)


def test_fifty_tasks_share_a_rule_and_never_exceed_it(base: str) -> None:
    sends: dict[str, float] = {}

    async def main() -> list[int]:
        inner = AsyncRecordingTransport(httpx.AsyncHTTPTransport(), sends)
        transport = AsyncRateLimitTransport({_host(base) + "/free/**": RULE}, transport=inner, max_wait=10.0)
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            # open the 50 connections first (no rule on /warm), so connection set-up does
            # not delay the first admitted requests into the next window
            await asyncio.gather(*(client.get(base + "/warm") for _ in range(50)))
            sends.clear()
            return await _run_tasks(client, base + "/free/tasks", tasks=50, seconds=2.0, unique=True)

    assert set(asyncio.run(main())) == {200}
    _assert_within_rule(base, "/free/tasks", sends, scheduling=0.002)


def _assert_paused(base: str, prefix: str) -> None:
    rows = arrivals(base, prefix)
    first_429 = next(t for t, _, s in rows if s == 429)
    quiet = [t for t, _, _ in rows if first_429 + 0.25 <= t < first_429 + 0.9]
    assert quiet == [], f"{len(quiet)} requests reached the upstream during its Retry-After pause"
    assert any(t >= first_429 + 0.9 for t, _, _ in rows)  # and the sharers resumed after it
    assert sum(1 for *_, s in rows if s == 200) >= 10


@pytest.mark.parametrize("sharers", ["threads", "tasks"])
def test_a_remote_429_pauses_every_sharer(base: str, sharers: str) -> None:
    """The upstream allows 5/second (our rule: 100/second) and answers 429 with
    Retry-After: 1. After the first 429, nothing but requests already in flight reaches
    it for the next second, from any thread or task; then they resume."""
    rules = {_host(base): "100/second"}
    if sharers == "threads":
        with httpx.Client(transport=RateLimitTransport(rules, max_wait=10.0), timeout=10) as client:
            _run_threads(client, base + "/strict/threads", threads=8, seconds=1.6)
    else:

        async def main() -> None:
            transport = AsyncRateLimitTransport(rules, max_wait=10.0)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                await _run_tasks(client, base + "/strict/tasks", tasks=20, seconds=1.6)

        asyncio.run(main())
    _assert_paused(base, f"/strict/{sharers}")


def test_retries_resend_after_the_pause(base: str) -> None:
    transport = RateLimitTransport({_host(base): "100/second"}, max_wait=5.0, retries=1)
    with httpx.Client(transport=transport, timeout=10) as client:
        statuses = [client.get(base + "/strict/retry").status_code for _ in range(7)]
    assert statuses == [200] * 7  # the 6th got a 429, paused 1 s and was sent again
    rows = arrivals(base, "/strict/retry")
    assert [s for *_, s in rows] == [200] * 5 + [429] + [200, 200]
    assert rows[6][0] - rows[5][0] >= 0.95


def test_a_path_rule_leaves_other_paths_alone(base: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text(f"version: 1\noutbound:\n  '{_host(base)}/free/limited/**': 2/minute\n")
    transport = RateLimitTransport(policies=str(policies), on_limit="raise")
    with httpx.Client(transport=transport, timeout=10) as client:
        assert [client.get(base + "/free/limited/a").status_code for _ in range(2)] == [200, 200]
        with pytest.raises(Exception, match="rate limit exceeded"):
            client.get(base + "/free/limited/b")
        assert all(client.get(base + "/free/open").status_code == 200 for _ in range(5))
    assert len(arrivals(base, "/free/limited")) == 2
