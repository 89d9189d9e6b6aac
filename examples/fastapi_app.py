"""Demo: a FastAPI app limited by policies.example.yaml, with /metrics and an admin API.

Run (installs what it needs): ``bash scripts/demo.sh``, then::

    curl -i -H 'X-API-Key: demo' http://127.0.0.1:8000/resource   # 200 with X-RateLimit-* headers
    for i in $(seq 45); do curl -s -o /dev/null -w '%{http_code} ' -H 'X-API-Key: demo' \\
        http://127.0.0.1:8000/resource; done                           # 40 x 200, then 429s
    curl -s http://127.0.0.1:8000/metrics | grep ratelimit_decisions_total
    curl -s -H "Authorization: Bearer $RATELIMIT_ADMIN_TOKEN" http://127.0.0.1:8000/admin/policies

Environment: ``RATELIMIT_POLICIES`` (default: policies.example.yaml at the repo root),
``REDIS_URL`` (default: the in-memory backend), ``RATELIMIT_ADMIN_TOKEN`` (the admin
API's bearer token; if unset, the demo makes one up and prints it at start-up).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.admin import admin_app
from ratelimit_mw.engine import build_engine
from ratelimit_mw.metrics import RateLimitMetrics

POLICIES = os.environ.get(
    "RATELIMIT_POLICIES", str(Path(__file__).resolve().parent.parent / "policies.example.yaml")
)
ADMIN_TOKEN = os.environ.get("RATELIMIT_ADMIN_TOKEN") or secrets.token_urlsafe(24)
if "RATELIMIT_ADMIN_TOKEN" not in os.environ:
    print(f"demo admin token (set RATELIMIT_ADMIN_TOKEN to choose one): {ADMIN_TOKEN}", file=sys.stderr)

engine = build_engine(POLICIES, os.environ.get("REDIS_URL", "memory://"))
metrics = RateLimitMetrics(CollectorRegistry())

app = FastAPI(title="ratelimit_mw demo")
app.add_middleware(RateLimitMiddleware, engine=engine, metrics=metrics, metrics_path="/metrics")
app.mount("/admin", admin_app(engine, token=ADMIN_TOKEN))


@app.get("/resource")
async def resource() -> dict[str, str]:
    """The seed's rate-limited endpoint: 40-token bucket refilled at 10/s per API key."""
    return {"status": "ok"}


@app.get("/health")
async def health() -> dict[str, str]:
    """Exempt from limiting."""
    return {"status": "healthy"}


@app.get("/users/{user_id}")
async def user(user_id: int) -> dict[str, int]:
    """A templated route: every user id shares the route's bucket per client."""
    return {"user_id": user_id}
