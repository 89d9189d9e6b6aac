"""Key spec ``user``: the authenticated user's identifier, read through ``Access.user``.

Anonymous requests fall to the next entry of the chain; a protocol that never knows
users (plain WSGI) warns once and stays limited; an ASGI scope without ``user`` (no
AuthenticationMiddleware) is reported once and stays limited too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.core.keys import ANONYMOUS, Access, UserUnavailable
from ratelimit_mw.core.keyspec import compile_key
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.requestview import ENVIRON, SCOPE
from ratelimit_mw.testing import FakeClock
from ratelimit_mw.wsgi import WSGIRateLimitMiddleware


class User:
    def __init__(self, ident: str | None, authenticated: bool = True) -> None:
        self.ident = ident
        self.is_authenticated = authenticated

    @property
    def identity(self) -> str:
        if self.ident is None:
            raise NotImplementedError
        return self.ident

    @property
    def display_name(self) -> str:
        return "shown-name"


def scope(user: Any = None, *, with_user: bool = True, peer: str = "203.0.113.5") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": (peer, 1)}
    if with_user:
        out["user"] = user
    return out


def test_user_key_reads_the_scope_user() -> None:
    read = compile_key("user").bind(SCOPE)
    assert read(scope(User("alice"))) == "user:alice"
    assert read(scope(User(None))) == "user:shown-name"  # SimpleUser has no identity
    assert read(scope(User("bob", authenticated=False))) == ANONYMOUS


def test_anonymous_falls_to_the_next_entry_of_the_chain() -> None:
    read = compile_key(["user", "ip"]).bind(SCOPE)
    assert read(scope(User("alice"))) == "user:alice"
    assert read(scope(User("alice", authenticated=False))) == "ip:203.0.113.5"


def test_no_authentication_configured_is_reported_once_and_stays_limited() -> None:
    errors: list[tuple[str, Exception]] = []
    read = compile_key(["user", "ip"]).bind(SCOPE, lambda label, exc: errors.append((label, exc)))
    assert read(scope(with_user=False)) == "ip:203.0.113.5"
    assert read(scope(with_user=False)) == "ip:203.0.113.5"
    assert len(errors) == 1 and isinstance(errors[0][1], UserUnavailable)
    assert "AuthenticationMiddleware" in str(errors[0][1])


def test_a_raising_user_reader_never_lifts_the_limit() -> None:
    def broken(source: Any) -> object:
        raise RuntimeError("db down")

    access = SCOPE._replace(user=broken)
    assert compile_key("user").bind(access)(scope()) == "unidentified"
    assert compile_key(["user", "ip"]).bind(access)(scope()) == "ip:203.0.113.5"


def test_existing_access_values_keep_working() -> None:
    legacy = Access(SCOPE.peer, SCOPE.header, SCOPE.view, SCOPE.request)
    assert legacy.user(scope(User("alice"))) is None
    assert compile_key(["user", "ip"]).bind(legacy)(scope(User("alice"))) == "ip:203.0.113.5"


def test_user_takes_no_argument() -> None:
    with pytest.raises(ConfigError, match="takes no argument"):
        compile_key("user:id")


POLICY = "version: 1\nunmatched: {limits: ['1/minute'], key: [user, ip]}\n"


def test_wsgi_user_key_warns_at_start_up_and_limits_by_ip() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    with capture_logs() as events:
        wrapped = WSGIRateLimitMiddleware(app, policies=POLICY, backend="memory://", clock=FakeClock())
    assert [e["event"] for e in events] == ["user_key_unavailable"]
    statuses = []
    for _ in range(2):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "198.51.100.7"}
        wrapped(environ, lambda status, headers, exc=None: statuses.append(status))
    assert statuses == ["200 OK", "429 Too Many Requests"]
    other: list[str] = []
    wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "198.51.100.8"},
            lambda status, headers, exc=None: other.append(status))
    assert other == ["200 OK"]


def test_asgi_users_have_their_own_buckets() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RateLimitMiddleware(app, policies=POLICY, backend="memory://", clock=FakeClock())

    async def status(request_scope: dict[str, Any]) -> int:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request"}

        await middleware(request_scope, receive, send)
        return int(sent[0]["status"])

    async def run() -> list[int]:
        return [
            await status(scope(User("alice"))),
            await status(scope(User("alice"))),
            await status(scope(User("bob"))),
            await status(scope(User("x", authenticated=False))),
        ]

    assert asyncio.run(run()) == [200, 429, 200, 200]
    assert ENVIRON.user is not SCOPE.user
