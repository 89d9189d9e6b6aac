"""An app with a finite worker pool, for the overload benchmark against a real uvicorn.

``GET /work`` runs a blocking call (log-normal, median ``OVERLOAD_MEDIAN_MS``, slower
the more workers are busy) on a pool of ``OVERLOAD_WORKERS`` threads, as a sync
endpoint does; requests beyond the pool wait in its queue. With ``OVERLOAD_PROTECT=1``
the app runs behind our middleware with an ``overload:`` section whose classes come
from the ``X-Priority`` header (the load generator sets it), and the same shares as
the simulator (``benchmarks/overload_sim.py``).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORKERS = int(os.environ.get("OVERLOAD_WORKERS", "8"))
MEDIAN = float(os.environ.get("OVERLOAD_MEDIAN_MS", "40")) / 1000
SIGMA = 0.5
CONTENTION = 0.02

_pool = ThreadPoolExecutor(WORKERS)
_busy = [0]
_lock = threading.Lock()


def _serve() -> None:
    with _lock:
        _busy[0] += 1
        busy = _busy[0]
    try:
        time.sleep(random.lognormvariate(math.log(MEDIAN), SIGMA) * (1 + CONTENTION * (busy - 1)))
    finally:
        with _lock:
            _busy[0] -= 1


async def bare(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/work":
        await asyncio.get_running_loop().run_in_executor(_pool, _serve)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


POLICIES = f"""
version: 1
overload:
  initial: 40
  min: {WORKERS}
  max: 160
  latency_target: {MEDIAN * 4.75:.3f}
  warmup: 0s
  priorities: {{critical: 1.0, high: 0.35, normal: 0.25, sheddable: 0.15}}
  default_priority: normal
  priority_from: header:X-Priority
routes:
  - match: /health
    exempt: true
  - match: /work
    pool: default
"""

if os.environ.get("OVERLOAD_PROTECT") == "1":
    from ratelimit_mw import RateLimitMiddleware

    app: Any = RateLimitMiddleware(bare, policies=POLICIES, backend="memory://")
else:
    app = bare
