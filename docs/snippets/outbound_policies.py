"""Outbound rules from the policies file, shared through Redis when REDIS_URL is set."""

import os

import httpx

from ratelimit_mw import OutboundLimiter
from ratelimit_mw.httpx import RateLimitTransport

POLICIES = """
version: 1
defaults:
  on_backend_error: allow          # outbound rules inherit this unless they set their own
outbound:                          # first match wins: specific rules first
  images:
    limits: ["50/minute", "1000/day"]
    host: https://api.openai.com
    path: /v1/images/**            # the same path syntax as inbound routes
    methods: [POST]
  api.openai.com: 3000/minute      # a target: [scheme://]host[:port][/path]
  twilio:                          # a name, in the seed documents' mapping form
    limit: 100
    window: 1
    host: api.twilio.com
    on_backend_error: memory       # Redis down: keep the limit in this process
"""

outbound = OutboundLimiter(policies=POLICIES, backend=os.environ.get("REDIS_URL", "memory://"))
client = httpx.Client(transport=RateLimitTransport(outbound=outbound))
print([rule.name for rule in outbound.rules])  # ['images', 'api.openai.com', 'twilio']
client.post("https://api.openai.com/v1/images/generations", json={"prompt": "a cat"})
print(outbound.usage("images")["remaining"])  # 49: the images rule took this request
