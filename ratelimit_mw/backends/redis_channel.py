"""One Redis connection driven as a protocol: commands out in order, replies matched in order.

The coalescer (:mod:`ratelimit_mw.backends.redis_batch`) sends every async check
of an event loop through one :class:`OrderedChannel`. Redis runs a connection's
commands in arrival order, so batches in flight at once run in the order they
were formed, and every decision is the one its check would get alone.

Why not redis-py's ``send_packed_command``/``read_response``: each call there
wraps the socket in ``asyncio.wait_for`` (a task per call on Python 3.11), and
reading needs a task of its own; with the pool's check-out and check-in per idle
request, an idle check crossed ~6 event-loop iterations and made 2 tasks. On a
loaded server each iteration is an ``epoll`` call, and in a VM each extra wake-up
of a process costs tens of microseconds. Here the connection's transport is
handed a small :class:`asyncio.Protocol`: ``call`` writes the packed command at
once and returns its future (no await), and the loop's read callback parses the
replies with hiredis and settles the waiters' futures directly. A check then
costs the loop one wake-up for its reply and no task.

What redis-py still does: it makes the connection (TCP or Unix socket, TLS,
AUTH, ``HELLO``, ``SELECT``, Sentinel's discovery of the master) through the
client's pool, and its error classes name the error replies (``NOSCRIPT`` becomes
``NoScriptError``, which the caller answers with ``EVAL``).

Failure handling: a connection closed by the server, a reset, a protocol error,
a ``READONLY`` reply (a Sentinel failover demoted the server) or a reply later
than the connection's ``socket_timeout`` fails every command in flight with a
:class:`~ratelimit_mw.errors.BackendError` and drops the connection; the next
command takes a fresh one from the pool. The connection is kept while idle (its
protocol still listens, so a server that closes it is noticed at once, not on
the next check).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ratelimit_mw.errors import BackendError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis[hiredis], our dependency
    import hiredis
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - the backend then coalesces through redis-py's client
    hiredis = None  # type: ignore[assignment]
    _hiredis_pack = None

_parse_error: Callable[[str], Exception] | None
try:  # the mapping redis-py's own parsers use (NOSCRIPT -> NoScriptError, ...)
    from redis._parsers import BaseParser

    _parse_error = BaseParser.parse_error
except (ImportError, AttributeError):  # a redis-py without it: the channel is not used
    _parse_error = None

__all__ = ["OrderedChannel", "available", "unsupported"]


def unsupported(connection_class: Any = None) -> str | None:
    """Why the channel cannot run with the installed redis-py, or ``None`` when it can.

    It reads redis-py internals: an asyncio connection's ``_reader`` (a
    ``StreamReader``, whose buffer must be empty when we take over) and ``_writer``
    (whose transport we drive), and the error mapping of ``redis._parsers``. They are
    checked on an unconnected connection object, once; where they are missing, the
    backend falls back to the client's public ``execute_command``.
    """
    if hiredis is None:
        return "hiredis is not installed"
    if _parse_error is None:
        return "redis-py without redis._parsers.BaseParser.parse_error"
    if connection_class is None:
        return _installed_reason()
    try:
        probe = connection_class()
    except Exception as exc:
        return f"cannot make a redis-py connection object to check: {type(exc).__name__}"
    for name in ("_reader", "_writer", "encoder", "socket_timeout"):
        if not hasattr(probe, name):
            return f"redis-py asyncio connections without {name}"
    loop = asyncio.new_event_loop()  # a reader needs one; not the running loop's business
    try:
        if not hasattr(asyncio.StreamReader(loop=loop), "_buffer"):
            return "asyncio.StreamReader without _buffer"
    finally:
        loop.close()
    return None


@functools.cache
def _installed_reason() -> str | None:
    from redis.asyncio.connection import Connection

    return unsupported(Connection)


def available() -> bool:
    """Whether this channel can run here (see :func:`unsupported`)."""
    return unsupported() is None


def _packer(conn: Any) -> Callable[[tuple[Any, ...]], bytes]:
    """How commands for ``conn`` are packed into RESP: by hiredis in C when the
    connection encodes as it does, else by redis-py (chosen once per connection).

    redis.asyncio packs in Python, one ``Encoder.encode`` call per argument: for a
    batch of coalesced checks that cost ~7 us per check, measured in process with
    32 requests in flight (cProfile). hiredis encodes ``str`` as UTF-8 and numbers
    as their decimal text, which is redis-py's default ``Encoder``; a client set up
    with another encoding keeps redis-py's packer.
    """
    encoder = getattr(conn, "encoder", None)
    if _hiredis_pack is not None and getattr(encoder, "encoding", None) == "utf-8" and (
        getattr(encoder, "encoding_errors", None) == "strict"
    ):
        return _hiredis_pack
    return lambda args: b"".join(conn.pack_command(*args))


def _not_connected(args: tuple[Any, ...]) -> bytes:
    raise RedisConnectionError("no connection to pack for")


def _pack(conn: Any, args: tuple[Any, ...]) -> bytes:
    """``args`` packed for ``conn`` (see :func:`_packer`)."""
    return _packer(conn)(args)


class _Replies(asyncio.Protocol):
    """The transport's protocol while the channel owns the connection."""

    def __init__(self, channel: OrderedChannel, transport: asyncio.Transport) -> None:
        self._channel = channel
        self.transport = transport
        #: redis-py's stream protocol: told when the connection ends, so its
        #: connection object sees the close as if it had read the socket itself
        self._previous = transport.get_protocol()

    def data_received(self, data: bytes) -> None:
        self._channel._received(self, data)

    def eof_received(self) -> bool:
        self._channel._lost(self, RedisConnectionError("Connection closed by server."))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel._lost(self, exc or RedisConnectionError("Connection closed."))
        with contextlib.suppress(Exception):
            self._previous.connection_lost(exc)


