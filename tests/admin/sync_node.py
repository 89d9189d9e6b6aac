"""One node of the two-node sync test: limited app + admin API, policies synced via Redis.

Configured by the environment the test sets: ``SYNC_REDIS_URL`` (policy sync),
``LIMITER_BACKEND`` (the limiter's state), ``RATELIMIT_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ratelimit_mw.admin import admin_app
from ratelimit_mw.asgi import RateLimitMiddleware
from ratelimit_mw.engine import build_engine
from ratelimit_mw.policy_sync import AsyncPolicySync

POLICIES = {
    "version": 1,
    "defaults": {"key": ["header:X-API-Key", "ip"]},
    "policies": {"free": {"limits": ["100/minute"]}},
    "routes": [{"match": "GET /resource", "policy": "free"}],
}


async def resource(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


engine = build_engine(POLICIES, backend=os.environ["LIMITER_BACKEND"], prefix="synctest")
sync = AsyncPolicySync(engine, os.environ["SYNC_REDIS_URL"], interval=float(os.environ.get("SYNC_INTERVAL", "1")))
limited = RateLimitMiddleware(Starlette(routes=[Route("/resource", resource)]), engine=engine)
app = sync.asgi(Starlette(routes=[Mount("/admin", app=admin_app(engine, sync=sync)), Mount("/", app=limited)]))
