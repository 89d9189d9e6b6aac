from flask import Flask

from ratelimit_mw import WSGIRateLimitMiddleware

app = Flask(__name__)
app.wsgi_app = WSGIRateLimitMiddleware(app.wsgi_app, policies="policies.yaml")  # type: ignore[method-assign]


@app.route("/slow")
def slow() -> str:
    return "24"


@app.route("/fast")
def fast() -> str:
    return "42"


@app.route("/ping")
def ping() -> str:
    return "PONG"
