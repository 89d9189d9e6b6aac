"""Limit calls made through any SDK (not only httpx) with a decorator."""

import asyncio

from ratelimit_mw import OutboundLimiter

limiter = OutboundLimiter(max_wait=10.0)  # backend="redis://..." shares the quota between processes


@limiter.limit("openai", "3000/minute")
def complete(prompt: str) -> str:
    return f"completion of {prompt!r}"  # e.g. openai_client.chat.completions.create(...)


@limiter.limit("openai")  # the same rule, from async code: one quota for both
async def acomplete(prompt: str) -> str:
    return f"completion of {prompt!r}"


@limiter.limit("twilio", {"limit": 100, "window": 1}, on_limit="raise")  # the seeds' mapping form
def send_sms(to: str) -> None:
    print(f"sms to {to}")


print(complete("hello"))
print(asyncio.run(acomplete("hello again")))
send_sms("+15550100")
