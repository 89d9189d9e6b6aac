from flask import Blueprint, Flask

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
app.config.update(
    RATELIMIT_BACKEND="redis://localhost:6379/0",
    RATELIMIT_POLICIES={"version": 1, "defaults": {"key": "ip", "algorithm": "sliding_log"}},  # moving window
)
limiter = RateLimiter(app)
api = Blueprint("api", __name__, url_prefix="/api")
limiter.limit("100/minute")(api)   # one bucket per client over the blueprint's views


@api.route("/items")
def items() -> str:
    return "[]"


app.register_blueprint(api)
