from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.metrics import RateLimitMetrics

registry = CollectorRegistry()          # or prometheus_client.REGISTRY
metrics = RateLimitMetrics(registry)    # registers nothing at import time
app = FastAPI()
app.add_middleware(
    RateLimitMiddleware, policies="policies.yaml", metrics=metrics, metrics_path="/metrics"
)
