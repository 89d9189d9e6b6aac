import asyncio

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit_mw import Limiter, RateLimitMiddleware
from ratelimit_mw.testing import FakeClock


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hi")


async def statuses(app: RateLimitMiddleware, n: int) -> list[int]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return [(await client.get("/hello")).status_code for _ in range(n)]


def test_the_sixth_request_in_a_minute_is_refused() -> None:
    clock = FakeClock()
    app = RateLimitMiddleware(
        Starlette(routes=[Route("/hello", hello)]),
        policies={"version": 1, "routes": [{"match": "/hello", "limits": ["5/minute"]}]},
        limiter=Limiter("memory://", clock=clock),    # time moves only when told to
    )
    assert asyncio.run(statuses(app, 6)) == [200] * 5 + [429]
    clock.advance(12)                                  # one request's worth of refill, instantly
    assert asyncio.run(statuses(app, 2)) == [200, 429]


test_the_sixth_request_in_a_minute_is_refused()
