"""The app each uvicorn server of the accuracy test runs: a bare ASGI app behind the
middleware, with policies from ``RATELIMIT_POLICIES`` and the Redis at ``REDIS_URL``.

Deny on backend errors, a generous timeout and no over-limit cache, as the direct
workers: every limited request is a real, contended round trip to Redis.
"""

from __future__ import annotations

import os

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.types import Receive, Scope, Send


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


app = RateLimitMiddleware(
    ok,
    policies=os.environ["RATELIMIT_POLICIES"],
    backend=os.environ["REDIS_URL"],
    on_backend_error="deny",
    over_limit_cache=0,
    socket_timeout=5.0,
    socket_connect_timeout=5.0,
)
