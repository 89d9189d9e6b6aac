"""Keep every node's policies equal through Redis: store, publish, subscribe, catch up.

A change made through one node's admin API must reach every node, including nodes
that were restarting or lost their connection at that moment. So Redis holds the
current document and a revision counter, and the notification is only a hint:

* ``<prefix>:policies`` is a hash: ``version`` (the revision, an integer that only
  grows) and ``document`` (the normalised policy document as JSON). A publish
  increments the revision, stores the document and PUBLISHes the revision on
  ``<prefix>:policies:changed``, all in one Lua script, hence atomically.
* Each node subscribes to the channel and, on a message, reads the hash and applies
  it if its revision is newer than the one it runs. It also reads the revision every
  ``interval`` seconds (one ``HGET``), so a missed message is caught up within
  ``interval``; the pub/sub path makes the common case immediate.
* A revision is applied only after :func:`~ratelimit_mw.policy.loader.load_policies`
  validates it (with an empty environment: a document from the network never reads
  this node's environment variables). A revision that fails validation is logged
  once and skipped; the node keeps its policies.
* ``expected_version`` makes a publish a compare-and-set, so two concurrent
  read-modify-write changes (admin ``PATCH``) cannot silently overwrite each other.

Once a document has been published, Redis is the source of truth: a node that
starts applies the stored revision over its own file. To return to the file,
publish it (``PUT /policies``) or delete the key.

Two twins share one interface: :class:`PolicySync` (sync redis-py client, a
background thread; WSGI servers) and :class:`AsyncPolicySync` (``redis.asyncio``,
an asyncio task; ASGI servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.errors import ConfigError, PolicyError, RateLimitError
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SOURCE", "AsyncPolicySync", "PolicyConflict", "PolicySync"]

#: ``PolicySet.source`` of policies applied from Redis.
SOURCE = "<redis>"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_STOP_SLICE = 0.1  # seconds: longest the subscriber thread blocks without checking for stop()

# KEYS[1] hash; ARGV[1] document JSON, ARGV[2] expected revision or "", ARGV[3] channel.
# Returns {1, new revision} or {0, current revision} when the expectation failed.
_PUBLISH_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then
  return {0, current}
end
local revision = current + 1
redis.call('HSET', KEYS[1], 'version', revision, 'document', ARGV[1])
redis.call('PUBLISH', ARGV[3], revision)
return {1, revision}
"""


class PolicyConflict(RateLimitError):
    """A compare-and-set publish lost: the stored revision is not the expected one.

    Attributes:
        expected: the revision the change was based on.
        current: the revision stored now.
    """

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(f"policies changed concurrently (expected revision {expected}, found {current})")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _revision(value: Any) -> int:
    text = _text(value)
    return int(text) if text else 0


class _SyncState:
    """What both twins share: naming, decoding and the guarded local apply."""

    def __init__(self, engine: Any, *, prefix: str | None, interval: float) -> None:
        if interval <= 0:
            raise ConfigError(f"interval must be > 0 seconds, got {interval!r}")
        self.engine = getattr(engine, "engine", engine)
        prefix = self.engine.limiter.prefix if prefix is None else prefix
        #: Redis hash holding ``version`` and ``document``.
        self.key = f"{prefix}:policies"
        #: Pub/sub channel announcing new revisions.
        self.channel = f"{prefix}:policies:changed"
        self.interval = interval
        #: The revision this node runs (0: none from Redis yet).
        self.version = 0
        self._lock = threading.Lock()
        self._failing = False

    def apply(self, revision: int, document: Any, policies: Any = None) -> bool:
        """Apply ``revision`` if it is newer than the running one; never raises PolicyError.

        Args:
            revision: the stored revision.
            document: its document (mapping, or JSON text) when ``policies`` is not given.
            policies: an already validated PolicySet (the publishing node's own).

        Returns:
            True when the engine now runs ``revision``.
        """
        with self._lock:
            if revision <= self.version:
                return False
            if policies is None:
                try:
                    data = json.loads(document) if isinstance(document, (str, bytes)) else document
                    policies = load_policies(data, env={})
                except (PolicyError, ValueError) as exc:
                    self.version = revision  # skip it: retrying the same bytes cannot succeed
                    fields = exc.to_dict() if isinstance(exc, PolicyError) else {"reason": str(exc)}
                    log.logger.error(
                        log.POLICIES_RELOAD_FAILED, origin="sync", revision=revision, error=str(exc), **fields
                    )
                    return False
            self.engine.set_policies(replace(policies, source=SOURCE))
            self.version = revision
        log.logger.info(log.POLICIES_RELOADED, origin="sync", revision=revision, routes=len(policies.routes))
        return True

    def _encode(self, document: Mapping[str, Any]) -> str:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    def _published(self, reply: Any, expected: int | None) -> int:
        ok, revision = int(reply[0]), int(reply[1])
        if not ok:
            raise PolicyConflict(expected if expected is not None else -1, revision)
        return revision

    def _redis_failed(self, exc: BaseException) -> None:
        if not self._failing:  # once per outage, like the breaker
            self._failing = True
            log.logger.error(
                log.BACKEND_ERROR, component="policy_sync", error=type(exc).__name__, detail=str(exc)[:200]
            )

    def _redis_ok(self) -> None:
        self._failing = False


