"""Sync commands on kept connections (``backends/redis_direct.py``), on real servers.

What the kept connections must never do: read one command's reply as another's
answer (after a timeout), use a socket the server closed (after a restart), share
a connection between threads or with a forked child. And they must actually be
kept: one connection serves a single thread's checks, with no pool round trip.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import redis

from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.backends.redis_direct import DirectCommands, supports_direct
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.errors import BackendError
from ratelimit_mw.limiter import Limiter
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.redis

RELAXED: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
RULE = [parse_rate("5/minute", "gcra")]


def _direct(backend: RedisBackend) -> DirectCommands:
    assert backend._direct is not None, "sync commands should go through kept connections"
    return backend._direct


def test_one_thread_reuses_one_connection(redis_url: str) -> None:
    backend = RedisBackend(redis_url, **RELAXED)
    try:
        for i in range(50):
            assert backend.hit([f"rl:{{t{i}}}:a"], RULE, 1, None).allowed
        pool = backend._sync_client().connection_pool
        assert _direct(backend).kept == 1
        assert pool._created_connections == 1
    finally:
        backend.close()


def test_decisions_through_kept_connections_count_exactly(redis_url: str) -> None:
    backend = RedisBackend(redis_url, **RELAXED)
    try:
        allowed = [backend.hit(["rl:{one}:a"], RULE, 1, None).allowed for _ in range(8)]
        assert allowed == [True] * 5 + [False] * 3
    finally:
        backend.close()


def test_threads_each_take_their_own_connection(redis_url: str) -> None:
    limiter = Limiter(redis_url, **RELAXED)
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(50):
            decision = limiter.check("shared", "300/minute")
            assert not decision.degraded, decision
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend = limiter.backend
    assert isinstance(backend, RedisBackend)
    try:
        assert sum(allowed) == 300 and len(allowed) == 400
        assert 1 <= _direct(backend).kept <= 8
        assert backend._sync_client().connection_pool._created_connections <= 8
    finally:
        limiter.close()


def test_script_flush_keeps_the_connection(redis_url: str, redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_url, **RELAXED)
    try:
        assert backend.hit(["rl:{f}:a"], RULE, 1, None).allowed
        redis_server.command("SCRIPT", "FLUSH")
        # NOSCRIPT is an error reply: the connection is fine, EVAL follows on it
        assert backend.hit(["rl:{f}:a"], RULE, 1, None).remaining == 3
        assert _direct(backend).kept == 1
        assert backend._sync_client().connection_pool._created_connections == 1
    finally:
        backend.close()


def test_restart_replaces_the_dead_kept_connection_without_failing(fresh_redis_server: RedisServer) -> None:
    limiter = Limiter(fresh_redis_server.url, breaker_threshold=1, **RELAXED)
    try:
        assert not limiter.check("a", "5/minute").degraded
        fresh_redis_server.restart(empty=True)  # the kept socket is now closed by the server
        decision = limiter.check("a", "5/minute")
        assert decision.allowed and not decision.degraded, decision
        assert decision.remaining == 4  # an empty server: the retry counted once
    finally:
        limiter.close()


def test_timeout_drops_the_connection_so_no_late_reply_is_misread(fresh_redis_server: RedisServer) -> None:
    backend = RedisBackend(fresh_redis_server.url, socket_timeout=0.1, socket_connect_timeout=2.0)
    try:
        assert backend.hit(["rl:{a}:a"], RULE, 1, None).remaining == 4
        fresh_redis_server.pause()
        try:
            with pytest.raises(BackendError):
                backend.hit(["rl:{b}:a"], RULE, 1, None)
        finally:
            fresh_redis_server.resume()
        assert _direct(backend).kept == 0  # not kept: its late reply must never be read
        # The next commands read their own replies, not the timed-out one's.
        assert backend.hit(["rl:{c}:a"], RULE, 1, None).remaining == 4
        assert backend.hit(["rl:{a}:a"], RULE, 1, None).remaining == 3
    finally:
        backend.close()


def test_close_gives_kept_connections_back_to_a_borrowed_client(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, **RELAXED)
    backend = RedisBackend(client)
    try:
        assert backend.hit(["rl:{c}:a"], RULE, 1, None).allowed
        pool = client.connection_pool
        assert len(pool._in_use_connections) == 1  # kept by the backend
        backend.close()
        assert not pool._in_use_connections
        assert client.ping()  # the client stays its owner's
    finally:
        client.close()


def test_which_clients_go_direct(redis_url: str) -> None:
    plain = redis.Redis.from_url(redis_url)
    single = redis.Redis.from_url(redis_url, single_connection_client=True)
    try:
        assert supports_direct(plain)
        assert not supports_direct(single)  # its one connection has a lock of its own
        assert not supports_direct(object())
        backend = RedisBackend(single)
        assert backend.hit(["rl:{s}:a"], RULE, 1, None).allowed
        assert backend._direct is None
    finally:
        plain.close()
        single.close()


def test_cluster_keeps_its_own_routing(redis_cluster_url: str) -> None:
    backend = RedisBackend(redis_cluster_url, **RELAXED)
    try:
        assert backend.hit(["rl:{k}:a"], RULE, 1, None).allowed
        assert backend._direct is None
    finally:
        backend.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_use_the_parents_connection(redis_url: str) -> None:
    backend = RedisBackend(redis_url, **RELAXED)
    try:
        assert backend.hit(["rl:{p}:a"], RULE, 1, None).remaining == 4
        parent_conn = _direct(backend)._idle[0]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, never return into pytest
            code = 1
            try:
                direct = _direct(backend)
                kept_after_fork = direct.kept
                ok = all(backend.hit(["rl:{q}:a"], RULE, 1, None).allowed for _ in range(5))
                code = 0 if kept_after_fork == 0 and ok and direct._idle[0] is not parent_conn else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        status = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert status == b"\x00"
        # the parent's kept connection is untouched and still in step
        assert _direct(backend)._idle[0] is parent_conn
        assert backend.hit(["rl:{p}:a"], RULE, 1, None).remaining == 3
        assert not backend.hit(["rl:{q}:a"], RULE, 1, None).allowed  # the child's 5 hits counted
    finally:
        backend.close()
