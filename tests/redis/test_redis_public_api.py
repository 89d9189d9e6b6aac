"""The fast Redis paths read redis-py internals; a redis-py without them must slow us
down, never turn checks into backend errors. The shape checks name what is missing,
and a backend whose checks fail them answers through redis-py's public API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from ratelimit_mw.backends import redis_channel
from ratelimit_mw.backends.redis_direct import direct_unsupported
from ratelimit_mw.limiter import Limiter


class _NoReader:
    """An asyncio connection class of a redis-py that renamed its stream attributes."""

    def __init__(self) -> None:
        self._stream = None
        self.encoder = None
        self.socket_timeout = None


def test_the_installed_redis_py_has_the_shape_the_fast_paths_read() -> None:
    assert redis_channel.unsupported() is None
    assert direct_unsupported(redis.Redis()) is None


def test_shape_checks_name_what_is_missing() -> None:
    assert redis_channel.unsupported(_NoReader) == "redis-py asyncio connections without _reader"
    client = redis.Redis()

    class Pool:
        connection_class = redis.Connection
        cache = None

        def get_connection(self) -> Any: ...

    client.connection_pool = Pool()  # type: ignore[assignment]
    assert direct_unsupported(client) == "redis-py without Pool.release"
    single = redis.Redis()
    single.connection = object()  # what single_connection_client=True sets up (it connects at once)
    assert direct_unsupported(single) == "a single-connection client"


@pytest.mark.redis
def test_a_redis_py_without_the_internals_falls_back_and_says_so(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_channel, "unsupported", lambda *a: "redis-py asyncio connections without _reader (test)")
    monkeypatch.setattr("ratelimit_mw.backends.redis.direct_unsupported", lambda client: "no kept connections (test)")
    limiter = Limiter(redis_url, prefix="fallback", socket_timeout=5.0, socket_connect_timeout=5.0)
    with capture_logs() as logs:
        sync = [limiter.check("k", "3/minute").allowed for _ in range(4)]

        async def run() -> list[bool]:
            try:
                return [(await limiter.acheck("a", "3/minute")).allowed for _ in range(4)]
            finally:
                await limiter.aclose()

        async_ = asyncio.run(run())
    limiter.close()
    assert sync == async_ == [True, True, True, False]  # decided by Redis, not degraded
    paths = {(e["side"], e["path"], e["reason"]) for e in logs if e["event"] == "backend_path"}
    assert paths == {("sync", "execute_command", "no kept connections (test)"),
                     ("async", "execute_command", "redis-py asyncio connections without _reader (test)")}
    assert not [e for e in logs if e["event"] == "backend_error"]
