from flask import Flask

from ratelimit_mw import WSGIRateLimitMiddleware

app = Flask(__name__)
app.wsgi_app = WSGIRateLimitMiddleware(app.wsgi_app, policies="policies.yaml")  # type: ignore[method-assign]


@app.get("/resource")
def resource() -> dict[str, str]:
    return {"status": "ok"}
