from flask import Flask

from ratelimit_mw.flask import RateLimiter

limiter = RateLimiter()


def create_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(config)
    limiter.init_app(app)

    @app.get("/resource")
    @limiter.limit("1/minute")
    def resource() -> str:
        return "ok"

    return app


def test_limits_are_off_in_this_test() -> None:
    client = create_app(RATELIMIT_ENABLED=False).test_client()
    assert all(client.get("/resource").status_code == 200 for _ in range(10))


test_limits_are_off_in_this_test()
app = create_app()
