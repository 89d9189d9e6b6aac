"""Real FastAPI and Starlette apps with real authentication, for the integration tests.

FastAPI: an OAuth2 bearer dependency (``current_user``), ``RateLimit`` dependencies on a
route, an APIRouter and with the user's plan in YAML. Starlette: ``AuthenticationMiddleware``
with a bearer backend, in front of the rate-limit middleware, keys ``[user, ip]``.
Both mount the admin API. ``fastapi_app`` and ``starlette_app`` are what uvicorn serves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.admin import admin_app
from ratelimit_mw.fastapi import RateLimit, setup
from ratelimit_mw.metrics import RateLimitMetrics

ADMIN_TOKEN = "asgi-frameworks-admin-token-0123456789"
#: Bearer tokens and their users (the app's user store).
TOKENS = {"token-alice": "alice", "token-bob": "bob", "token-carol": "carol"}
#: Users and their billing plans (the app's billing data); carol's lookup fails.
PLANS = {"alice": "team", "bob": "free"}

POLICIES = f"""
version: 1
policies:
  free: {{limits: ["2/minute"]}}
  pro: {{limits: ["4/minute"]}}
plans: {{default: free, free: free, team: free, pro: pro}}
routes:
  - match: "GET /reports"
    plan: call:{__name__}:plan_of
    key: [call:{__name__}:bearer_user, ip]
"""

STARLETTE_POLICIES = f"""
version: 1
policies:
  free: {{limits: ["2/minute"]}}
  pro: {{limits: ["4/minute"]}}
plans: {{default: free, free: free, team: free, pro: pro}}
routes:
  - match: "GET /data"
    limits: ["3/minute"]
    key: [user, ip]
  - match: "GET /reports"
    plan: call:{__name__}:plan_of
    key: [user, ip]
"""


def bearer_user(request: Any) -> str | None:
    """The user of the request's bearer token (the middleware runs before FastAPI's auth)."""
    scope_user = request.scope.get("user")
    if scope_user is not None and scope_user.is_authenticated:
        return str(scope_user.display_name)
    auth = request.headers.get("authorization", "")
    return TOKENS.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None


def plan_of(request: Any) -> str | None:
    """The user's plan from the billing data; the billing lookup for carol is broken."""
    user = bearer_user(request)
    if user == "carol":
        raise RuntimeError("billing service unavailable")
    return PLANS.get(user) if user else None


# -- FastAPI ------------------------------------------------------------------------------

oauth2 = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)


class User:
    def __init__(self, username: str) -> None:
        self.username = username


async def current_user(token: Annotated[str | None, Depends(oauth2)]) -> User | None:
    """OAuth2 bearer authentication: ``None`` for anonymous, 401 for an unknown token."""
    if token is None:
        return None
    name = TOKENS.get(token)
    if name is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return User(name)


def make_fastapi_app(*, metrics: RateLimitMetrics | None = None, **options: Any) -> FastAPI:
    app = FastAPI(title="ratelimit_mw FastAPI test app")
    options.setdefault("backend", "memory://")
    engine = setup(app, policies=POLICIES, metrics=metrics, **options)
    app.mount("/admin", admin_app(engine, token=ADMIN_TOKEN))
    per_user = RateLimit("3/minute", key=Depends(current_user))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me", dependencies=[Depends(per_user)])
    async def me(request: Request, user: Annotated[User | None, Depends(current_user)]) -> dict[str, Any]:
        verdict = request.state.ratelimit
        return {"user": user.username if user else None,
                "remaining": verdict.decision.remaining if verdict is not None else None}

    @app.get("/reports")
    async def reports(user: Annotated[User | None, Depends(current_user)]) -> dict[str, Any]:
        return {"user": user.username if user else None}

    per_route = RateLimit("1/second;2/minute", key=Depends(current_user))
    router = APIRouter(prefix="/team", dependencies=[Depends(per_route)])

    @router.get("/a")
    async def team_a() -> dict[str, str]:
        return {"route": "a"}

    @router.get("/b")
    async def team_b() -> dict[str, str]:
        return {"route": "b"}

    app.include_router(router)
    return app


fastapi_app = make_fastapi_app(metrics=RateLimitMetrics(CollectorRegistry()), metrics_path="/metrics")


# -- Starlette ----------------------------------------------------------------------------


class BearerBackend(AuthenticationBackend):
    """Starlette authentication from ``Authorization: Bearer <token>``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        auth = conn.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        name = TOKENS.get(auth.removeprefix("Bearer ").strip())
        if name is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


async def data(request: Any) -> JSONResponse:
    user = request.scope.get("user")  # absent in the app built without authentication
    return JSONResponse({"user": user.display_name if user is not None and user.is_authenticated else None})


async def health_endpoint(request: Any) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def make_starlette_app(*, authentication: bool = True, policies: str = STARLETTE_POLICIES,
                       **options: Any) -> Starlette:
    from ratelimit_mw.engine import build_engine

    options.setdefault("backend", "memory://")
    engine = build_engine(policies, **options)
    middleware = [Middleware(AuthenticationMiddleware, backend=BearerBackend())] if authentication else []
    middleware.append(Middleware(RateLimitMiddleware, engine=engine))  # inside: sees scope["user"]
    routes = [
        Route("/health", health_endpoint),
        Route("/data", data),
        Route("/reports", data),
        Mount("/admin", admin_app(engine, token=ADMIN_TOKEN)),
    ]
    return Starlette(routes=routes, middleware=middleware)


starlette_app = make_starlette_app()
