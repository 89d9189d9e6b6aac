"""Flask integration: the ``RateLimiter`` extension, its decorators and its 429.

::

    from ratelimit_mw.flask import RateLimiter

    limiter = RateLimiter()            # limiter.init_app(app) in the app factory

    @app.get("/search")
    @limiter.limit("5/minute", key=["user", "ip"])
    def search(): ...

The YAML policies (``RATELIMIT_POLICIES``) and the decorators run in one engine: same
backend, headers, metrics and admin API. See the Flask guide in the docs.
"""

from ratelimit_mw.flask.access import FLASK_REQUEST
from ratelimit_mw.flask.exceptions import Overloaded, RateLimitExceeded
from ratelimit_mw.flask.extension import EXTENSION, AppLimits, RateLimiter

__all__ = ["EXTENSION", "FLASK_REQUEST", "AppLimits", "Overloaded", "RateLimitExceeded", "RateLimiter"]
