import os

from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware


def create_app(*, rate_limits: bool = True) -> FastAPI:
    app = FastAPI()
    if rate_limits:                      # the test suite builds its apps with rate_limits=False
        app.add_middleware(RateLimitMiddleware, policies="policies.yaml")
    return app


app = create_app(rate_limits=os.environ.get("APP_RATE_LIMITS", "true") != "false")
