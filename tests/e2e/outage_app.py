"""The app of the Redis-outage test: a bare ASGI app behind the middleware, served by
uvicorn, on the Redis at ``REDIS_URL`` with ``on_backend_error`` from
``RATELIMIT_ON_BACKEND_ERROR``; metrics at ``/metrics``. Short timeouts and a quick
breaker, as the fault tests use, so an outage is noticed and left within a second.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.metrics import RateLimitMetrics
from ratelimit_mw.types import Receive, Scope, Send

POLICIES = f"""
version: 1
defaults:
  key: [header:X-Client]
  on_backend_error: {os.environ["RATELIMIT_ON_BACKEND_ERROR"]}
routes:
  - match: "GET /r"
    limits: ["3/minute"]
"""


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


app = RateLimitMiddleware(
    _ok,
    policies=POLICIES,
    backend=os.environ["REDIS_URL"],
    metrics=RateLimitMetrics(CollectorRegistry()),
    metrics_path="/metrics",
    socket_timeout=0.05,
    socket_connect_timeout=0.05,
    breaker_threshold=2,
    breaker_recovery=0.2,
    over_limit_cache=0,
)
