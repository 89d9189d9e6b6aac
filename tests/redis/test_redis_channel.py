"""The coalescer's one connection (``redis_channel.OrderedChannel``), on a real server.

The channel owns a connection from redis-py's pool and reads its replies in the
transport's callback. These tests cover what it must do that redis-py used to do
for it: notice a connection the server closed, drop a connection a failover
demoted, match error replies to redis-py's exceptions, give the connection back,
and keep the order of commands that wait for a connection.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio

from ratelimit_mw.backends.redis import RedisBackend
from ratelimit_mw.backends.redis_channel import OrderedChannel
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.errors import BackendError
from ratelimit_mw.limiter import Limiter
from tests.support.redis_servers import RedisSentinel, RedisServer, ServerBinary, ServerStartError, free_port

pytestmark = pytest.mark.redis

TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
RULES = (parse_rate("100/hour"),)


def _channel(backend: RedisBackend) -> OrderedChannel:
    channel = backend._channel
    assert channel is not None
    return channel


async def _until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    """Let the loop run until ``condition()`` holds (bounded; no fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def _our_connections(admin: redis.Redis) -> int:
    return sum(1 for c in admin.client_list() if c.get("name") != "admin" and c.get("cmd") != "client|list")


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_check(
    fresh_redis_server: RedisServer,
) -> None:
    backend = RedisBackend(fresh_redis_server.url, min_ttl=3600, **TIMEOUTS)
    admin = redis.Redis.from_url(fresh_redis_server.url)
    admin.client_setname("admin")

    async def main() -> list[Decision]:
        try:
            first = await backend.ahit(["c:{a}:x"], RULES, 1, None)
            channel = _channel(backend)
            assert channel._link is not None
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
            # the transport's callback sees the close as it happens, not on the next check
            await _until(lambda: channel._link is None)
            second = await backend.ahit(["c:{a}:x"], RULES, 1, None)
            return [first, second]
        finally:
            await backend.aclose()

    first, second = asyncio.run(main())
    assert not first.degraded and not second.degraded
    assert (first.remaining, second.remaining) == (99, 98)
    admin.close()


def test_a_readonly_reply_drops_the_connection_and_the_next_check_reconnects(
    fresh_redis_server: RedisServer,
) -> None:
    """A failover demotes the server: its READONLY reply fails that check (to the
    policy) and drops the connection, so the next one is made afresh (redis-py's
    Sentinel pool would then find the new master)."""
    limiter = Limiter(fresh_redis_server.url, on_backend_error="deny", breaker_threshold=1000, **TIMEOUTS)
    admin = redis.Redis.from_url(fresh_redis_server.url)
    backend = limiter.backend
    assert isinstance(backend, RedisBackend)

    async def main() -> tuple[Decision, Decision, Decision]:
        try:
            before = await limiter.acheck("k", "100/hour")
            old = await _channel(backend).call("CLIENT", "ID")
            admin.replicaof("127.0.0.1", "1")  # a master that is never reached: read-only
            try:
                during = await limiter.acheck("k", "100/hour")
                assert _channel(backend)._conn is None
            finally:
                admin.replicaof("NO", "ONE")
            after = await limiter.acheck("k", "100/hour")
            assert await _channel(backend).call("CLIENT", "ID") != old  # a new connection
            return before, during, after
        finally:
            await limiter.aclose()

    before, during, after = asyncio.run(main())
    admin.close()
    assert before.allowed and not before.degraded
    assert during.degraded and not during.allowed
    assert after.allowed and not after.degraded and after.remaining == 98


def test_error_replies_are_redis_pys_exceptions_and_keep_the_connection(redis_url: str) -> None:
    backend = RedisBackend(redis_url, **TIMEOUTS)

    async def main() -> None:
        try:
            await backend.ahit(["c:{e}:x"], RULES, 1, None)
            channel = _channel(backend)
            link = channel._link
            with pytest.raises(redis.exceptions.NoScriptError):
                await channel.call("EVALSHA", "0" * 40, 0)
            with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
                await channel.call("NO-SUCH-COMMAND")
            assert await channel.call("PING") in (b"PONG", "PONG", True)
            assert channel._link is link  # an error reply is the command's, not the connection's
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_aclose_gives_the_connection_back(fresh_redis_server: RedisServer) -> None:
    backend = RedisBackend(fresh_redis_server.url, **TIMEOUTS)
    admin = redis.Redis.from_url(fresh_redis_server.url)
    admin.client_setname("admin")

    async def main() -> tuple[int, int]:
        await asyncio.gather(*(backend.ahit([f"c:{{{i}}}:x"], RULES, 1, None) for i in range(20)))
        during = _our_connections(admin)
        await backend.aclose()
        await _until(lambda: _our_connections(admin) == 0)
        return during, _our_connections(admin)

    during, after = asyncio.run(main())
    admin.close()
    assert during >= 1 and after == 0


def test_commands_waiting_for_the_connection_go_out_in_order_and_survive_a_cancelled_caller(
    redis_url: str,
) -> None:
    backend = RedisBackend(redis_url, **TIMEOUTS)
    channel_key = "order:{c}:list"

    async def main() -> list[object]:
        try:
            await backend.ahit(["c:{o}:x"], RULES, 1, None)  # builds the channel
            channel = _channel(backend)
            await channel.aclose()  # no connection: the next commands queue for one
            assert channel._link is None
            await channel.call("DEL", channel_key)
            await channel.aclose()
            async def push(i: int) -> object:
                return await channel.call("RPUSH", channel_key, i)

            tasks = [asyncio.create_task(push(i)) for i in range(10)]
            await asyncio.sleep(0)  # every call is queued, the connect under way
            tasks[0].cancel()  # the caller that started the connect goes away
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(done[0], asyncio.CancelledError)
            return list(await channel.call("LRANGE", channel_key, 0, -1))
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    assert [int(v) for v in got] == list(range(1, 10))  # in call order; the cancelled one never sent


def test_a_decoding_client_works(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True, **TIMEOUTS)
    backend = RedisBackend(client)

    async def main() -> list[Decision]:
        try:
            return [await backend.ahit(["c:{d}:x"], RULES, 1, None) for _ in range(3)]
        finally:
            await backend.aclose()
            await client.aclose()

    got = asyncio.run(main())
    assert [d.remaining for d in got] == [99, 98, 97] and not any(d.degraded for d in got)


def test_a_lost_connection_fails_what_was_in_flight(fresh_redis_server: RedisServer) -> None:
    backend = RedisBackend(fresh_redis_server.url, socket_timeout=0.2, socket_connect_timeout=0.5)

    async def main() -> list[object]:
        try:
            await backend.ahit(["c:{l}:x"], RULES, 1, None)
            channel = _channel(backend)
            fresh_redis_server.pause()  # no reply: the socket timeout ends the wait
            try:
                return list(await asyncio.gather(
                    *(channel.call("PING") for _ in range(5)), return_exceptions=True))
            finally:
                fresh_redis_server.resume()
        finally:
            await backend.aclose()

    got = asyncio.run(main())
    assert all(isinstance(r, BackendError) and "Timeout" in str(r) for r in got), got


def test_a_tls_connection_is_driven_the_same_way(tmp_path: Path) -> None:
    """``rediss://``: the channel's protocol sits behind asyncio's TLS transport."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    server = RedisServer(name="tls", config=[
        f"tls-port {tls_port}", f"tls-cert-file {cert}", f"tls-key-file {key}", f"tls-ca-cert-file {cert}",
        "tls-auth-clients no",
    ])
    try:
        server.start()
    except ServerStartError as exc:
        pytest.skip(f"this server binary has no TLS: {str(exc)[:200]}")
    limiter = Limiter(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=none", on_backend_error="deny", **TIMEOUTS)

    async def main() -> list[Decision]:
        try:
            burst = await asyncio.gather(*(limiter.acheck(f"k{i % 3}", "100/hour") for i in range(30)))
            return [*burst, await limiter.acheck("k0", "100/hour")]
        finally:
            await limiter.aclose()

    try:
        got = asyncio.run(main())
    finally:
        server.stop()
    assert not any(d.degraded for d in got)
    assert sorted(d.remaining for d in got[:30])[:3] == [90, 90, 90] and got[-1].remaining == 89


def test_a_sentinel_failover_is_followed_by_the_async_checks(redis_server_binary: ServerBinary) -> None:
    """``SENTINEL FAILOVER`` demotes the master the channel is connected to. Checks in
    the switch may fail over to the policy; then, by themselves, the checks reach the
    new master (the channel drops the demoted server's connection on its close or
    ``READONLY``, and the pool's next connection asks the sentinels)."""
    setup = RedisSentinel(sentinels=2, replicas=1, binary=redis_server_binary.path)
    setup.start()
    limiter = Limiter(setup.url, on_backend_error="deny", breaker_threshold=1000, **TIMEOUTS)

    async def main() -> tuple[Decision, tuple[str, int], tuple[str, int], list[Decision]]:
        try:
            first = await limiter.acheck("fo-client", "100/hour")
            old = setup.master_address()
            setup.sentinels[0].command("SENTINEL", "FAILOVER", setup.master_name)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while setup.master_address() == old:  # the sentinels' switch (bounded)
                assert loop.time() < deadline, "no failover"
                await asyncio.sleep(0.05)
            seen: list[Decision] = []
            while True:  # a few checks may fail to the policy while the roles change
                decision = await limiter.acheck("fo-client", "100/hour")
                seen.append(decision)
                if not decision.degraded:
                    break
                assert loop.time() < deadline, f"still failing after {len(seen)} checks"
                await asyncio.sleep(0.05)
            return first, old, setup.master_address(), seen
        finally:
            await limiter.aclose()

    try:
        first, old, new, seen = asyncio.run(main())
    finally:
        setup.stop()
    assert first.allowed and not first.degraded
    assert new != old
    last = seen[-1]
    assert last.allowed and not last.degraded
    # the new master holds the replicated state: the first check counted (98 left), or
    # the switch lost that write (99 left); never a fresh bucket past the quota
    assert last.remaining in (98, 99)
