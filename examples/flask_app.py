"""Demo: a Flask app limited by policies.example.yaml through the WSGI middleware.

Run: ``.venv/bin/flask --app examples.flask_app run`` (after ``pip install -e '.[all]' --group test``).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from ratelimit_mw import WSGIRateLimitMiddleware

POLICIES = os.environ.get(
    "RATELIMIT_POLICIES", str(Path(__file__).resolve().parent.parent / "policies.example.yaml")
)

app = Flask(__name__)


@app.get("/resource")
def resource() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy"}


app.wsgi_app = WSGIRateLimitMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, policies=POLICIES, backend=os.environ.get("REDIS_URL", "memory://")
)
