"""A plain WSGI app limited by the middleware, with metrics, for the gunicorn test.

Imported by each gunicorn worker (no ``--preload``), so every worker builds its own
middleware and metrics, as a real deployment would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from ratelimit_mw.metrics import RateLimitMetrics, serve_metrics_wsgi
from ratelimit_mw.wsgi import WSGIRateLimitMiddleware

POLICIES = {
    "version": 1,
    "routes": [
        {"match": "GET /work", "limits": ["1000/second"]},
        {"match": "GET /tight", "limits": ["2/minute"]},
    ],
}


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


metrics = RateLimitMetrics(CollectorRegistry())
app = serve_metrics_wsgi(
    metrics.attach(WSGIRateLimitMiddleware(hello, policies=POLICIES, backend="memory://")), metrics
)
