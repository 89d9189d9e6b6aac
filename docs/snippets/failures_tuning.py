from ratelimit_mw import Limiter

limiter = Limiter(
    "redis://localhost:6379/0",
    socket_timeout=0.05,          # per command (default 0.05 s)
    socket_connect_timeout=0.05,
    breaker_threshold=3,          # consecutive failures that open the breaker
    breaker_recovery=2.0,         # seconds between probes while it is open
)
