"""Django's WSGI application wrapped by the rate limiter.

Run: ``DJANGO_SETTINGS_MODULE=examples.django_app.settings .venv/bin/gunicorn examples.django_app.wsgi``.
"""

import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application

from ratelimit_mw import WSGIRateLimitMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

POLICIES = os.environ.get(
    "RATELIMIT_POLICIES", str(Path(__file__).resolve().parents[2] / "policies.example.yaml")
)

application = WSGIRateLimitMiddleware(get_wsgi_application(), policies=POLICIES)
