from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.admin import admin_app
from ratelimit_mw.engine import build_engine
from ratelimit_mw.policy_sync import AsyncPolicySync

REDIS = "redis://localhost:6379/0"
engine = build_engine("policies.yaml", REDIS)
sync = AsyncPolicySync(engine, REDIS)          # PolicySync (a thread) for WSGI apps
api = FastAPI()
api.add_middleware(RateLimitMiddleware, engine=engine)
api.mount("/admin", admin_app(engine, sync=sync, token="change-me-to-a-long-secret"))
app = sync.asgi(api)                            # runs the subscriber with the app's lifespan
