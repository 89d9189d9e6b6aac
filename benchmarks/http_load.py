"""Closed-loop HTTP load: wrk when it is on PATH, an async httpx generator otherwise.

Both keep ``connections`` requests in flight for ``duration`` seconds against
``GET /resource``, rotating the ``X-API-Key`` header over ``keys`` values, and
report requests per second, non-2xx responses and latency percentiles.
``BENCH_LOADGEN=httpx`` in the environment forces the httpx generator.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers import deathsig_prefix
from benchmarks.stats import percentile

__all__ = ["LoadResult", "load", "tool_name"]

_WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/resource", {["X-API-Key"] = "client-" .. (counter % %KEYS%)})
end
"""


@dataclass
class LoadResult:
    requests_per_s: float
    requests: int
    non_2xx: int
    p50_ms: float
    p99_ms: float


def _wrk_path() -> str | None:
    return None if os.environ.get("BENCH_LOADGEN") == "httpx" else shutil.which("wrk")


def tool_name() -> str:
    """``wrk`` (with its version) if installed, else ``httpx``."""
    wrk = _wrk_path()
    if wrk is None:
        return "httpx (async, closed loop; wrk not on PATH: client-bound, install wrk for real ratios)"
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first = (proc.stdout + proc.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def load(base_url: str, *, duration: float, connections: int, keys: int, workdir: Path) -> LoadResult:
    """Run the load and return what it measured."""
    if _wrk_path():
        return _wrk(base_url, duration, connections, keys, workdir)
    return asyncio.run(_httpx(base_url, duration, connections, keys))


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _wrk(base_url: str, duration: float, connections: int, keys: int, workdir: Path) -> LoadResult:
    script = workdir / f"keys-{keys}.lua"
    if not script.exists():
        script.write_text(_WRK_SCRIPT.replace("%KEYS%", str(keys)))
    command = [
        *deathsig_prefix(), "wrk", "-t1", f"-c{connections}", f"-d{max(round(duration), 1)}s",
        "--latency", "--timeout", "5s", "-s", str(script), f"{base_url}/resource",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=False)
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-800:]} {proc.stderr[-800:]}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if errors is not None and ("timeout" in errors.group(0) and not errors.group(0).endswith("timeout 0")):
        raise RuntimeError(f"wrk saw socket errors: {errors.group(0)}")
    return LoadResult(
        rate, total, int(non_2xx_match.group(1)) if non_2xx_match else 0,
        _duration_ms(p50.group(1)) if p50 else float("nan"),
        _duration_ms(p99.group(1)) if p99 else float("nan"),
    )


async def _httpx(base_url: str, duration: float, connections: int, keys: int) -> LoadResult:
    """One client (one keep-alive connection) per worker: a shared httpx pool of 32
    connections spends most of its time scanning itself (httpcore's pool assignment)."""
    import httpx

    latencies: list[float] = []
    counts = {"requests": 0, "non_2xx": 0}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=5.0, trust_env=False)
               for _ in range(connections)]
    deadline = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get("/resource", headers={"X-API-Key": f"client-{i % keys}"})
            latencies.append(time.perf_counter() - started)
            counts["requests"] += 1
            if not 200 <= response.status_code < 300:
                counts["non_2xx"] += 1
            i += connections

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, c) for c, client in enumerate(clients)))
        elapsed = time.perf_counter() - start
    finally:
        for client in clients:
            await client.aclose()
    return LoadResult(
        counts["requests"] / elapsed, counts["requests"], counts["non_2xx"],
        percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000,
    )
