from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.admin import admin_app
from ratelimit_mw.engine import build_engine

engine = build_engine("policies.yaml", "memory://")
app = FastAPI()
app.add_middleware(RateLimitMiddleware, engine=engine)
# token: at least 16 characters (default: RATELIMIT_ADMIN_TOKEN); serve on a private interface
app.mount("/admin", admin_app(engine, token="change-me-to-a-long-secret"))
