"""The demo app (``examples/fastapi_app.py``) with its RateLimitMiddleware taken out.

The "without the limiter" side of the seed traffic model: the same FastAPI app,
routes and uvicorn settings, minus one middleware. Starlette builds its middleware
stack on the first request, so removing the entry before serving is enough.
"""

from typing import Any

from examples.fastapi_app import app
from ratelimit_mw import RateLimitMiddleware

_LIMITER: Any = RateLimitMiddleware
app.user_middleware = [m for m in app.user_middleware if m.cls is not _LIMITER]
app.middleware_stack = None

__all__ = ["app"]
