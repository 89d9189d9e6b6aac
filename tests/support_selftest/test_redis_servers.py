# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves some constructors/methods unannotated: ClusterNode, Sentinel, execute_command)
"""Self-tests of tests/support/redis_servers.py against REAL servers (no fakes, no mocks).

Why: every Redis backend test trusts these helpers; if ``pause`` did not really
hang the server, or ``restart`` silently kept the script cache, the fault tests
built on them would prove nothing.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
from redis.sentinel import Sentinel

import tests.support.redis_servers as rs
from tests.support.redis_servers import (
    ENV_SERVER,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    ServerBinary,
    ServerBinaryNotFound,
    ServerStartError,
    find_server_binary,
    free_port,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (our servers are reaped, so no zombies)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids(servers: list[RedisServer]) -> list[int]:
    pids = [s.pid for s in servers]
    assert all(pid is not None for pid in pids)
    return [pid for pid in pids if pid is not None]


# --------------------------------------------------------------------------- binaries and ports


def test_find_server_binary_reports_engine(redis_server_binary: ServerBinary) -> None:
    path, engine = find_server_binary()
    assert os.access(path, os.X_OK)
    assert engine in ("redis", "valkey")
    assert (path, engine) == (redis_server_binary.path, redis_server_binary.engine)
    assert redis_server_binary.major >= 6


def test_env_override_that_does_not_exist_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SERVER, "/nonexistent/redis-server")
    with pytest.raises(ServerBinaryNotFound, match=ENV_SERVER):
        find_server_binary()
    monkeypatch.setenv(ENV_SERVER, "no-such-redis-server-command")
    with pytest.raises(ServerBinaryNotFound, match="not found on PATH"):
        find_server_binary()


def test_free_port_keeps_cluster_bus_port_free() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5  # never handed out twice
    for port in ports:
        assert port <= rs.MAX_PORT
        for candidate in (port, port + rs.CLUSTER_BUS_OFFSET):
            with socket.socket() as sock:
                sock.bind((rs.LOOPBACK, candidate))


# --------------------------------------------------------------------------- standalone


def test_standalone_ping_set_get(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_url, socket_timeout=1) as client:
        assert client.ping() is True
        assert client.dbsize() == 0  # redis_url flushed
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"


def test_pause_times_out_and_resume_recovers(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    # from_url: no retries by default (kwargs-built clients retry 10x with backoff in redis-py 8)
    with redis.Redis.from_url(server.url, socket_timeout=0.05) as client:
        client.set("k", "v")
        server.pause()
        assert server.paused
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.get("k")
        assert time.monotonic() - started < 2.0
        server.resume()
        assert not server.paused
        assert client.get("k") == b"v"  # reconnects transparently


def test_restart_empty_loses_keys_and_script_cache(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    url, old_pid = server.url, server.pid
    with redis.Redis.from_url(url, socket_timeout=1) as client:
        client.set("k", "v")
        sha = client.script_load("return 42")
        assert client.evalsha(sha, 0) == 42
    server.restart(empty=True)
    assert server.url == url and server.pid != old_pid
    with redis.Redis.from_url(url, socket_timeout=1) as client:
        assert client.get("k") is None
        assert client.script_exists(sha) == [False]
        with pytest.raises(NoScriptError):
            client.evalsha(sha, 0)


def test_restart_keep_data_keeps_keys_but_not_scripts(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    with server.client(socket_timeout=1) as client:
        client.set("k", "v")
        sha = client.script_load("return 1")
    server.restart(empty=False)
    with server.client(socket_timeout=1) as client:
        assert client.get("k") == b"v"
        assert client.script_exists(sha) == [False]


def test_kill_then_restart_on_same_port(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    port, pid = server.port, server.pid
    assert pid is not None
    server.kill()
    assert not server.running and not _alive(pid)
    with pytest.raises(redis.exceptions.ConnectionError), server.client(socket_timeout=0.2) as client:
        client.ping()
    server.restart()
    assert server.port == port
    assert server.command("PING") == "PONG"


def test_stop_leaves_no_process_even_when_paused(redis_server_binary: ServerBinary) -> None:
    server = RedisServer(binary=redis_server_binary.path)
    with server:
        pid, data_dir = server.pid, server.dir
        assert pid is not None and _alive(pid)
        server.pause()
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # resumed + SIGTERM, no kill timeout
    assert not _alive(pid)
    assert not Path(data_dir).exists()
    assert server not in rs._live


def test_start_failure_raises_with_log_tail(redis_server_binary: ServerBinary) -> None:
    server = RedisServer(binary=redis_server_binary.path, config=["no-such-directive yes"])
    with pytest.raises(ServerStartError, match="no-such-directive"):
        server.start()
    assert not server.running
    assert server not in rs._live


def test_auto_port_collision_is_retried(redis_server_binary: ServerBinary, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process may grab our port between free_port() and the server's bind."""
    real_free_port = rs.free_port
    with socket.socket() as squatter:
        squatter.bind((rs.LOOPBACK, 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        handed = iter([busy])
        monkeypatch.setattr(rs, "free_port", lambda *a, **k: next(handed, None) or real_free_port())
        with RedisServer(binary=redis_server_binary.path) as server:
            assert server.port != busy
            assert server.command("PING") == "PONG"


# --------------------------------------------------------------------------- cluster


def test_cluster_spreads_keys_over_three_masters(redis_cluster_url: str, redis_cluster: RedisCluster) -> None:
    assert redis_cluster_url == f"redis+cluster://127.0.0.1:{redis_cluster.nodes[0].port}"
    assert redis_cluster.redis_url == f"redis://127.0.0.1:{redis_cluster.nodes[0].port}"
    masters = {m.port: m for m in redis_cluster.masters}
    with redis_cluster.client(socket_timeout=1) as client:
        owners: dict[int, list[str]] = {}
        for i in range(30):
            key = f"key:{i}"
            client.set(key, i)
            owners.setdefault(client.get_node_from_key(key).port, []).append(key)
        assert set(owners) == set(masters)
        for port, keys in owners.items():  # really stored on that master, not just routed
            for key in keys:
                assert masters[port].command("EXISTS", key) == 1
                assert masters[port].command("CLUSTER", "KEYSLOT", key) == key_slot(key.encode())


def test_cluster_hash_tag_keys_share_a_slot(redis_cluster: RedisCluster) -> None:
    a, b = "{user:42}:tokens", "{user:42}:stamp"
    assert key_slot(a.encode()) == key_slot(b.encode())
    script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return 1"
    with ClusterClient.from_url(redis_cluster.redis_url, socket_timeout=1) as client:
        assert client.eval(script, 2, a, b, "x") == 1
        assert client.get(a) == client.get(b) == b"x"
        c, d = "plain:1", "plain:2"
        assert key_slot(c.encode()) != key_slot(d.encode())
        with pytest.raises((RedisClusterException, ResponseError)):
            client.eval(script, 2, c, d, "x")


# --------------------------------------------------------------------------- sentinel


def test_sentinel_master_for(redis_sentinel: RedisSentinel) -> None:
    hosts = ",".join(f"127.0.0.1:{port}" for _, port in redis_sentinel.sentinel_addresses)
    assert redis_sentinel.url == f"redis+sentinel://{hosts}/mymaster"
    assert len(redis_sentinel.sentinel_addresses) == 2
    sentinel = Sentinel(redis_sentinel.sentinel_addresses, socket_timeout=0.5)
    try:
        assert sentinel.discover_master("mymaster") == redis_sentinel.master.address
        master = sentinel.master_for("mymaster", socket_timeout=0.5)
        with master:
            master.set("via-sentinel", "yes")
            assert master.get("via-sentinel") == b"yes"
            assert master.execute_command("WAIT", 1, 1000) == 1  # replicated to the replica
        assert redis_sentinel.replicas[0].command("GET", "via-sentinel") == b"yes"
    finally:
        for client in sentinel.sentinels:
            client.close()


# --------------------------------------------------------------------------- teardown


def test_cluster_and_sentinel_stop_leave_no_process(redis_server_binary: ServerBinary) -> None:
    cluster = RedisCluster(masters=1, binary=redis_server_binary.path).start()
    setup = RedisSentinel(sentinels=1, replicas=0, binary=redis_server_binary.path).start()
    pids = _pids(cluster.nodes) + _pids(setup.servers)
    assert all(_alive(pid) for pid in pids)
    cluster.stop()
    setup.stop()
    assert not [pid for pid in pids if _alive(pid)]
    assert not [s for s in (*cluster.nodes, *setup.servers) if s in rs._live]
