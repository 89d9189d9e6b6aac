"""Demo: a FastAPI app limited by policies.example.yaml.

Run (installs what it needs): ``bash scripts/demo.sh``, then::

    curl -i -H 'X-API-Key: demo' http://127.0.0.1:8000/resource   # 200 with X-RateLimit-* headers
    for i in $(seq 45); do curl -s -o /dev/null -w '%{http_code}\\n' -H 'X-API-Key: demo' \\
        http://127.0.0.1:8000/resource; done                           # 40 x 200, then 429s

Environment: ``RATELIMIT_POLICIES`` (default: policies.example.yaml next to the repo
root), ``REDIS_URL`` (default: the in-memory backend).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware

POLICIES = os.environ.get(
    "RATELIMIT_POLICIES", str(Path(__file__).resolve().parent.parent / "policies.example.yaml")
)

app = FastAPI(title="ratelimit_mw demo")
app.add_middleware(
    RateLimitMiddleware,
    policies=POLICIES,
    backend=os.environ.get("REDIS_URL", "memory://"),
)


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
