"""Pace every request an httpx client sends to two third-party APIs."""

import httpx

from ratelimit_mw.httpx import RateLimitTransport

transport = RateLimitTransport(
    {
        "api.openai.com": "3000/minute",  # any port, scheme and path of this host
        "api.twilio.com/2010-04-01/Accounts/{sid}/Messages.json": "100/second",  # one endpoint
    },
    transport=httpx.HTTPTransport(retries=2),  # the wrapped transport (default: httpx's own)
    max_wait=30.0,  # wait up to 30 s for quota, then raise RateLimitExceeded
)
with httpx.Client(transport=transport, base_url="https://api.openai.com") as client:
    models = client.get("/v1/models")  # waits its turn if the quota is spent
    print(models.status_code)
