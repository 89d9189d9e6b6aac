"""Synchronous commands on connections kept between checks (the sync hot path).

``redis.Redis.execute_command`` wraps every command in machinery a limiter does
not need per check: the pool's lock, a readiness poll of the socket (one syscall),
a retry wrapper built per call and observability hooks. Measured side by side on
loopback, checking a connection out of the pool and back per command cost ~18 us
more than reusing one kept connection, and the full ``execute_command`` path made
a check ~1.3x a bare ``EVALSHA`` of ``return 1`` where this path makes it ~1.0x
(``python -m benchmarks.run --only redis_sync``).

:class:`DirectCommands` keeps the connections it borrowed from the client's pool
on a list (``list.pop``/``list.append`` are atomic, so each thread takes a
connection of its own) and drives them the way redis-py's pipelines do:
``pack_command``, ``send_packed_command``, ``read_response``. The pool still
makes, configures (TLS, auth, Sentinel's master discovery) and counts them.

Safety, since no poll precedes a command:

* A connection whose command failed in any way but an error reply is
  disconnected and handed back to the pool, never reused: a late reply to a
  timed-out command can never be read as the answer to the next one.
* A kept connection that the server closed while it sat idle (restart,
  ``timeout`` setting, failover) fails on its next use with a connection error.
  That one command is sent again once, on a connection from the pool, just as
  the pool's readiness poll would have replaced the dead connection. Timeouts
  are not retried: the command may have run.
* A forked child drops the connections it inherited (they belong to the parent).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = ["DirectCommands", "direct_unsupported", "supports_direct"]

_ALIVE: weakref.WeakSet[DirectCommands] = weakref.WeakSet()


def direct_unsupported(client: Any) -> str | None:
    """Why ``client``'s commands may not go direct, or ``None`` when they may.

    Only a plain ``redis.Redis``: not a single-connection client (its one connection
    is guarded by a lock of its own) or a pool with client-side caching (whose
    connections answer some reads locally); Cluster clients route per slot. And only
    while redis-py's pool and connections have the methods this module drives
    (those its pipelines use): a release that changed them makes the backend fall
    back to ``execute_command``, slower but with the same answers.
    """
    import redis

    if not isinstance(client, redis.Redis):
        return "not a plain redis.Redis client"
    if getattr(client, "connection", None) is not None:
        return "a single-connection client"
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return "a pool with client-side caching" if pool is not None else "no connection pool"
    connection_class = getattr(pool, "connection_class", None)
    for owner, names in ((pool, ("get_connection", "release")),
                         (connection_class, ("pack_command", "send_packed_command", "read_response", "disconnect"))):
        for name in names:
            if not callable(getattr(owner, name, None)):
                return f"redis-py without {type(owner).__name__ if owner is pool else 'Connection'}.{name}"
    return None


def supports_direct(client: Any) -> bool:
    """Whether ``client``'s commands may go direct (see :func:`direct_unsupported`)."""
    return direct_unsupported(client) is None


class DirectCommands:
    """Send commands on connections borrowed from ``pool`` and kept between calls.

    Args:
        pool: a redis-py (sync) connection pool: ``get_connection()`` and ``release()``.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        _ALIVE.add(self)

    def call(self, *args: Any) -> Any:
        """One command and its reply; an error reply raises ``ResponseError`` (the
        connection stays usable), any other failure raises the driver's exception."""
        try:
            conn = self._idle.pop()
        except IndexError:
            return self._send(self._pool.get_connection(), args)
        try:
            return self._send(conn, args)
        except RedisConnectionError:
            # Closed by the server while kept idle (a dead socket fails at once, it
            # does not time out): what the pool's readiness poll would have caught.
            # Sent again once, on a connection the pool checks before handing out.
            return self._send(self._pool.get_connection(), args)

    def _send(self, conn: Any, args: tuple[Any, ...]) -> Any:
        """``args`` on ``conn``; keeps the connection after a reply (an error reply
        included), drops it after anything else."""
        try:
            conn.send_packed_command(conn.pack_command(*args))
            reply = conn.read_response()
        except ResponseError:
            self._idle.append(conn)
            raise
        except BaseException:
            self._drop(conn)
            raise
        self._idle.append(conn)
        return reply

    def _drop(self, conn: Any) -> None:
        try:
            conn.disconnect()
        finally:
            self._pool.release(conn)

    @property
    def kept(self) -> int:
        """Connections kept idle right now (for tests)."""
        return len(self._idle)

    def close(self) -> None:
        """Give every kept connection back to the pool, disconnected."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._drop(conn)

    def _forget(self) -> None:
        # In a forked child: the sockets are shared with the parent, so neither
        # use nor close them (redis-py's pool resets itself in the child the same way).
        self._idle = []


def _after_fork_in_child() -> None:
    for commands in list(_ALIVE):
        commands._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
