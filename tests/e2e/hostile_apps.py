"""The apps of the hostile-bytes test: one ASGI and one WSGI app behind the middleware,
each served by a real server (uvicorn, gunicorn) so the server's own parser stands in
front, as in production. Memory backend: one server process each, one quota per client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware
from ratelimit_mw.types import Receive, Scope, Send

#: No trusted proxies: every forwarding header is the client's own claim and is ignored.
POLICIES = """
version: 1
defaults:
  key: ip
routes:
  - match: "/health"
    exempt: true
unmatched:
  limits: ["3/minute"]
"""


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


asgi_app = RateLimitMiddleware(_ok, policies=POLICIES, backend="memory://")
wsgi_app = WSGIRateLimitMiddleware(_wsgi_ok, policies=POLICIES, backend="memory://")
