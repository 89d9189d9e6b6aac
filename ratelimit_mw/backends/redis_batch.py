"""Coalescing of concurrent async checks into one round trip per batch.

An asyncio app under load has many checks in flight on one event loop. Sent one
by one, each costs a command on the wire, a parse, a script start on the server
and a wake-up of its task. Here a check that finds the loop's connection idle is
sent at once (a lone request pays nothing extra); checks that arrive while a
round trip is in flight wait in a queue, and when it returns, ALL of them go out
in ONE ``EVALSHA`` of the script's batch form (see ``lua/check.lua``). There is
no timer and no fixed batching delay: a batch holds exactly what arrived during
the previous round trip, so batches grow with the load and shrink with it.

Decisions are those of the checks sent one by one: the script runs them in
arrival order, each seeing the states the previous ones wrote, atomically, at
one server instant. On Redis Cluster a batch is split by hash slot (a script's
keys must share one) and the groups are sent concurrently.

Failures stay per check: a failed round trip fails the checks it carried (each
gets a :class:`~ratelimit_mw.errors.BackendError`, and the Limiter's failure
policy answers it), an error reply inside a batch fails only its own check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from redis.crc import key_slot

from ratelimit_mw.backends.redis_lua import Script, script_for_batch
from ratelimit_mw.errors import BackendError

__all__ = ["CheckCoalescer", "MAX_BATCH"]

#: Most checks in one batch: bounds the script's run time on the server (Redis runs
#: one script at a time), ~1-2 ms for 128 single-rule checks.
MAX_BATCH = 128

#: ``(args, script) -> reply``: one EVALSHA (with the EVAL fallback), errors raised
#: as BackendError.
Runner = Callable[[list[Any], Script], Awaitable[Any]]


class _Check(NamedTuple):
    keys: Sequence[str]
    tail: tuple[Any, ...]  # n, mode, now, cost, min_ttl_ms, *rule args: the head of the check
    script: Script
    future: asyncio.Future[Any]


def _fail(checks: Sequence[_Check], message: str) -> None:
    for check in checks:
        if not check.future.done():  # a waiter may have been cancelled
            check.future.set_exception(BackendError(message))


class CheckCoalescer:
    """Sends the checks of one event loop, coalescing those that overlap.

    Args:
        run: sends one script call (see :data:`Runner`).
        cluster: split batches by hash slot.
        max_batch: most checks in one script call.
    """

    def __init__(self, run: Runner, *, cluster: bool = False, max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._cluster = cluster
        self._max_batch = max_batch
        self._queue: list[_Check] = []
        self._busy = False  # a round trip is in flight (a leader's or the drain's)
        self._drain_task: asyncio.Task[None] | None = None
        #: Round trips made, and checks they carried (for tests and benchmarks).
        self.round_trips = 0
        self.checks = 0

    async def submit(self, keys: Sequence[str], tail: tuple[Any, ...], script: Script) -> Any:
        """The script's reply for one check (its ARGV is ``tail``, without a batch header)."""
        if not self._busy:
            # Idle: go at once, and lead. Whatever queues meanwhile is sent by a
            # drain task when this returns, so this caller never waits for others.
            self._busy = True
            try:
                self.round_trips += 1
                self.checks += 1
                return await self._run([len(keys), *keys, *tail[1:]], script)
            finally:
                if self._queue:
                    self._start_drain()
                else:
                    self._busy = False
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Check(keys, tail, script, future))
        return await future

    def _start_drain(self) -> None:
        # A task of its own: a cancelled caller must not strand the queue.
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if self._cluster:
                    groups: dict[int, list[_Check]] = {}
                    for check in batch:
                        groups.setdefault(key_slot(check.keys[0].encode()), []).append(check)
                    await asyncio.gather(*(self._send(group) for group in groups.values()))
                else:
                    await self._send(batch)
        finally:
            self._busy = False
            self._drain_task = None
            if self._queue:  # only when cancelled (the loop is closing)
                queue, self._queue = self._queue, []
                _fail(queue, "redis: check abandoned, the event loop is shutting down")

    async def _send(self, batch: list[_Check]) -> None:
        """One script call for ``batch``; settles every future of it, raises nothing
        but cancellation."""
        self.round_trips += 1
        self.checks += len(batch)
        try:
            if len(batch) == 1:
                check = batch[0]
                replies = [await self._run([len(check.keys), *check.keys, *check.tail[1:]], check.script)]
            else:
                keys: list[Any] = []
                heads: dict[tuple[Any, ...], str] = {}
                indexes: list[str] = []
                for check in batch:
                    keys += check.keys
                    index = heads.get(check.tail)
                    if index is None:
                        index = heads[check.tail] = str(len(heads) + 1)
                    indexes.append(index)
                args: list[Any] = [len(keys), *keys, "batch", len(heads)]
                for head in heads:
                    args += head
                if len(heads) > 1:  # one head: the script gives it to every check
                    args += indexes
                script = script_for_batch([check.script for check in batch])
                replies = await self._run(args, script)
        except BackendError as exc:
            _fail(batch, str(exc))
            return
        except asyncio.CancelledError:
            _fail(batch, "redis: check abandoned, the event loop is shutting down")
            raise
        except Exception as exc:  # a bug here must not strand the waiters
            _fail(batch, f"redis: {type(exc).__name__}: {exc}")
            return
        if not isinstance(replies, list) or len(replies) != len(batch):
            _fail(batch, f"unexpected reply from the rate-limit script: {replies!r:.200}")
            return
        for check, reply in zip(batch, replies, strict=True):
            if check.future.done():
                continue
            if isinstance(reply, Exception):  # an error reply for this check only
                check.future.set_exception(BackendError(f"redis: {type(reply).__name__}: {reply}"))
            else:
                check.future.set_result(reply)
