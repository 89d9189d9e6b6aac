"""A Starlette app whose ``/slow`` holds its request until a file appears, for the
two-node in-flight test: ``INFLIGHT_GATE`` names the directory; each request entering
``/slow`` leaves a marker there, and ``release`` in it lets them all finish."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit_mw import RateLimitMiddleware

GATE = Path(os.environ.get("INFLIGHT_GATE", "."))


async def slow(request: Request) -> PlainTextResponse:
    (GATE / f"entered-{uuid.uuid4().hex}").touch()
    for _ in range(600):  # bounded: 30 s
        if (GATE / "release").exists():
            break
        await asyncio.sleep(0.05)
    return PlainTextResponse("done")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = RateLimitMiddleware(Starlette(routes=[Route("/slow", slow), Route("/health", health)]))
