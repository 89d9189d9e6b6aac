"""Key functions get a request that reads like the framework's: a case-insensitive
``headers`` mapping, ``client``, ``scope`` or ``environ``, and ``native``."""

from __future__ import annotations

from typing import Any

from ratelimit_mw.core.keyspec import compile_key
from ratelimit_mw.requestview import ENVIRON, SCOPE, ASGIRequest, WSGIRequest

SEEN: list[Any] = []


def by_headers(request: Any) -> str | None:
    SEEN.append(request)
    return request.headers.get("X-API-Key")


def test_asgi_key_function_reads_headers_client_and_scope() -> None:
    scope = {"type": "http", "path": "/", "headers": [(b"x-api-key", b"k1"), (b"x-api-key", b"k2"), (b"a", b"b")],
             "client": ("198.51.100.4", 5)}
    read = compile_key(by_headers).bind(SCOPE)
    assert read(scope).endswith(":k1")
    request = SEEN[-1]
    assert request.client == "198.51.100.4" and request.scope is scope and request.native is None
    assert dict(request.headers) == {"x-api-key": "k1", "a": "b"}
    assert "X-Api-Key" in request.headers and "nope" not in request.headers


def test_wsgi_key_function_reads_headers_client_and_environ() -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_API_KEY": "k9", "REMOTE_ADDR": "10.1.2.3",
               "CONTENT_TYPE": "text/plain", "wsgi.input": object()}
    read = compile_key(by_headers).bind(ENVIRON)
    assert read(environ).endswith(":k9")
    request = SEEN[-1]
    assert request.client == "10.1.2.3" and request.environ is environ
    assert dict(request.headers) == {"x-api-key": "k9", "content-type": "text/plain"}


def test_an_integration_passes_its_native_request() -> None:
    native = object()
    assert ASGIRequest({"type": "http", "headers": [(b"bad",)]}, native=native).native is native
    assert len(ASGIRequest({"type": "http", "headers": [(b"bad",)]}).headers) == 0  # malformed pair skipped
    assert WSGIRequest({}, native=native).native is native
