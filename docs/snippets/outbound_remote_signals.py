"""Honour the remote side's own signals, and retry after the pause they ask for."""

import httpx

from ratelimit_mw import OutboundLimiter
from ratelimit_mw.httpx import RateLimitTransport

outbound = OutboundLimiter({"api.github.com": "5000/hour"}, max_wait=60.0)
# retries=1: a 429/503 that paused the rule is sent once more when the pause ends
client = httpx.Client(transport=RateLimitTransport(outbound=outbound, retries=1))
response = client.get("https://api.github.com/rate_limit")
print(response.status_code, "paused for", outbound.paused_for("api.github.com"), "s")

# Other HTTP clients: report each response yourself (status and headers).
pause = outbound.observe_response("api.github.com", 429, {"retry-after": "2"})
print(pause)  # RemotePause(seconds=2.0, signal='retry-after'): every sharer now waits 2 s
