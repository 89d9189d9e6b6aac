"""Drive an ASGI app in-process with a minimal receive/send loop (no HTTP client, no server).

What is measured is the app's own work per request: routing, the middleware, the
endpoint, the response messages. ``receive`` hands out one empty request body;
``send`` drops the messages (``check_status`` keeps the first status to validate a
variant before timing it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["check_status", "http_scope", "run_requests"]

_BODY = {"type": "http.request", "body": b"", "more_body": False}


def http_scope(path: str = "/resource", api_key: str | None = "client-1", method: str = "GET") -> dict[str, Any]:
    """A complete ASGI 3 HTTP scope as uvicorn builds it."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if api_key is not None:
        headers.append((b"x-api-key", api_key.encode()))
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "scheme": "http",
        "method": method, "root_path": "", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": headers, "state": {},
    }


async def _receive() -> dict[str, Any]:
    return _BODY


async def _drop(message: dict[str, Any]) -> None:
    return None


async def _requests(app: Any, scopes: Sequence[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for template in scopes:
        scope = template.copy()
        scope["state"] = {}
        await app(scope, _receive, _drop)
    return time.perf_counter() - start


def run_requests(app: Any, scopes: Sequence[dict[str, Any]], loop: asyncio.AbstractEventLoop) -> float:
    """Seconds to serve ``scopes`` one after the other on ``loop``."""
    return loop.run_until_complete(_requests(app, scopes))


def check_status(app: Any, scope: dict[str, Any], loop: asyncio.AbstractEventLoop) -> int:
    """Serve one request and return its status (to check a variant answers as intended)."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))

    loop.run_until_complete(app(dict(scope, state={}), _receive, send))
    if not statuses:
        raise RuntimeError("the app sent no response")
    return statuses[0]
