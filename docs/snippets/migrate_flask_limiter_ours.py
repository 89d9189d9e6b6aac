from flask import Flask

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
app.config["RATELIMIT_POLICIES"] = "policies.yaml"   # below: default_limits as `unmatched:`
limiter = RateLimiter(app)


@app.route("/slow")
@limiter.limit("1 per day", key="ip")
def slow() -> str:
    return "24"


@app.route("/fast")
def fast() -> str:  # the default limits (`unmatched:`)
    return "42"


@app.route("/ping")
@limiter.exempt
def ping() -> str:
    return "PONG"
