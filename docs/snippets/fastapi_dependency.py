from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer

from ratelimit_mw.fastapi import RateLimit, setup

app = FastAPI()
setup(app, policies="policies.yaml")  # the middleware, the engine for RateLimit, the 429 in OpenAPI

oauth2 = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)
USERS = {"token-alice": "alice"}  # your user store


async def current_user(token: Annotated[str | None, Depends(oauth2)]) -> str | None:
    if token is None:
        return None  # anonymous: limited by client IP instead
    if token not in USERS:
        raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
    return USERS[token]


per_user = RateLimit("5/minute", key=Depends(current_user))


@app.get("/resource", dependencies=[Depends(per_user)])
async def resource() -> dict[str, str]:
    return {"status": "ok"}


router = APIRouter(prefix="/reports", dependencies=[Depends(RateLimit("1/second;20/hour", key="user"))])
app.include_router(router)
