"""A third-party API stand-in for the outbound tests, served by uvicorn on loopback.

It records each request's arrival (server monotonic time, path, status) and
limits paths under ``/strict`` itself: past ``UPSTREAM_LIMIT`` requests in any
``UPSTREAM_WINDOW`` seconds it answers 429 with ``Retry-After: UPSTREAM_RETRY_AFTER``.
``GET /_arrivals`` returns the record as JSON; ``POST /_reset`` clears it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

LIMIT = int(os.environ.get("UPSTREAM_LIMIT", "5"))
WINDOW = float(os.environ.get("UPSTREAM_WINDOW", "1"))
RETRY_AFTER = os.environ.get("UPSTREAM_RETRY_AFTER", "1").encode()
ARRIVALS: list[tuple[float, str, int]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    status = 200
    if path == "/_arrivals":
        body = json.dumps(ARRIVALS).encode()
    elif path == "/_reset":
        ARRIVALS.clear()
        body = b"{}"
    else:
        now = time.monotonic()
        if path.startswith("/strict"):
            recent = sum(1 for t, p, s in ARRIVALS if s == 200 and p.startswith("/strict") and now - t < WINDOW)
            if recent >= LIMIT:
                status = 429
                headers.append((b"retry-after", RETRY_AFTER))
        ARRIVALS.append((now, path, status))
        body = b'{"ok": true}'
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
