from flask import Flask
from flask_login import LoginManager, UserMixin, login_required

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
app.config["SECRET_KEY"] = "change-me"
login_manager = LoginManager(app)
limiter = RateLimiter(app)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


@login_manager.user_loader
def load_user(user_id: str) -> User:
    return User(user_id)


@app.get("/reports")
@login_required
@limiter.limit("10/minute", key="user")              # the logged-in user's get_id()
def reports() -> list[str]:
    return []


@app.get("/search")
@limiter.limit("30/minute", key=["user", "ip"])      # users by id, anonymous clients by IP
def search() -> list[str]:
    return []
