# slowapi: limit by API key, and share one limit between routes
from fastapi import FastAPI, Request
from slowapi import Limiter


def api_key(request: Request) -> str:
    return request.headers.get("X-API-Key") or (request.client.host if request.client else "")


limiter = Limiter(key_func=api_key)
app = FastAPI()
app.state.limiter = limiter
reports = limiter.shared_limit("100/hour", scope="reports")


@app.get("/reports/daily")
@reports
async def daily(request: Request) -> dict[str, str]:
    return {"report": "daily"}


@app.get("/reports/weekly")
@reports
async def weekly(request: Request) -> dict[str, str]:
    return {"report": "weekly"}
