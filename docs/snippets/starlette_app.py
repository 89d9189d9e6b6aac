from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from ratelimit_mw import RateLimitMiddleware


async def resource(request: object) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/resource", resource)],
    middleware=[Middleware(RateLimitMiddleware, policies="policies.yaml")],
)
