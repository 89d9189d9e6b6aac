"""One process of the two-process outbound tests: threads calling the upstream through
a RateLimitTransport whose rule lives in Redis.

Usage: python -m tests.outbound.outbound_worker REDIS_URL BASE_URL PATH RULE THREADS SECONDS START_AT
(START_AT: wall-clock time to begin, so both processes start together). The rule
applies to BASE_URL's host under PATH's first segment; the connections are opened
first on ``/warm`` (no rule). Prints the status codes it got as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

from ratelimit_mw.httpx import RateLimitTransport


def main() -> None:
    redis_url, base, path, rule, threads, seconds, start_at = sys.argv[1:8]
    target = base.split("://", 1)[1] + "/" + path.strip("/").split("/")[0] + "/**"
    transport = RateLimitTransport({target: rule}, backend=redis_url, max_wait=10.0)
    statuses: list[int] = []
    lock = threading.Lock()
    time.sleep(max(0.0, float(start_at) - time.time()))
    end = time.monotonic() + float(seconds)

    client = httpx.Client(transport=transport, timeout=10)  # one client (and transport) for all threads

    def run() -> None:
        while time.monotonic() < end:
            status = client.get(base + path).status_code
            with lock:
                statuses.append(status)

    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    print(json.dumps(statuses))


if __name__ == "__main__":
    main()
