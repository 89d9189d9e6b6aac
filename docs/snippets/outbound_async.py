"""The async twin, failing at once instead of waiting when the quota is spent."""

import asyncio

import httpx

from ratelimit_mw import RateLimitExceeded
from ratelimit_mw.httpx import AsyncRateLimitTransport


async def main() -> None:
    transport = AsyncRateLimitTransport({"api.openai.com": "3000/minute"}, on_limit="raise")
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            response = await client.get("https://api.openai.com/v1/models")
        except RateLimitExceeded as exc:
            print(f"quota spent; retry in {exc.decision.retry_after:.1f} s")
        else:
            print(response.status_code)


asyncio.run(main())
