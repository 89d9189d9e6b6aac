"""How the adapters' protocols are read: accessors for keys, and lazy request views.

``SCOPE`` (ASGI) and ``ENVIRON`` (WSGI) implement :class:`~ratelimit_mw.core.keys.Access`;
the views (:class:`ASGIRequest`, :class:`WSGIRequest`) are what key functions receive,
parsed only as far as asked, and malformed input reads as ``None``, never an exception.
Routes match on the upper-cased method, as Django and werkzeug route (RFC 9110 methods
are case-sensitive), so that ``get /x`` cannot escape the limits of ``GET /x``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qsl

from ratelimit_mw.core.keys import Access, UserUnavailable
from ratelimit_mw.headermap import HeaderMap, from_environ, from_scope

__all__ = ["ENVIRON", "SCOPE", "ASGIRequest", "WSGIRequest", "cookie_value", "environ_key", "route_path",
           "wsgi_path"]


def cookie_value(raw: str | None, name: str) -> str | None:
    """Find cookie ``name`` in a ``Cookie`` header, tolerating malformed pairs."""
    if not raw:
        return None
    for part in raw.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def _query_value(query: str, name: str) -> str | None:
    if not query or name not in query:
        return None
    try:
        for key, value in parse_qsl(query, keep_blank_values=True, max_num_fields=200):
            if key == name:
                return value
    except ValueError:
        return None
    return None


def route_path(scope: Mapping[str, Any]) -> str:
    """The path to match routes against: ``path`` with ``root_path`` removed.

    Follows Starlette: ``scope["path"]`` includes ``root_path`` (ASGI spec), so a
    mounted app strips it; servers that already strip it are handled too.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):] or "/"
    return path


class ASGIRequest:
    """RequestView over an ASGI HTTP/WebSocket scope; what key functions receive.

    Besides the view's methods: ``scope``, ``headers`` (a case-insensitive mapping),
    ``client`` (the peer address) and ``native``, the framework's own request where an
    integration has one (a Starlette ``Request``), else ``None``.
    """

    __slots__ = ("scope", "path", "method", "native")

    def __init__(self, scope: Mapping[str, Any], path: str | None = None, native: Any = None) -> None:
        self.scope = scope
        self.native = native
        if path is None:
            path = scope.get("path") or "/"
            if scope.get("root_path"):
                path = route_path(scope)
        self.path = path
        self.method: str = upper_method(scope.get("method", "GET"))

    @property
    def peer(self) -> str | None:
        client = self.scope.get("client")
        if client:
            host = client[0]
            return str(host) if host is not None else None
        return None

    client = peer

    @property
    def headers(self) -> HeaderMap:
        return from_scope(self.scope.get("headers") or ())

    def header(self, name: str) -> str | None:
        return _scope_value(name.encode("latin-1"), self.scope)

    def header_values(self, name: str) -> list[str]:
        target = name.encode("latin-1")
        size = len(target)
        return [
            bytes(value).decode("latin-1")
            for key, value in self.scope.get("headers") or ()
            if key == target or (len(key) == size and key.lower() == target)
        ]

    def query(self, name: str) -> str | None:
        raw = self.scope.get("query_string") or b""
        return _query_value(bytes(raw).decode("latin-1"), name)

    def cookie(self, name: str) -> str | None:
        return cookie_value(self.header("cookie"), name)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def upper_method(method: object) -> str:
    """The method routes are matched on: upper-cased (see the module docstring)."""
    return method if method in _METHODS else str(method).upper()  # type: ignore[return-value]


@lru_cache(maxsize=256)
def environ_key(name: str) -> str:
    """The WSGI environ key of header ``name`` (``X-API-Key`` -> ``HTTP_X_API_KEY``)."""
    upper = name.upper().replace("-", "_")
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper


def _wsgi_text(value: str) -> str:
    """WSGI strings are latin-1-decoded bytes; recover UTF-8 text where it is valid."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def wsgi_path(environ: Mapping[str, Any]) -> str:
    """The path to match routes against: ``PATH_INFO``, UTF-8 recovered where valid."""
    path = environ.get("PATH_INFO") or "/"
    return path if path.isascii() else (_wsgi_text(path) or "/")


class WSGIRequest:
    """RequestView over a WSGI environ; what key functions receive.

    Besides the view's methods: ``environ``, ``headers`` (a case-insensitive mapping),
    ``client`` (the peer address) and ``native``, the framework's own request where an
    integration has one (a Flask ``request``, a Django ``HttpRequest``), else ``None``.
    """

    __slots__ = ("environ", "path", "method", "native")

    def __init__(self, environ: Mapping[str, Any], native: Any = None) -> None:
        self.environ = environ
        self.native = native
        self.path = wsgi_path(environ)
        self.method: str = upper_method(environ.get("REQUEST_METHOD", "GET"))

    @property
    def peer(self) -> str | None:
        addr = self.environ.get("REMOTE_ADDR")
        return str(addr) if addr else None

    client = peer

    @property
    def headers(self) -> HeaderMap:
        return from_environ(self.environ)

    def header(self, name: str) -> str | None:
        return _environ_value(environ_key(name), self.environ)

    def header_values(self, name: str) -> list[str]:
        value = self.header(name)
        return [value] if value is not None else []

    def query(self, name: str) -> str | None:
        return _query_value(self.environ.get("QUERY_STRING") or "", name)

    def cookie(self, name: str) -> str | None:
        return cookie_value(self.header("cookie"), name)


# -- accessors: how compiled keys read each protocol ---------------------------------


def _scope_value(target: bytes, scope: Mapping[str, Any]) -> str | None:
    """The first value of header ``target`` (lower-case latin-1) in an ASGI scope."""
    headers = scope.get("headers") or ()
    for key, value in headers:  # servers send lower-case names: try those first
        if key == target:
            return value.decode("latin-1") if type(value) is bytes else bytes(value).decode("latin-1")
    for key, value in headers:
        if bytes(key).lower() == target:
            return bytes(value).decode("latin-1")
    return None


def _scope_header(name: str) -> Callable[[Any], str | None]:
    return partial(_scope_value, name.encode("latin-1"))  # a partial adds no Python frame


def _scope_peer(scope: Mapping[str, Any]) -> Any:
    client = scope.get("client")
    return client[0] if client else None


def _environ_peer(environ: Mapping[str, Any]) -> Any:
    return environ.get("REMOTE_ADDR")


def _environ_value(key: str, environ: Mapping[str, Any]) -> str | None:
    value = environ.get(key)
    return value if type(value) is str else None


def _environ_header(name: str) -> Callable[[Any], str | None]:
    return partial(_environ_value, environ_key(name))


def _scope_user(scope: Mapping[str, Any]) -> object | None:
    """The identity of ``scope["user"]`` (Starlette's AuthenticationMiddleware sets it):
    ``identity``, else ``display_name``; ``None`` for an unauthenticated user."""
    try:
        user = scope["user"]
    except KeyError:
        raise UserUnavailable(
            "the ASGI scope has no 'user': add Starlette's AuthenticationMiddleware in front of "
            "the rate limiter, or give the dependency a key (key=Depends(current_user))"
        ) from None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        identity: object = user.identity
    except NotImplementedError:  # starlette's SimpleUser names itself by display_name only
        identity = getattr(user, "display_name", None)
    return identity


#: The accessors the adapters bind keys to.
SCOPE = Access(_scope_peer, _scope_header, ASGIRequest, ASGIRequest, _scope_user)
ENVIRON = Access(_environ_peer, _environ_header, WSGIRequest, WSGIRequest)
