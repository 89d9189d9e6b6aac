"""Redis backend: shared state for many processes and hosts, one round trip per request.

Works with Redis, Valkey, Redis Sentinel and Redis Cluster, from a URL (see
:mod:`ratelimit_mw.backends.redis_connect`) or an existing redis-py client.

Each request runs ONE Lua script (:mod:`ratelimit_mw.backends.redis_lua`) that
evaluates every rule of the route and writes the new states only if all of them
admit the request. The keys of a request share a hash tag (``{<client hash>}``),
so the script runs on Cluster too. Time comes from the server's ``TIME`` unless
the caller passes ``now``, so app nodes with skewed clocks cannot hand out extra
quota. Every key carries a TTL equal to the time until its state is
indistinguishable from fresh: an idle client holds no memory.

Failure: every driver error (connection refused, timeout, cluster down, script
error) is raised as :class:`~ratelimit_mw.errors.BackendError`; the Limiter's
failure policy and circuit breaker decide what the request gets. Socket timeouts
default to 50 ms and there are no retries, so an outage costs a request at most
one timeout before the breaker opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ratelimit_mw import log
from ratelimit_mw.backends import redis_channel
from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.backends.redis_batch import CheckCoalescer
from ratelimit_mw.backends.redis_channel import OrderedChannel
from ratelimit_mw.backends.redis_connect import ClientFactory, parse_backend_url, redact_url
from ratelimit_mw.backends.redis_direct import DirectCommands, direct_unsupported
from ratelimit_mw.backends.redis_lua import (
    RENEW_SCRIPT,
    Script,
    argv,
    check_args,
    decode_hit,
    decode_peek,
    locate,
    min_ttl_ms,
    script_for,
)
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import BackendError, ConfigError

__all__ = ["RedisBackend", "open_redis_backend"]

#: Driver failures that become BackendError (RedisClusterException is not a RedisError).
_DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)

#: Most async checks of in-flight limits under way at once per event loop.
LEASED_IN_FLIGHT = 16

_SYNC_CLIENTS = (redis.Redis, redis.cluster.RedisCluster)
_ASYNC_CLIENTS = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)


#: Per rule tuple: (the tuple, its script, its check head for server time and cost 1,
#: the head's ARGV part, the reply's decoder that the coalescer applies).
_Plan = tuple[tuple[Rule, ...], Script, tuple[Any, ...], tuple[Any, ...], Callable[[Any], Decision]]


_LOGGED: set[tuple[str, str, str | None]] = set()


def _log_path(side: str, path: str, reason: str | None) -> None:
    """Say once per process which path a side's commands take, and why not the fast one."""
    if (side, path, reason) not in _LOGGED:
        _LOGGED.add((side, path, reason))
        log.logger.info(log.BACKEND_PATH, side=side, path=path, reason=reason)


def _sync_only() -> ConfigError:
    return ConfigError(
        "this Redis backend wraps a synchronous client: use hit/peek/reset "
        "(Limiter.check), or give a URL or a redis.asyncio client"
    )


def _backend_error(exc: BaseException) -> BackendError:
    return BackendError(f"redis: {type(exc).__name__}: {exc}")


