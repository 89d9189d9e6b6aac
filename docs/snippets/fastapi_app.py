from fastapi import FastAPI

from ratelimit_mw import RateLimitMiddleware

app = FastAPI()
app.add_middleware(RateLimitMiddleware, policies="policies.yaml")  # memory by default


@app.get("/resource")
async def resource() -> dict[str, str]:
    return {"status": "ok"}
