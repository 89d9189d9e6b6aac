# flask-limiter: an extension with default limits, per-view decorators and exemptions
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

app = Flask(__name__)
limiter = Limiter(
    get_remote_address, app=app, default_limits=["200 per day", "50 per hour"], storage_uri="memory://"
)


@app.route("/slow")
@limiter.limit("1 per day")
def slow() -> str:
    return "24"


@app.route("/fast")
def fast() -> str:  # the default limits
    return "42"


@app.route("/ping")
@limiter.exempt
def ping() -> str:
    return "PONG"
