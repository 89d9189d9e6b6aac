"""pytest fixtures that provide REAL Redis/Valkey servers (see ``redis_servers.py``).

Register from the root conftest with ``pytest_plugins = ["tests.support.redis_fixtures"]``.

Why session scope: a standalone server starts in ~30 ms, but a cluster or a
sentinel setup needs ~2 s (a cluster master waits 2 s before declaring itself
writable, sentinels discover each other on a 2 s hello cycle), so those are
shared; ``redis_url`` flushes before each test to keep tests independent. Tests
that pause/kill/restart a server must use ``fresh_redis_server`` instead of the
shared one.

No server binary: skip locally, but FAIL when env ``CI`` is truthy -- a CI run
that silently skips every Redis test would look green while testing nothing --
or when ``RATELIMIT_TEST_REDIS_SERVER`` is set but unusable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.redis_servers import (
    ENV_SERVER,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    ServerBinary,
    ServerBinaryNotFound,
    server_binary,
)

__all__ = [
    "fresh_redis_server",
    "redis_cluster",
    "redis_cluster_url",
    "redis_sentinel",
    "redis_server",
    "redis_server_binary",
    "redis_url",
]


def _ci_is_set() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(scope="session")
def redis_server_binary() -> ServerBinary:
    """The server binary every fixture uses; skip when there is none.

    Fails instead of skipping under CI, and when ``RATELIMIT_TEST_REDIS_SERVER``
    names a server that cannot be used (an explicit request must not be ignored).
    """
    try:
        return server_binary()
    except ServerBinaryNotFound as exc:
        problem = str(exc)  # fail/skip outside the except block: no chained traceback noise
    if _ci_is_set():
        pytest.fail(f"CI is set but no Redis/Valkey server is available: {problem}", pytrace=False)
    if os.environ.get(ENV_SERVER, "").strip():
        pytest.fail(problem, pytrace=False)
    pytest.skip(f"no Redis/Valkey server binary: {problem}")


@pytest.fixture(scope="session")
def redis_server(redis_server_binary: ServerBinary) -> Iterator[RedisServer]:
    """One standalone server shared by the session. Do not pause/kill it: use ``fresh_redis_server``."""
    server = RedisServer(binary=redis_server_binary.path, name="session")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared server, emptied (FLUSHALL + SCRIPT FLUSH) before the test.

    Heals the shared server if an earlier test left it paused or dead, so one
    misbehaving test cannot cascade into every later one.
    """
    if redis_server.paused:
        redis_server.resume()
    if not redis_server.running:
        redis_server.restart(empty=True)
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis_server(redis_server_binary: ServerBinary) -> Iterator[RedisServer]:
    """A private server for fault tests (pause/resume, kill, restart); stopped afterwards."""
    server = RedisServer(binary=redis_server_binary.path, name="fresh")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(redis_server_binary: ServerBinary) -> Iterator[RedisCluster]:
    """A shared 3-master cluster (no replicas). ``.url`` is ``redis+cluster://127.0.0.1:PORT``."""
    cluster = RedisCluster(masters=3, binary=redis_server_binary.path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """``redis+cluster://`` URL of the shared cluster, flushed on every master first."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel(redis_server_binary: ServerBinary) -> Iterator[RedisSentinel]:
    """A shared master + 1 replica watched by 2 sentinels, master name ``mymaster``.

    ``.url`` is ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2/mymaster``.
    """
    setup = RedisSentinel(sentinels=2, replicas=1, binary=redis_server_binary.path)
    setup.start()
    try:
        yield setup
    finally:
        setup.stop()
