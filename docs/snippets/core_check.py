from ratelimit_mw import Limiter

limiter = Limiter("memory://")                        # or "redis://localhost:6379/0"
decision = limiter.check("user-42", "10/second; burst=40")  # consumes 1 if allowed
print(decision.allowed, decision.remaining, decision.reset_after, decision.retry_after)

# several limits at once, all-or-nothing; a request may cost more than 1
limiter.check("user-42", ["10/second", "1000/hour"], cost=5)
usage = limiter.peek("user-42", "10/second")           # consumes nothing
limiter.reset("user-42", "10/second")
assert decision.allowed and usage.remaining < 10
