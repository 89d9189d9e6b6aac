from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware

app = FastAPI()
app.add_middleware(
    RateLimitMiddleware,
    policies="policies.yaml",
    backend="redis://localhost:6379/0",  # connects on the first request, never at import
    socket_timeout=0.05,                 # Limiter options pass through
)
