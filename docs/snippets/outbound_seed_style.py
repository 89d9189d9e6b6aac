"""The seed documents' calling style, written with ratelimit_mw."""

from ratelimit_mw import Limiter, OutboundLimiter

outbound = OutboundLimiter()

# configure_limit("api_service", RateLimitConfig(requests_per_second=100, burst_size=150))
outbound.add("api_service", {"requests_per_second": 100, "burst_size": 150})

# if limiter.allow_request(): ...
if outbound.try_acquire("api_service").allowed:
    print("call the API")

# allowed, remaining = limiter.check_limit("user_123")
limiter = Limiter("memory://")  # or Limiter("redis://localhost:6379/0")
decision = limiter.check("user_123", "60/minute")
allowed, remaining = decision.allowed, decision.remaining
print(allowed, remaining)

# usage = await limiter.get_current_usage("api_service")
print(outbound.usage("api_service"))  # limit, remaining, reset_after, paused_for, waiting
print(limiter.peek("user_123", "60/minute").remaining)  # the same for a plain key: 59
