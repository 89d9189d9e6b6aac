"""ratelimit_mw: rate-limiting middleware for ASGI and WSGI apps, with a reusable core.

The names here need no optional dependency (Starlette, redis, prometheus_client
are imported only by the modules that use them).
"""

from ratelimit_mw.asgi import RateLimitMiddleware
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule, parse_rate, parse_rates
from ratelimit_mw.engine import Engine
from ratelimit_mw.errors import (
    BackendError,
    ConfigError,
    PolicyError,
    RateLimitError,
    RateLimitExceeded,
)
from ratelimit_mw.limiter import Limiter, Quota
from ratelimit_mw.outbound import OutboundLimiter
from ratelimit_mw.policy.loader import PolicySet, load_policies
from ratelimit_mw.wsgi import WSGIRateLimitMiddleware

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "Decision",
    "Engine",
    "Limiter",
    "OutboundLimiter",
    "PolicyError",
    "PolicySet",
    "Quota",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "Rule",
    "WSGIRateLimitMiddleware",
    "__version__",
    "load_policies",
    "parse_rate",
    "parse_rates",
]
