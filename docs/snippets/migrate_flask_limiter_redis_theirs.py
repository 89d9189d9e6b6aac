# flask-limiter: Redis storage, a moving window, and a limit per blueprint
from flask import Blueprint, Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

app = Flask(__name__)
limiter = Limiter(
    get_remote_address, app=app, storage_uri="redis://localhost:6379/0", strategy="moving-window"
)
api = Blueprint("api", __name__, url_prefix="/api")
limiter.limit("100/minute")(api)


@api.route("/items")
def items() -> str:
    return "[]"


app.register_blueprint(api)
