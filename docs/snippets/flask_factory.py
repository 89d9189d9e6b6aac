from flask import Blueprint, Flask

from ratelimit_mw.flask import RateLimiter

limiter = RateLimiter()                              # no app yet: decorators only record
api = Blueprint("api", __name__, url_prefix="/api")
limiter.limit("100/minute", key="header:X-API-Key")(api)   # one bucket over the blueprint


@api.get("/orders")
def orders() -> list[str]:
    return []


@api.get("/status")
@limiter.exempt                                      # outside the blueprint's limit
def status() -> str:
    return "ok"


def create_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        RATELIMIT_POLICIES="policies.yaml",
        RATELIMIT_BACKEND="memory://",               # "redis://..." with several workers
        RATELIMIT_ENABLED=True,
    )
    app.config.from_mapping(config)
    limiter.init_app(app)                            # this app's engine, from its config
    app.register_blueprint(api)
    return app


app = create_app()