class RedisBackend(Backend, AsyncBackend):
    """Rate-limit state in Redis, Valkey, Sentinel or Cluster; sync and async twins.

    From a URL, the sync and the async client are created on first use, each
    once (the async one once per event loop, since asyncio connections belong to
    the loop that opened them), so a process that only uses one side never opens
    the other's pool. From an existing client, only the matching side works and
    the other raises :class:`~ratelimit_mw.errors.ConfigError`; such a client
    stays its owner's to close.

    Args:
        spec: a URL (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
            ``redis+cluster://``) or a redis-py client (``redis.Redis``,
            ``redis.cluster.RedisCluster``, ``redis.asyncio.Redis``,
            ``redis.asyncio.cluster.RedisCluster``).
        prefix: the storage key prefix the limiter uses (informational: keys
            arrive fully built).
        min_ttl: floor for key TTLs, in seconds. 0 (the default) keeps a state
            exactly as long as it matters. Raise it when callers pass their own
            ``now`` from a clock that runs slower than the server's (a FakeClock
            in tests), so the server does not forget a state the caller's clock
            still considers live.
        coalesce: send the async checks that overlap on one event loop together,
            in one round trip per batch (see :mod:`ratelimit_mw.backends.redis_batch`;
            the decisions are the same). ``False``: one round trip per check.
            Coalesced checks travel on one connection that the backend keeps from
            the async client's pool while the loop runs (a pool capped at one
            connection would leave none for ``areset``/``apeek``).
        fast_io: send commands on connections kept from the client's pool (sync) and
            drive the coalescer's connection as an asyncio protocol (async). Both read
            redis-py internals, whose shape is checked when first used; where it does
            not fit (a future redis-py), or with ``False``, commands go through
            redis-py's public API (the client's ``execute_command``), with the same
            decisions, only slower. Which path is in use is logged once
            (``backend_path``).
        **options: redis-py client options for URL specs (``socket_timeout`` and
            ``socket_connect_timeout`` default to 0.05 s; ``max_connections``,
            ``ssl_*``, ``decode_responses``...). Not accepted with a client object.

    Raises:
        ConfigError: unsupported URL or client type, or options given with a client.
    """

    has_clock = True

    def __init__(
        self, spec: Any, *, prefix: str = "rl", min_ttl: float = 0.0, coalesce: bool = True, fast_io: bool = True,
        **options: Any,
    ) -> None:
        self.prefix = prefix
        self.fast_io = fast_io
        self._min_ttl_ms = min_ttl_ms(min_ttl)
        self.coalesce = coalesce
        self._lease_gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._coalescer: CheckCoalescer | None = None
        self._coalescer_loop: asyncio.AbstractEventLoop | None = None
        self._plans: dict[int, _Plan] = {}
        self._channel: OrderedChannel | None = None
        self._factory: ClientFactory | None = None
        self._client: Any = None
        #: how sync commands are sent: kept connections (see redis_direct), or the
        #: client's execute_command (Cluster, single-connection or caching clients)
        self._direct: DirectCommands | None = None
        self._execute: Callable[..., Any] | None = None
        self._aclient: Any = None
        self._helpers: list[Any] = []  # Sentinel connections of the sync client
        self._ahelpers: list[Any] = []  # ... and of the async one
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._owns_clients = False
        self._lock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        self._alock_loop: asyncio.AbstractEventLoop | None = None
        if isinstance(spec, str):
            self._factory = parse_backend_url(spec, options)
            self._owns_clients = True
            self.url: str | None = redact_url(spec)  # for reprs and logs: no secrets
            return
        self.url = None
        if options:
            raise ConfigError(
                f"client options ({', '.join(sorted(options))}) apply to URL backends only; "
                "configure the redis-py client you pass instead"
            )
        if isinstance(spec, _ASYNC_CLIENTS):
            self._aclient = spec
        elif isinstance(spec, _SYNC_CLIENTS):
            self._client = spec
        else:
            raise ConfigError(
                f"expected a Redis URL or a redis-py client, got {type(spec).__name__}: {spec!r:.100}"
            )

    def __repr__(self) -> str:
        where = self.url if self.url is not None else type(self._client or self._aclient).__name__
        return f"RedisBackend({where!r})"

    @property
    def supports_sync(self) -> bool:
        """``hit``/``peek``/``reset`` work (a URL, or a synchronous client)."""
        return self._factory is not None or self._client is not None

    @property
    def supports_async(self) -> bool:
        """``ahit``/``apeek``/``areset`` work (a URL, or an asyncio client)."""
        return self._factory is not None or self._aclient is not None

    # -- clients -----------------------------------------------------------------

    def _sync_client(self) -> Any:
        client = self._client
        if client is not None:
            return client
        return self._build_sync_client()

    def _sync_execute(self) -> Callable[..., Any]:
        """The sync client's command sender, chosen once (see :attr:`_execute`)."""
        execute = self._execute
        if execute is not None:
            return execute
        client = self._sync_client()
        with self._lock:
            execute = self._execute
            if execute is None:
                reason = "fast_io=False" if not self.fast_io else direct_unsupported(client)
                if reason is None:
                    self._direct = DirectCommands(client.connection_pool)
                    execute = self._direct.call
                else:
                    execute = client.execute_command
                _log_path("sync", "kept connections" if reason is None else "execute_command", reason)
                self._execute = execute
            return execute

    def _build_sync_client(self) -> Any:
        if self._factory is None:
            raise ConfigError(
                "this Redis backend wraps an asyncio client: use ahit/apeek/areset "
                "(Limiter.acheck), or give a URL or a synchronous redis client"
            )
        with self._lock:  # threads racing on first use build one client
            if self._client is None:
                try:
                    self._client, self._helpers = self._factory.sync()
                except _DRIVER_ERRORS as exc:  # a cluster client connects here
                    raise _backend_error(exc) from exc
            return self._client

    async def _async_client(self) -> Any:
        client = self._aclient
        factory = self._factory
        if factory is None:
            if client is None:
                raise _sync_only()
            return client
        loop = asyncio.get_running_loop()
        if client is not None and self._aclient_loop is loop:
            return client
        # No await between the check and the assignment: tasks cannot race here.
        if self._alock is None or self._alock_loop is not loop:
            self._alock, self._alock_loop = asyncio.Lock(), loop
        async with self._alock:
            if self._aclient is None or self._aclient_loop is not loop:
                client, helpers = factory.async_()
                if factory.is_cluster:
                    # One initialisation (slot discovery) under the lock, instead of
                    # every concurrent first command starting its own.
                    try:
                        await client.initialize()
                    except _DRIVER_ERRORS as exc:
                        await _quiet_aclose(client)
                        raise _backend_error(exc) from exc
                self._aclient, self._aclient_loop, self._ahelpers = client, loop, helpers
            return self._aclient

    # -- the script --------------------------------------------------------------

    def _run(self, args: list[Any], text: Script) -> Any:
        try:
            execute = self._execute or self._sync_execute()
            try:
                return execute("EVALSHA", text.sha, *args)
            except NoScriptError:
                # Script cache empty (SCRIPT FLUSH, restart, failover to a fresh
                # node): EVAL runs it on the right node and caches it there again.
                return execute("EVAL", text.text, *args)
        except _DRIVER_ERRORS as exc:
            raise _backend_error(exc) from exc

    async def _arun(self, args: list[Any], text: Script) -> Any:
        client = await self._async_client()
        return await _aeval(client.execute_command, args, text)

    # -- Backend -----------------------------------------------------------------

    def hit(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None) -> Decision:
        rule_tuple = rules if type(rules) is tuple else tuple(rules)
        plan = self._plans.get(id(rule_tuple))
        if plan is None or plan[0] is not rule_tuple:
            plan = self._plan(rule_tuple)
        if now is None and cost == 1 and len(keys) == len(rule_tuple):
            args = [len(keys), *keys, *plan[3]]  # the common case: server time, cost 1
        else:
            args = argv("hit", keys, rule_tuple, cost, now, self._min_ttl_ms)
        return decode_hit(rule_tuple, self._run(args, plan[1]))

    def peek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        args = argv("peek", keys, rules, 0, now, self._min_ttl_ms)
        return decode_peek(rules, self._run(args, script_for(tuple(rules))))

    # -- in-flight limits: leases (see ratelimit_mw.inflight) --------------------------

    def hit_leased(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None,
                   token: str) -> Decision:
        """:meth:`hit` for rules holding an in-flight limit: an admitted request's leases
        are held by ``token`` (the same one script, never coalesced)."""
        rule_tuple = tuple(rules)
        args = [*argv("hit", keys, rule_tuple, cost, now, self._min_ttl_ms), token]
        return decode_hit(rule_tuple, self._run(args, script_for(rule_tuple)))

    async def ahit_leased(self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None,
                          token: str) -> Decision:
        """Async :meth:`hit_leased`. Not coalesced (each check names its own lease), so at
        most ``LEASED_IN_FLIGHT`` of them per event loop are under way at once: a burst
        of requests queues here instead of opening a connection each."""
        rule_tuple = tuple(rules)
        args = [*argv("hit", keys, rule_tuple, cost, now, self._min_ttl_ms), token]
        loop = asyncio.get_running_loop()
        gate = self._lease_gate
        if gate is None or gate[0] is not loop:
            gate = self._lease_gate = (loop, asyncio.Semaphore(LEASED_IN_FLIGHT))
        async with gate[1]:
            reply = await self._arun(args, script_for(rule_tuple))
        return decode_hit(rule_tuple, reply)

    def leases(self, releases: Sequence[tuple[str, Sequence[str]]],
               renewals: Sequence[tuple[str, float, Sequence[str]]], now: float | None) -> list[Any]:
        """One pipeline: ``ZREM`` of each released (key, members), then the renewal
        script per (key, lease, members). Replies in that order: members removed per
        release, and per renewal a 1/0 list (renewed/gone)."""
        pipe = self._sync_client().pipeline(transaction=False)
        _lease_commands(pipe, releases, renewals, now)
        try:
            return list(pipe.execute())
        except _DRIVER_ERRORS as exc:
            raise _backend_error(exc) from exc

    async def aleases(self, releases: Sequence[tuple[str, Sequence[str]]],
                      renewals: Sequence[tuple[str, float, Sequence[str]]], now: float | None) -> list[Any]:
        """Async :meth:`leases`."""
        client = await self._async_client()
        pipe = client.pipeline(transaction=False)
        _lease_commands(pipe, releases, renewals, now)
        try:
            return list(await pipe.execute())
        except _DRIVER_ERRORS as exc:
            raise _backend_error(exc) from exc

    def reset(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        pipe = self._sync_client().pipeline(transaction=False)
        _reset_commands(pipe, keys)
        try:
            pipe.execute()
        except _DRIVER_ERRORS as exc:
            raise _backend_error(exc) from exc

    def close(self) -> None:
        """Give kept connections back; close the sync client's pool if this backend created it."""
        with self._lock:
            direct, self._direct, self._execute = self._direct, None, None
        if direct is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                direct.close()
        if not self._owns_clients:
            return
        with self._lock:
            client, self._client = self._client, None
            helpers, self._helpers = self._helpers, []
        for c in (client, *helpers):
            if c is not None:
                with contextlib.suppress(*_DRIVER_ERRORS):  # a broken link must not fail shutdown
                    c.close()

    # -- AsyncBackend ------------------------------------------------------------

    async def ahit(
        self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None
    ) -> Decision:
        return await self.ahit_nowait(keys, rules, cost, now)

    def ahit_nowait(
        self, keys: Sequence[str], rules: Sequence[Rule], cost: int, now: float | None
    ) -> Awaitable[Decision]:
        """:meth:`ahit` as a plain function returning an awaitable (see ``AsyncBackend``):
        a coalesced check's future, settled with its Decision."""
        rule_tuple = rules if type(rules) is tuple else tuple(rules)
        if not self.coalesce:
            return self._ahit_alone(keys, rule_tuple, cost, now)
        coalescer = self._coalescer
        if coalescer is None or self._coalescer_loop is not asyncio.get_running_loop():
            coalescer = self._new_coalescer()
        plan = self._plans.get(id(rule_tuple))
        if plan is None or plan[0] is not rule_tuple:
            plan = self._plan(rule_tuple)
        if now is None and cost == 1 and len(keys) == len(rule_tuple):
            tail = plan[2]  # the common case: server time, cost 1
        else:
            tail = tuple(check_args("hit", keys, rule_tuple, cost, now, self._min_ttl_ms))
        return coalescer.submit(keys, tail, plan[1], plan[4])

    async def _ahit_alone(self, keys: Sequence[str], rules: tuple[Rule, ...], cost: int, now: float | None) -> Decision:
        args = argv("hit", keys, rules, cost, now, self._min_ttl_ms)
        return decode_hit(rules, await self._arun(args, script_for(rules)))

    def _plan(self, rules: tuple[Rule, ...]) -> _Plan:
        """What every check of ``rules`` reuses: the script, and the check's ARGV for
        server time and cost 1, built once (keyed by the tuple's identity: a route's
        Quota holds the same tuple for its lifetime, and the entry keeps it alive)."""
        if len(self._plans) >= 1024:
            self._plans.clear()
        head = tuple(check_args("hit", [""] * len(rules), rules, 1, None, self._min_ttl_ms))
        plan = (rules, script_for(rules), head, head[1:], functools.partial(decode_hit, rules))
        self._plans[id(rules)] = plan
        return plan

    def _new_coalescer(self) -> CheckCoalescer:
        """The coalescer of the running loop (a loop's checks share its connections).

        Built without awaiting anything: checks racing on first use must all get the
        same coalescer, or their batches would not be ordered against each other. The
        client (and a cluster's slot map) is fetched by the first round trip.
        """
        factory = self._factory
        if factory is not None:
            cluster = factory.is_cluster
        elif self._aclient is None:
            raise _sync_only()
        else:
            cluster = isinstance(self._aclient, redis.asyncio.cluster.RedisCluster)
        reason = "cluster" if cluster else "fast_io=False" if not self.fast_io else redis_channel.unsupported()
        _log_path("async", "protocol channel" if reason is None else "execute_command", reason)
        if reason is not None:
            # A script's keys must share a slot: batches split by slot, each group
            # through the cluster client (any of its connections). One batch at a
            # time: two could overtake each other on different connections. (The
            # same where the channel cannot run: no hiredis, or a redis-py whose
            # internals it cannot read.)
            coalescer = CheckCoalescer(self._arun, cluster=cluster, in_flight=1)
            self._channel = None
        else:
            # A channel of an earlier loop is dropped, not closed: its connection
            # belongs to that loop.
            channel = self._channel = OrderedChannel(self._async_pool, _backend_error)
            coalescer = CheckCoalescer(functools.partial(_aeval, channel.call))
        self._coalescer, self._coalescer_loop = coalescer, asyncio.get_running_loop()
        return coalescer

    async def _async_pool(self) -> Any:
        return (await self._async_client()).connection_pool

    async def apeek(self, keys: Sequence[str], rules: Sequence[Rule], now: float | None) -> Decision:
        args = argv("peek", keys, rules, 0, now, self._min_ttl_ms)
        return decode_peek(rules, await self._arun(args, script_for(tuple(rules))))

    async def areset(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        pipe = (await self._async_client()).pipeline(transaction=False)
        _reset_commands(pipe, keys)
        try:
            await pipe.execute()
        except _DRIVER_ERRORS as exc:
            raise _backend_error(exc) from exc

    async def aclose(self) -> None:
        """Close the clients this backend created (async, and sync if any)."""
        self._coalescer = self._coalescer_loop = None
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.aclose()
        if self._owns_clients:
            client, self._aclient, self._aclient_loop = self._aclient, None, None
            helpers, self._ahelpers = self._ahelpers, []
            for c in (client, *helpers):
                if c is not None:
                    await _quiet_aclose(c)
        self.close()

    # -- outbound pauses (ratelimit_mw.outbound) ---------------------------------

    def pause(self, key: str, seconds: float) -> float:
        """Extend the pause stored at ``key`` to at least ``seconds`` from the server's
        now (``0``: only read it); return the seconds it still has to run.

        Outbound limiters call this when a remote API answers 429 with ``Retry-After``,
        so every process sharing this Redis holds back; the server's ``TIME`` makes
        the end of the pause the same for all of them, whatever their clock skew.
        """
        from ratelimit_mw.backends.redis_pause import PAUSE_SCRIPT, pause_args, pause_reply

        return pause_reply(self._run(pause_args(key, seconds), PAUSE_SCRIPT))

    async def apause(self, key: str, seconds: float) -> float:
        """Async :meth:`pause`."""
        from ratelimit_mw.backends.redis_pause import PAUSE_SCRIPT, pause_args, pause_reply

        return pause_reply(await self._arun(pause_args(key, seconds), PAUSE_SCRIPT))


def _reset_commands(pipe: Any, keys: Sequence[str]) -> None:
    """Forget ``keys``' states: window states are keys of their own, time states
    fields of shared hashes (see ``redis_lua.locate``). The keys go first, so a
    key that names its own hash (no tag) is gone before its field is looked for."""
    for key in keys:  # one DEL per key: a Cluster pipeline refuses a multi-key DEL
        pipe.delete(key)
    for key in keys:
        pipe.hdel(*locate(key))


def _lease_commands(pipe: Any, releases: Sequence[tuple[str, Sequence[str]]],
                    renewals: Sequence[tuple[str, float, Sequence[str]]], now: float | None) -> None:
    when = "" if now is None else repr(float(now))
    for key, members in releases:
        pipe.zrem(key, *members)
    for key, lease, members in renewals:  # EVAL: once per renewal tick, not per request
        pipe.execute_command("EVAL", RENEW_SCRIPT.text, 1, key, when, repr(float(lease)), *members)


async def _aeval(call: Callable[..., Awaitable[Any]], args: list[Any], text: Script) -> Any:
    """The async :meth:`RedisBackend._run`: ``call`` is a client's ``execute_command``
    or the coalescer's ordered connection."""
    try:
        try:
            return await call("EVALSHA", text.sha, *args)
        except NoScriptError:
            return await call("EVAL", text.text, *args)
    except _DRIVER_ERRORS as exc:
        raise _backend_error(exc) from exc


async def _quiet_aclose(client: Any) -> None:
    with contextlib.suppress(*_DRIVER_ERRORS):
        await client.aclose()


def open_redis_backend(spec: Any, *, prefix: str = "rl", **options: Any) -> RedisBackend:
    """Build a :class:`RedisBackend` from a URL or a redis-py client.

    Called by :func:`ratelimit_mw.backends.open.open_backend`; ``options`` are the
    Limiter's ``backend_options`` (``socket_timeout``, ``min_ttl``, ...).
    """
    return RedisBackend(spec, prefix=prefix, **options)
