"""A real Flask app with flask-login, limited by ``ratelimit_mw.flask.RateLimiter``.

Built by an app factory around one module-level ``RateLimiter``, as a Flask user
would write it: views in blueprints, users logged in through a login view and
Flask's session cookie. Shared by the in-process tests and the gunicorn test.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from ratelimit_mw.flask import RateLimiter

POLICIES = """
version: 1
defaults:
  key: [user, ip]
policies:
  free: {limits: ["2/minute"]}
  pro: {limits: ["5/minute"]}
routes:
  - match: "GET /reports"
    limits: ["3/minute"]
  - match: "/api/**"
    limits: ["10/minute"]
  - match: "GET /both"
    limits: ["4/minute"]
  - match: "GET /plan-data"
    plan: call:tests.flask_integration.flask_apps:plan_of
plans: {default: free, free: free, pro: pro}
"""

PLANS = {"alice": "free", "bob": "pro", "carol": "free"}


def plan_of(request: Any) -> str | None:
    """The logged-in user's plan (the app's billing data); anonymous: the default plan."""
    return PLANS.get(current_user.get_id()) if current_user.is_authenticated else None


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


limiter = RateLimiter()
main = Blueprint("main", __name__)
api = Blueprint("api", __name__, url_prefix="/api")
quiet = Blueprint("quiet", __name__, url_prefix="/quiet")
limiter.limit("2/minute")(api)
limiter.exempt(quiet)


def _me() -> Any:
    decision = g.ratelimit
    return jsonify(
        user=current_user.get_id() if current_user.is_authenticated else None,
        remaining=None if decision is None else decision.remaining,
    )


@main.post("/login")
def login() -> Any:
    name = request.form["user"]
    if name not in PLANS:
        return Response("unknown user", status=403)
    login_user(User(name))
    return "logged in"


@main.post("/logout")
def logout() -> Any:
    logout_user()
    return "logged out"


@main.get("/search")
@limiter.limit("3/minute", key=["user", "ip"])
def search() -> Any:
    return _me()


@main.get("/reports")
def reports() -> Any:  # limited by the YAML route only
    return _me()


@main.get("/both")
@limiter.limit("2/minute")
def both() -> Any:  # the YAML route (4/minute) and the decorator (2/minute)
    return _me()


@main.get("/plan-data")
def plan_data() -> Any:  # limited by the client's plan (YAML `plan:`)
    return _me()


@main.get("/health")
@limiter.exempt
def health() -> Any:
    return "ok"


@api.get("/a")
def api_a() -> Any:
    return _me()


@api.get("/b")
def api_b() -> Any:
    return _me()


@api.get("/open")
@limiter.exempt
def api_open() -> Any:
    return _me()


@quiet.get("/x")
def quiet_x() -> Any:
    return _me()


def create_app(**config: Any) -> Flask:
    """The app factory: one app per call, each with its own engine and counts."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret-key-0123456789", RATELIMIT_POLICIES=POLICIES)
    app.config.update(config)
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return User(user_id) if user_id in PLANS else None

    limiter.init_app(app)
    app.register_blueprint(main)
    app.register_blueprint(api)
    app.register_blueprint(quiet)
    return app


#: What gunicorn serves (tests/flask_integration/test_flask_gunicorn.py).
app = create_app(RATELIMIT_BACKEND=os.environ.get("FLASK_TEST_BACKEND", "memory://"))
