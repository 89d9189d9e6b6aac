"""Open-loop HTTP/1.1 load generator: sends a schedule at its times, records every answer.

Run as a subprocess by the seed-model section (a fresh interpreter, so the
runner's heap and GC do not disturb the timing)::

    python -m benchmarks.loadgen SCHEDULE.json OUT.json --port N [--connections 128] [--warmup 300] [--settle 0]

The schedule is ``{"times": [...], "keys": [...]}`` (seconds from the start, key
names). Each request is ``GET /resource`` with ``X-API-Key: <key>`` on a pool of
keep-alive connections opened beforehand; when every connection is busy the
request waits for one (that wait is recorded as send lag: an open-loop generator
must not silently thin its load). Raw asyncio streams, not an HTTP library: at
1,200 req/s the generator must cost far less CPU than the server it measures.

Output per request: status, whether the response carried ``X-RateLimit-Remaining``
(decided by the limiter, not failed open), latency from send to the end of the
body, and send lag behind the schedule, all in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

__all__ = ["main", "run"]


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, limit=1 << 16)


async def run(host: str, port: int, times: list[float], keys: list[str], connections: int,
              warmup: int = 0, settle: float = 0.0) -> dict[str, Any]:
    """Send the schedule; return the per-request lists (see the module docstring).

    ``warmup`` requests (keys outside the schedule's, at most 8 in flight, so a cold
    server's pools grow gently) go first, then ``settle`` seconds of quiet.
    """
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for conn in await asyncio.gather(*(_open(host, port) for _ in range(connections))):
        free.put_nowait(conn)
    n = len(times)
    status = [0] * n
    limited = [False] * n
    latency = [0.0] * n
    lag = [0.0] * n
    errors: list[str] = []
    host_header = f"Host: {host}:{port}\r\n"

    async def fire(index: int, key: str, due: float | None,
                   conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = conn
        request = f"GET /resource HTTP/1.1\r\n{host_header}X-API-Key: {key}\r\n\r\n".encode()
        sent = time.perf_counter()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            code = int(lines[0].split(b" ", 2)[1])
            length = 0
            has_limit = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lower = name.strip().lower()
                if lower == b"content-length":
                    length = int(value)
                elif lower == b"x-ratelimit-remaining":
                    has_limit = True
            if length:
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            writer.close()
            conn = await _open(host, port)
            code, has_limit = -1, False
        done = time.perf_counter()
        if due is not None:
            status[index] = code
            limited[index] = has_limit
            latency[index] = done - sent
            lag[index] = sent - due
        free.put_nowait(conn)

    tasks: set[asyncio.Task[None]] = set()

    def launch(index: int, key: str, due: float | None,
               conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        task = asyncio.create_task(fire(index, key, due, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for i in range(warmup):  # warm-up: keys outside the schedule's, answers discarded
        launch(-1, f"warmup-{i}", None, await free.get())
        while len(tasks) >= 8:
            await asyncio.wait(list(tasks), return_when=asyncio.FIRST_COMPLETED)
    while tasks:
        await asyncio.gather(*list(tasks))
    await asyncio.sleep(settle)

    start = time.perf_counter() + 0.2
    for index in range(n):
        due = start + times[index]
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        launch(index, keys[index], due, await free.get())
    while tasks:
        await asyncio.gather(*list(tasks))
    while not free.empty():
        _, writer = free.get_nowait()
        writer.close()
    return {"status": status, "limited": limited, "latency": latency, "lag": lag,
            "errors": errors[:20], "error_count": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schedule")
    parser.add_argument("out")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds of quiet after the warm-up")
    args = parser.parse_args()
    with open(args.schedule, encoding="utf-8") as fh:
        schedule = json.load(fh)
    result = asyncio.run(run(args.host, args.port, schedule["times"], schedule["keys"], args.connections,
                             args.warmup, args.settle))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
