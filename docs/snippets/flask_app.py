from flask import Flask

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
app.config["RATELIMIT_POLICIES"] = "policies.yaml"   # the operator's limits (optional)
limiter = RateLimiter(app)


@app.get("/resource")
def resource() -> dict[str, str]:                    # limited by its route in policies.yaml
    return {"status": "ok"}


@app.get("/search")
@limiter.limit("5/minute;100/day", key=["user", "ip"])
def search() -> dict[str, str]:                      # a limit declared next to the view
    return {"results": "..."}


@app.get("/healthz")
@limiter.exempt
def healthz() -> str:                                # never limited, whatever the YAML says
    return "ok"
