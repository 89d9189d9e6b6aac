"""How keys read a Flask request: headers and peer from its environ, the user from flask-login.

The extension decides inside Flask's request context, so the ``source`` a plan reads
is Flask's own ``Request``: headers and the peer come straight from its WSGI environ
(as the WSGI middleware reads them), key functions receive the WSGI request view
with ``native`` set to Flask's ``Request``, and the ``user`` key asks flask-login's
``current_user``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ratelimit_mw.core.keys import Access, UserUnavailable
from ratelimit_mw.requestview import WSGIRequest, environ_key

__all__ = ["FLASK_REQUEST", "HAS_FLASK_LOGIN", "login_user_id"]

try:  # flask-login is optional: without it nobody is ever authenticated
    from flask_login import current_user as _current_user
except ImportError:  # pragma: no cover - exercised in a subprocess test
    _current_user = None

#: Whether flask-login is importable (the ``user`` key can see users at all).
HAS_FLASK_LOGIN = _current_user is not None


def login_user_id(request: Any) -> object | None:
    """flask-login's authenticated user's ``get_id()``, or ``None`` when anonymous.

    Without flask-login, or on an app with no ``LoginManager``, no request can carry
    a user: :class:`~ratelimit_mw.core.keys.UserUnavailable` says why (reported once
    per route), and the next entry of the key chain decides. A ``user_loader`` that
    raises is the app's bug: reported, and the request is limited by the next entry.
    """
    if _current_user is None:
        raise UserUnavailable("flask-login is not installed: the 'user' key never sees a user")
    from flask import current_app

    if getattr(current_app, "login_manager", None) is None:
        raise UserUnavailable(
            "the app has no flask_login.LoginManager (LoginManager(app) or login_manager.init_app(app)): "
            "the 'user' key never sees a user"
        )
    if not _current_user.is_authenticated:
        return None
    return _current_user.get_id()  # type: ignore[no-any-return]


def _peer(request: Any) -> Any:
    """The transport peer, as the server gave it: werkzeug's ``ProxyFix`` rewrites
    ``REMOTE_ADDR`` for the app and keeps the original, which is what the limiter's
    own ``trusted_proxies`` walk starts from (one place decides whom to believe)."""
    environ = request.environ
    original = environ.get("werkzeug.proxy_fix.orig")
    if original is not None:
        return original.get("REMOTE_ADDR")
    return environ.get("REMOTE_ADDR")


def _environ_value(key: str, request: Any) -> str | None:
    value = request.environ.get(key)
    return value if type(value) is str else None


def _header(name: str) -> Callable[[Any], str | None]:
    return partial(_environ_value, environ_key(name))


def _view(request: Any) -> WSGIRequest:
    return WSGIRequest(request.environ)


def _key_request(request: Any) -> WSGIRequest:
    """What key functions, plan resolvers and ``exempt_when`` get: the same request view
    as under the WSGI middleware (so one function serves both), with ``native`` set to
    Flask's ``request``."""
    return WSGIRequest(request.environ, native=request)


#: Access over ``flask.Request``: what the extension binds keys to.
FLASK_REQUEST = Access(_peer, _header, _view, _key_request, login_user_id)
