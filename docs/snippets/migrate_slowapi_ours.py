from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware

app = FastAPI()
app.add_middleware(RateLimitMiddleware, policies="policies.yaml", backend="memory://")


@app.get("/resource")
async def resource() -> dict[str, str]:  # no decorator, no request argument
    return {"status": "ok"}
