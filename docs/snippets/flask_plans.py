from typing import Any

from flask import Flask
from flask_login import LoginManager, current_user

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
app.config["SECRET_KEY"] = "change-me"
LoginManager(app).user_loader(lambda user_id: None)  # your user loader
SUBSCRIPTIONS = {"42": "pro"}                         # your billing data


def plan_of(request: Any) -> str | None:
    """The logged-in user's plan; None (anonymous, unknown) gets the default plan."""
    return SUBSCRIPTIONS.get(current_user.get_id()) if current_user.is_authenticated else None


app.config["RATELIMIT_POLICIES"] = {                  # or YAML: plan: call:myapp.billing:plan_of
    "version": 1,
    "defaults": {"key": ["user", "ip"]},
    "policies": {"free": {"limits": ["100/hour"]}, "pro": {"limits": ["5000/hour"]}},
    "plans": {"default": "free", "free": "free", "pro": "pro"},
    "routes": [{"match": "/api/**", "plan": plan_of}],
}
limiter = RateLimiter(app)


@app.get("/api/reports")
def reports() -> list[str]:
    return []
