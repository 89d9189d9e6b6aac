from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ratelimit_mw.flask import RateLimiter

app = Flask(__name__)
# ProxyFix fixes the app's own view (url_for, request.remote_addr). The limiter keys
# by the peer address as the server gave it (ProxyFix keeps the original) and walks
# X-Forwarded-For itself, trusting only `trusted_proxies` of the policy file.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
app.config["RATELIMIT_POLICIES"] = "policies.yaml"
limiter = RateLimiter(app)


@app.get("/resource")
def resource() -> str:
    return "ok"
