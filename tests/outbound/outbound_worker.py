"""One process of the two-process outbound tests: threads calling the upstream through
a RateLimitTransport whose rule lives in Redis.

Usage: python -m tests.outbound.outbound_worker REDIS_URL BASE_URL PATH RULE THREADS SECONDS START_AT
(START_AT: wall-clock time to begin, so both processes start together). The rule
applies to BASE_URL's host under PATH's first segment; the connections are opened
first on ``/warm`` (no rule). Each request goes to a path of its own (PATH/<pid>-<n>).
Prints, as JSON on its last line, the status codes it got and when each request
reached httpx's transport (``time.monotonic``, by path).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time

import httpx

from ratelimit_mw.httpx import RateLimitTransport
from tests.outbound.helpers import RecordingTransport


def main() -> None:
    redis_url, base, path, rule, threads, seconds, start_at = sys.argv[1:8]
    target = base.split("://", 1)[1] + "/" + path.strip("/").split("/")[0] + "/**"
    sends: dict[str, float] = {}
    inner = RecordingTransport(httpx.HTTPTransport(), sends)
    transport = RateLimitTransport({target: rule}, transport=inner, backend=redis_url, max_wait=10.0)
    statuses: list[int] = []
    lock = threading.Lock()
    sends.clear()
    numbers = itertools.count()
    time.sleep(max(0.0, float(start_at) - time.time()))
    end = time.monotonic() + float(seconds)

    client = httpx.Client(transport=transport, timeout=10)  # one client (and transport) for all threads

    def run() -> None:
        while time.monotonic() < end:
            status = client.get(f"{base}{path}/{os.getpid()}-{next(numbers)}").status_code
            with lock:
                statuses.append(status)

    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    print(json.dumps({"statuses": statuses, "sends": sends}))


if __name__ == "__main__":
    main()
