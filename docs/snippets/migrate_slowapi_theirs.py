# slowapi: a Limiter on app.state, an exception handler, and a decorator per endpoint
from fastapi import FastAPI, Request
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=["1000/hour"], storage_uri="memory://")
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)


@app.get("/resource")
@limiter.limit("10/second")
@limiter.limit("10000/day")
async def resource(request: Request) -> dict[str, str]:  # slowapi needs the request argument
    return {"status": "ok"}
