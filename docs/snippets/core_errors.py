from ratelimit_mw import ConfigError, Limiter, PolicyError, RateLimitError, load_policies

try:
    load_policies("version: 1\nroutes:\n  - match: /x\n    limits: ['ten per minute']\n")
except PolicyError as exc:
    print(exc.line, exc.field)   # 4 routes[0].limits[0]

try:
    Limiter("memory://").check("k", "10 per fortnight")
except ConfigError as exc:       # PolicyError is a ConfigError; both are RateLimitErrors
    assert isinstance(exc, RateLimitError)