class OrderedChannel:
    """Commands written on ONE connection, answered in the order they were written.

    Args:
        pool: returns the redis.asyncio client's connection pool (awaited when a
            connection is needed, so the client is created by the first command).
        wrap: turns a driver exception into the BackendError to raise.
    """

    def __init__(self, pool: Callable[[], Awaitable[Any]], wrap: Callable[[BaseException], BackendError]) -> None:
        self._get_pool = pool
        self._wrap = wrap
        self._pool: Any = None  # the pool the connection came from (to give it back)
        self._conn: Any = None  # redis-py's connection object (made and configured it)
        self._link: _Replies | None = None  # its transport's protocol while we own it
        self._reader: Any = None  # hiredis.Reader of the connection
        self._pack: Callable[[tuple[Any, ...]], bytes] = _not_connected  # chosen per connection
        self._timeout: float | None = None  # the connection's socket_timeout
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (waiter, deadline), in write order
        self._timer: asyncio.TimerHandle | None = None
        self._backlog: list[tuple[asyncio.Future[Any], tuple[Any, ...]]] = []  # commands waiting for a connection
        self._connecting: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command; a future of its reply (an error reply: its redis-py exception).

        A plain function returning the future, not a coroutine: awaiting it is one
        frame fewer on every check's way out and back in.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        link = self._link
        if link is None:
            # Commands that find no connection queue in order, and a task of its own
            # connects (a cancelled caller must not abort the others' connection).
            self._backlog.append((future, args))
            if self._connecting is None:
                self._connecting = loop.create_task(self._connect())
        else:
            self._send(link, future, args, loop)
        return future

    def _send(self, link: _Replies, future: asyncio.Future[Any], args: tuple[Any, ...],
              loop: asyncio.AbstractEventLoop) -> None:
        """Write one command and queue its waiter (no await: writes and ``_waiting`` keep one order)."""
        try:
            packed = self._pack(args)
        except Exception as exc:  # an argument redis-py cannot encode: this command only
            future.set_exception(self._wrap(exc))
            return
        if link.transport.is_closing():
            future.set_exception(self._wrap(RedisConnectionError("Connection closed.")))
            self._lost(link, RedisConnectionError("Connection closed."))
            return
        link.transport.write(packed)
        timeout = self._timeout
        self._waiting.append((future, loop.time() + timeout if timeout else 0.0))
        if timeout and self._timer is None:
            self._timer = loop.call_later(timeout, self._check_deadline)

    async def _connect(self) -> None:
        """Take a connection from the pool, attach our protocol, send the backlog."""
        conn = pool = None
        try:
            # From the pool: it connects, authenticates and selects as configured.
            pool = await self._get_pool()
            conn = await pool.get_connection()
            stream = getattr(conn, "_reader", None)
            transport = getattr(getattr(conn, "_writer", None), "transport", None)
            if not isinstance(stream, asyncio.StreamReader) or transport is None or getattr(stream, "_buffer", None):
                raise RedisConnectionError("redis-py connection without a usable stream transport")
            encoder = conn.encoder
            options: dict[str, Any] = {"protocolError": RedisConnectionError, "replyError": _parse_error}  # checked
            if encoder.decode_responses:
                options["encoding"] = encoder.encoding
                options["errors"] = encoder.encoding_errors
            reader = hiredis.Reader(**options)
            link = _Replies(self, transport)
            transport.set_protocol(link)
        except BaseException as exc:
            self._connecting = None
            if conn is not None:
                self._release(pool, conn)
            backlog, self._backlog = self._backlog, []
            error = self._wrap(exc) if isinstance(exc, Exception) else BackendError("redis: cancelled")
            for future, _ in backlog:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting = None
        self._pool, self._conn, self._link, self._reader = pool, conn, link, reader
        self._pack = _packer(conn)
        self._timeout = getattr(conn, "socket_timeout", None)
        backlog, self._backlog = self._backlog, []
        loop = asyncio.get_running_loop()
        for future, args in backlog:
            if future.done():  # its caller was cancelled
                continue
            if self._link is link:
                self._send(link, future, args, loop)
            else:  # lost while sending the backlog
                future.set_exception(self._wrap(RedisConnectionError("Connection closed.")))

    def _received(self, link: _Replies, data: bytes) -> None:
        if link is not self._link:
            return
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a protocol error: nothing after it can be trusted
                self._lost(link, exc)
                return
            if reply is False:
                break
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._lost(link, RedisConnectionError(f"unexpected reply from Redis: {reply!r:.100}"))
                return
            future = waiting.popleft()[0]
            if isinstance(reply, ReadOnlyError):  # a failover demoted this server
                if not future.done():
                    future.set_exception(reply)
                self._lost(link, reply)
                return
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        # The deadline timer stays armed when nothing is left in flight: it finds
        # nothing to time out and lapses, which is cheaper than a cancel here and a
        # new timer for the next command, one request after another.

    def _check_deadline(self) -> None:
        self._timer = None
        link = self._link
        if link is None or not self._waiting:  # all answered: the next command arms it again
            return
        loop = asyncio.get_running_loop()
        due = self._waiting[0][1]
        now = loop.time()
        if due > now:
            self._timer = loop.call_later(due - now, self._check_deadline)
            return
        self._lost(link, RedisTimeoutError("Timeout reading from Redis"))

    def _lost(self, link: _Replies, exc: BaseException) -> None:
        """Fail everything in flight on ``link`` and drop its connection (its replies are lost)."""
        if link is not self._link:
            return
        waiting, self._waiting = self._waiting, deque()
        pool, conn = self._pool, self._conn
        self._link = self._conn = self._reader = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = exc if isinstance(exc, BackendError) else (
            self._wrap(exc) if isinstance(exc, Exception) else BackendError("redis: cancelled"))
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        link.transport.close()
        self._release(pool, conn)

    def _release(self, pool: Any, conn: Any) -> None:
        """Give ``conn`` back to its pool, disconnected (redis-py reconnects it on reuse)."""

        async def release() -> None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)  # the transport is closed already
            with contextlib.suppress(Exception):
                await pool.release(conn)

        task = asyncio.get_running_loop().create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def aclose(self) -> None:
        """Fail what is in flight, close the connection and give it back."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
        link = self._link
        if link is not None:
            self._lost(link, BackendError("redis: backend closed"))
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
