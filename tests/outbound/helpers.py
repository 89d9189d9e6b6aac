"""Shared pieces of the live outbound tests: the upstream server and arrival analysis."""

from __future__ import annotations

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
