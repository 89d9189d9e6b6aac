import asyncio

from ratelimit_mw import Limiter, RateLimitExceeded


async def main() -> None:
    limiter = Limiter("memory://")
    decision = await limiter.acheck("user-42", "100/minute")
    assert decision.allowed
    try:
        await limiter.aacquire("partner-api", "100/second", timeout=5)  # waits for a slot
    except RateLimitExceeded as exc:  # no slot within 5 s
        print("gave up", exc.decision.retry_after)


asyncio.run(main())
