"""Prometheus metrics for outbound calls (labels: rule name and host pattern, never the URL)."""

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from ratelimit_mw.httpx import RateLimitTransport
from ratelimit_mw.metrics import RateLimitMetrics

registry = CollectorRegistry()
transport = RateLimitTransport({"api.openai.com": "3000/minute"})
RateLimitMetrics(registry).attach(transport)  # also takes an OutboundLimiter
with httpx.Client(transport=transport) as client:
    client.get("https://api.openai.com/v1/models?secret=never-in-a-label")
print(generate_latest(registry).decode().count("ratelimit_outbound_decisions_total{"))
