"""Small shared types: the ASGI aliases and the request view the core reads.

The ASGI aliases follow ``starlette/types.py`` so the middleware needs no
Starlette import at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

__all__ = [
    "ASGIApp",
    "KeyRequest",
    "Message",
    "Receive",
    "RequestView",
    "Scope",
    "Send",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestView(Protocol):
    """What key resolvers and route matching may read of a request.

    The ASGI and WSGI adapters each provide a lazy implementation over the scope or
    environ, so nothing is parsed unless a key function asks for it.
    """

    @property
    def method(self) -> str:
        """Upper-case HTTP method."""
        ...

    @property
    def path(self) -> str:
        """Decoded path, after ``root_path``/``SCRIPT_NAME`` is stripped."""
        ...

    @property
    def peer(self) -> str | None:
        """The transport peer: an IP address, or an opaque name (unix socket, test client)."""
        ...

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (lower-case), latin-1 decoded, or ``None``."""
        ...

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), in order of appearance."""
        ...

    def query(self, name: str) -> str | None:
        """First value of query parameter ``name``, or ``None``."""
        ...

    def cookie(self, name: str) -> str | None:
        """Value of cookie ``name``, or ``None``."""
        ...


class KeyRequest(RequestView, Protocol):
    """What key functions, plan resolvers and ``exempt_when`` receive: a request view
    that also reads like the framework's own request.

    The ASGI view adds ``scope``, the WSGI view ``environ``; ``native`` is the
    integration's request object (Starlette ``Request``, Django ``HttpRequest``,
    Flask ``request``), or ``None`` under the plain middlewares.
    """

    @property
    def headers(self) -> Mapping[str, str]:
        """Header values by name, case-insensitive (first value of a repeated header)."""
        ...

    @property
    def client(self) -> str | None:
        """The transport peer, as :attr:`RequestView.peer`."""
        ...

    @property
    def native(self) -> Any:
        """The framework's own request object, or ``None``."""
        ...
