from flask import Flask, render_template_string

from ratelimit_mw.flask import RateLimiter, RateLimitExceeded

app = Flask(__name__)
limiter = RateLimiter(app)

PAGE = "<h1>Slow down</h1><p>Try again in {{ seconds }} seconds.</p>"


@app.errorhandler(429)
def too_many_requests(exc: RateLimitExceeded) -> tuple[str, int]:
    # the rate-limit headers (Retry-After, RateLimit, X-RateLimit-*) are added after this
    return render_template_string(PAGE, seconds=round(exc.decision.retry_after)), 429


@app.get("/resource")
@limiter.limit("2/minute")
def resource() -> str:
    return "ok"
