from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ratelimit_mw import WSGIRateLimitMiddleware

app = Flask(__name__)
# Outermost first: the limiter sees the peer address as the server gave it, and
# walks X-Forwarded-For itself (trusted_proxies in the policy file). ProxyFix then
# fixes the app's own view (url_for, request.remote_addr).
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
app.wsgi_app = WSGIRateLimitMiddleware(app.wsgi_app, policies="policies.yaml")  # type: ignore[method-assign]
