"""Find the rate-limit engine an app runs, for ``ratelimit-mw explain --app`` and the
FastAPI dependency: whatever the framework, without importing it."""

from __future__ import annotations

from typing import Any

__all__ = ["engine_of"]

#: The attribute under which integrations leave their engine on the app (``app.state``,
#: Flask's ``app.extensions``).
STATE_ATTR = "ratelimit_engine"


def engine_of(obj: Any) -> Any:
    """The :class:`~ratelimit_mw.engine.Engine` of ``obj``, or ``None``.

    Looks at: ``obj`` itself; its ``state.ratelimit_engine`` (FastAPI ``setup``); its
    ``extensions["ratelimit_mw"]`` (the Flask extension) or ``extensions["ratelimit"]``;
    an ``engine`` attribute (middlewares, Django and Flask integrations); Django's own
    WSGI/ASGI handler (the engine ``ratelimit_mw.django`` builds from the settings); then
    down the ASGI/WSGI middleware chain (``.app``, ``.wsgi_app``, ``middleware_stack``).
    """
    from ratelimit_mw.engine import Engine

    seen: set[int] = set()
    node = obj
    for _ in range(64):
        if node is None or id(node) in seen:
            return None
        seen.add(id(node))
        if isinstance(node, Engine):
            return node
        if type(node).__module__.startswith("django.core.handlers."):  # Django is imported already
            from django.urls import get_resolver

            from ratelimit_mw.django.conf import engine as django_engine

            get_resolver().url_patterns  # noqa: B018 - imports the views: their decorators declare
            return django_engine()
        extensions = getattr(node, "extensions", None)
        extensions = extensions if isinstance(extensions, dict) else {}
        for found in (getattr(getattr(node, "state", None), STATE_ATTR, None),
                      extensions.get("ratelimit_mw"),  # ratelimit_mw.flask.EXTENSION
                      extensions.get("ratelimit"),
                      getattr(node, "engine", None)):
            if isinstance(found, Engine):
                return found
            inner = getattr(found, "engine", None)
            if isinstance(inner, Engine):
                return inner
        stack = getattr(node, "middleware_stack", False)
        if stack is None and callable(getattr(node, "build_middleware_stack", None)):
            stack = node.build_middleware_stack()  # Starlette builds it on the first request
        node = stack or getattr(node, "wsgi_app", None) or getattr(node, "app", None)
    return None
