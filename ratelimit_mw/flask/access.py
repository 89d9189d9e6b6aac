"""How keys read a Flask request: headers and peer from its environ, the user from flask-login.

The extension decides inside Flask's request context, so the ``source`` a plan reads
is Flask's own ``Request``: headers and the peer come straight from its WSGI environ
(as the WSGI middleware reads them), key functions receive the ``Request`` itself,
and the ``user`` key asks flask-login's ``current_user``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.core.keys import Access
from ratelimit_mw.requestview import WSGIRequest, environ_key

__all__ = ["FLASK_REQUEST", "HAS_FLASK_LOGIN", "login_user_id", "warn_once"]

try:  # flask-login is optional: without it nobody is ever authenticated
    from flask_login import current_user as _current_user
except ImportError:  # pragma: no cover - exercised in a subprocess test
    _current_user = None

#: Whether flask-login is importable (the ``user`` key can see users at all).
HAS_FLASK_LOGIN = _current_user is not None

#: Apps already warned that the ``user`` key cannot see users (one line per app).
_warned: set[int] = set()


def warn_once(app: Any, reason: str) -> None:
    """Say once per app why its ``user`` key never sees a user."""
    if id(app) in _warned:
        return
    _warned.add(id(app))
    log.logger.warning("user_key_unavailable", integration="flask", app=getattr(app, "name", "?"), reason=reason)


def login_user_id(request: Any) -> object | None:
    """flask-login's authenticated user's ``get_id()``, or ``None`` (anonymous, or no flask-login).

    Without flask-login, or on an app with no ``LoginManager``, the ``user`` key is
    absent for every request: the next entry of the key chain decides, and one
    warning says why. A ``user_loader`` that raises counts as anonymous too (the
    request stays limited by the next entry), and is reported as a key error.
    """
    from flask import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if _current_user is None:
        warn_once(app, "flask-login is not installed")
        return None
    if getattr(app, "login_manager", None) is None:
        warn_once(app, "the app has no flask_login.LoginManager")
        return None
    try:
        if not _current_user.is_authenticated:
            return None
        return _current_user.get_id()  # type: ignore[no-any-return]
    except Exception as exc:  # the app's user loader failed: still limited, by the next entry
        log.logger.error(log.KEY_ERROR, route="<flask user>", key_function="flask_login.current_user",
                         error=type(exc).__name__, detail=str(exc)[:200])
        return None


def _peer(request: Any) -> Any:
    return request.environ.get("REMOTE_ADDR")


def _environ_value(key: str, request: Any) -> str | None:
    value = request.environ.get(key)
    return value if type(value) is str else None


def _header(name: str) -> Callable[[Any], str | None]:
    return partial(_environ_value, environ_key(name))


def _view(request: Any) -> WSGIRequest:
    return WSGIRequest(request.environ)


def _same(request: Any) -> Any:
    return request


#: Access over ``flask.Request``: what the extension binds keys to.
_READERS: tuple[Any, ...] = (_peer, _header, _view, _same, login_user_id)
FLASK_REQUEST = Access(*_READERS[: len(Access._fields)])
