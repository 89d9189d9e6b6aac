from starlette.applications import Starlette

from ratelimit_mw import RateLimitMiddleware

# Any ASGI app can be wrapped directly; the wrapper is itself an ASGI app.
inner = Starlette()
app = RateLimitMiddleware(inner, policies="policies.yaml", backend="memory://")
print(app.engine.policies.routes[0].template)  # the first route of the file
