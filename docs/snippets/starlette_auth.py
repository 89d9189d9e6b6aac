from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from ratelimit_mw import RateLimitMiddleware

POLICIES = """
version: 1
routes:
  - match: "GET /resource"
    limits: ["5/minute"]
    key: [user, ip]   # the authenticated user, else the client IP
"""
TOKENS = {"token-alice": "alice"}  # your user store


class BearerBackend(AuthenticationBackend):
    async def authenticate(self, conn):  # type: ignore[no-untyped-def]
        name = TOKENS.get(conn.headers.get("authorization", "").removeprefix("Bearer "))
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def resource(request):  # type: ignore[no-untyped-def]
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/resource", resource)],
    middleware=[
        Middleware(AuthenticationMiddleware, backend=BearerBackend()),  # first: outermost, sets scope["user"]
        Middleware(RateLimitMiddleware, policies=POLICIES),
    ],
)