class PolicySync(_SyncState):
    """Policy sync with a synchronous redis-py client and a background thread.

    Args:
        engine: the :class:`~ratelimit_mw.engine.Engine` (or a middleware with ``.engine``).
        redis: a ``redis://``/``rediss://``/``unix://`` URL, or a ``redis.Redis`` client
            (cluster and sentinel clients work too).
        prefix: key prefix (default: the limiter's, ``REDIS_PREFIX`` or ``rl``).
        interval: seconds between revision checks, the bound on catching up a missed
            message (default 1).
    """

    def __init__(self, engine: Any, redis: Any, *, prefix: str | None = None, interval: float = 1.0) -> None:
        super().__init__(engine, prefix=prefix, interval=interval)
        if isinstance(redis, str):
            import redis as redis_py

            redis = redis_py.Redis.from_url(redis, socket_connect_timeout=2.0, socket_timeout=5.0)
        self.client = redis
        self._script = redis.register_script(_PUBLISH_LUA)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- storage -----------------------------------------------------------------------

    def fetch(self) -> tuple[int, dict[str, Any] | None]:
        """The stored revision and document (``(0, None)`` when nothing was published)."""
        version, document = self.client.hmget(self.key, ["version", "document"])
        text = _text(document)
        return _revision(version), (json.loads(text) if text else None)

    def publish(
        self, document: Mapping[str, Any], policies: Any = None, *, expected_version: int | None = None
    ) -> int:
        """Store ``document`` as the next revision, announce it, and apply it here.

        Args:
            document: a normalised, already validated document (``PolicySet.document``).
            policies: the validated PolicySet, applied locally without reloading.
            expected_version: publish only if the stored revision is still this one.

        Returns:
            The new revision.

        Raises:
            PolicyConflict: ``expected_version`` is stale.
        """
        args = [
            self._encode(document),
            "" if expected_version is None else str(expected_version),
            self.channel,
        ]
        revision = self._published(self._script(keys=[self.key], args=args), expected_version)
        self.apply(revision, document, policies)
        return revision

    def check_once(self) -> bool:
        """Catch up: apply the stored revision if it is newer. Redis errors propagate."""
        if _revision(self.client.hget(self.key, "version")) <= self.version:
            return False
        version, document = self.client.hmget(self.key, ["version", "document"])
        return self.apply(_revision(version), _text(document))

    # -- background thread ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the subscriber thread is alive (in this process: threads do not survive fork)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PolicySync:
        """Catch up now (best effort), then subscribe in a daemon thread."""
        with self._start_lock:
            if self.running:
                return self
            try:
                self.check_once()
                self._redis_ok()
            except Exception as exc:  # Redis down at start: the thread keeps trying
                self._redis_failed(exc)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ratelimit-policy-sync", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the subscriber thread: within about 0.1 s, or once a Redis call in flight returns."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval + 5)
            self._thread = None

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        """Wrap a WSGI app so each worker process starts the subscriber on its first request.

        Threads do not survive ``fork``, so under gunicorn starting at import would
        only start it in the master (with ``--preload``); this starts it where it runs.
        """

        def with_sync(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if not self.running:
                self.start()
            return app(environ, start_response)

        return with_sync

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.check_once()  # anything published while we were not subscribed
                self._redis_ok()
                deadline = time.monotonic() + self.interval
                while not self._stop.is_set():
                    # Short waits: stop() is seen within _STOP_SLICE, at the cost of an idle select().
                    wait = min(max(0.0, deadline - time.monotonic()), _STOP_SLICE)
                    message = pubsub.get_message(timeout=wait)
                    if message is None and time.monotonic() < deadline:
                        continue
                    self.check_once()
                    if message is None:
                        deadline = time.monotonic() + self.interval
            except Exception as exc:
                self._redis_failed(exc)
                self._stop.wait(self.interval)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()


class AsyncPolicySync(_SyncState):
    """Policy sync with a ``redis.asyncio`` client and an asyncio task.

    Start it from the server's event loop: wrap the outermost ASGI app with
    :meth:`asgi` (lifespan start/stop, or lazily on the first request when the
    server runs no lifespan), or ``await sync.start()`` in your own lifespan.

    Args: as for :class:`PolicySync`, with a ``redis.asyncio.Redis`` client.
    """

    def __init__(self, engine: Any, redis: Any, *, prefix: str | None = None, interval: float = 1.0) -> None:
        super().__init__(engine, prefix=prefix, interval=interval)
        if isinstance(redis, str):
            import redis.asyncio as redis_asyncio

            redis = redis_asyncio.Redis.from_url(redis, socket_connect_timeout=2.0, socket_timeout=5.0)
        self.client = redis
        self._script = redis.register_script(_PUBLISH_LUA)
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    async def fetch(self) -> tuple[int, dict[str, Any] | None]:
        """Async :meth:`PolicySync.fetch`."""
        version, document = await self.client.hmget(self.key, ["version", "document"])
        text = _text(document)
        return _revision(version), (json.loads(text) if text else None)

    async def publish(
        self, document: Mapping[str, Any], policies: Any = None, *, expected_version: int | None = None
    ) -> int:
        """Async :meth:`PolicySync.publish`."""
        args = [
            self._encode(document),
            "" if expected_version is None else str(expected_version),
            self.channel,
        ]
        revision = self._published(await self._script(keys=[self.key], args=args), expected_version)
        self.apply(revision, document, policies)
        return revision

    async def check_once(self) -> bool:
        """Async :meth:`PolicySync.check_once`."""
        if _revision(await self.client.hget(self.key, "version")) <= self.version:
            return False
        version, document = await self.client.hmget(self.key, ["version", "document"])
        return self.apply(_revision(version), _text(document))

    @property
    def running(self) -> bool:
        """Whether the subscriber task is running."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the subscriber task and wait for its first catch-up (success or failure)."""
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(self._ready))
        if self._ready is not None:
            await self._ready.wait()

    async def stop(self) -> None:
        """Cancel the subscriber task and wait for it to finish."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """Wrap the outermost ASGI app: start on lifespan startup (or the first request), stop on shutdown."""

        async def with_sync(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":

                async def lifespan_receive() -> Message:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await self.start()
                    elif message["type"] == "lifespan.shutdown":
                        await self.stop()
                    return message

                await app(scope, lifespan_receive, send)
                return
            if not self.running:
                await self.start()
            await app(scope, receive, send)

        return with_sync

    async def _run(self, ready: asyncio.Event) -> None:
        while True:
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                await self.check_once()
                self._redis_ok()
                ready.set()
                deadline = time.monotonic() + self.interval
                while True:
                    message = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                    if message is None and time.monotonic() < deadline:
                        continue
                    await self.check_once()
                    if message is None:
                        deadline = time.monotonic() + self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._redis_failed(exc)
                ready.set()
                await asyncio.sleep(self.interval)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
