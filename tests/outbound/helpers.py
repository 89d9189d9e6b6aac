"""Shared pieces of the live outbound tests: the upstream server and arrival analysis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.http_servers import http_server

Arrival = tuple[float, str, int]


@contextmanager
def upstream_server(log_dir: Path, limit: int = 5, window: float = 1.0, retry_after: int = 1) -> Iterator[str]:
    """The recording upstream of ``tests/outbound/upstream.py`` on a free loopback port."""
    argv = ["uvicorn", "tests.outbound.upstream:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning"]
    env = {"UPSTREAM_LIMIT": str(limit), "UPSTREAM_WINDOW": str(window), "UPSTREAM_RETRY_AFTER": str(retry_after)}
    with http_server(argv, log_dir / "upstream.log", env, ready_path="/_arrivals") as url:
        yield url


def reset(base: str) -> None:
    httpx.post(base + "/_reset", timeout=5).raise_for_status()


def arrivals(base: str, prefix: str) -> list[Arrival]:
    """What reached the upstream under ``prefix``, in arrival order."""
    rows = httpx.get(base + "/_arrivals", timeout=5).json()
    return [(float(t), str(p), int(s)) for t, p, s in rows if str(p).startswith(prefix)]


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open interval ``[t, t + window)``."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


class RecordingTransport(httpx.BaseTransport):
    """Records when each request reaches the wrapped transport (``time.monotonic``, by path).

    CLOCK_MONOTONIC is one clock for every process of the machine, so these times
    compare with the upstream's arrival times.
    """

    def __init__(self, inner: httpx.BaseTransport, sends: dict[str, float]) -> None:
        self.inner = inner
        self.sends = sends

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sends[request.url.path] = time.monotonic()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`RecordingTransport`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, sends: dict[str, float]) -> None:
        self.inner = inner
        self.sends = sends

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sends[request.url.path] = time.monotonic()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def assert_conforms(sends: dict[str, float], rows: list[Arrival], limit: int, *, scheduling: float) -> None:
    """At most ``limit`` requests in any 1-second window, as sent and as they arrived.

    Args:
        sends: send time per (unique) path, recorded in the client processes.
        rows: the upstream's arrivals for those paths.
        limit: the rule's limit per second (a sliding-log rule: exact windows).
        scheduling: how late a request may reach the wrapped transport after its
            admission (a thread may wait for the GIL; a task does not yield in between).
    """
    arrived = {path: t for t, path, _ in rows}
    assert set(arrived) == set(sends), "every request sent arrived, and nothing else"
    delays = [arrived[path] - sent for path, sent in sends.items()]
    spread = max(delays) - min(delays)  # how unevenly loopback and the server delayed them
    assert spread < 0.4, f"loopback delays spread over {spread:.3f} s: too busy a machine to judge"
    assert most_in_any_window(list(sends.values()), 1.0 - scheduling) <= limit
    assert most_in_any_window(list(arrived.values()), 1.0 - scheduling - spread) <= limit
