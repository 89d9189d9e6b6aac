"""Coalescing of concurrent async checks into few round trips.

An asyncio app under load has many checks in flight on one event loop. Sent one
by one, each costs a command on the wire, a parse, a script start on the server
and a wake-up of its task. Here a check that finds Redis idle is sent at once (a
lone request pays nothing extra); checks that arrive while round trips are in
flight wait in a queue, and go out together in ONE ``EVALSHA`` of the script's
batch form (see ``lua/check.lua``). There is no timer and no fixed batching
delay: a batch holds what arrived while Redis was busy, so batches grow with the
load and shrink with it.

Up to two batches are in flight, each taking an even share of the checks under
way: the app handles one batch's answers while Redis runs the other, instead of
the two taking turns. Both travel on one connection
(:class:`~ratelimit_mw.backends.redis_channel.OrderedChannel`),
and Redis runs a connection's commands in order.

Decisions are those of the checks sent one by one in submission order: the
script runs a batch's checks in order, each seeing the states the previous ones
wrote, atomically, at one server instant. On Redis Cluster a batch is split by
hash slot (a script's keys must share one) and the groups are sent concurrently;
there, one batch is in flight at a time, since two batches on different
connections could overtake each other.

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

__all__ = ["MAX_BATCH", "CheckCoalescer"]

#: Most checks in one batch: bounds the script's run time on the server (Redis runs
#: one script at a time), ~1-2 ms for 128 single-rule checks.
MAX_BATCH = 128

#: Round trips in flight at once (see ``CheckCoalescer._sender``).
IN_FLIGHT = 2

#: ``(args, script) -> reply``: one EVALSHA (with the EVAL fallback), errors raised
#: as BackendError.
Runner = Callable[[list[Any], Script], Awaitable[Any]]


class _Check(NamedTuple):
    keys: Sequence[str]
    tail: tuple[Any, ...]  # n, mode, now, cost, min_ttl_ms, *rule args: the head of the check
    script: Script
    future: asyncio.Future[Any]
    decode: Callable[[Any], Any]  # the reply -> what the caller gets


def _fail(checks: Sequence[_Check], message: str) -> None:
    for check in checks:
        if not check.future.done():  # a waiter may have been cancelled
            check.future.set_exception(BackendError(message))


class CheckCoalescer:
    """Sends the checks of one event loop, coalescing those that overlap.

    Args:
        run: sends one script call (see :data:`Runner`).
        cluster: split batches by hash slot.
        max_batch: most checks in one batch.
        in_flight: most round trips under way at once.
    """

    def __init__(
        self, run: Runner, *, cluster: bool = False, max_batch: int = MAX_BATCH, in_flight: int = IN_FLIGHT
    ) -> None:
        self._run = run
        self._cluster = cluster
        self._max_batch = max_batch
        self._max_in_flight = in_flight
        self._queue: list[_Check] = []
        self._in_flight = 0  # round trips under way
        self._in_flight_checks = 0  # checks they carry
        self._scheduled = False  # a sender task is about to run
        self._tasks: set[asyncio.Task[None]] = set()
        #: Round trips made, and checks they carried (for tests and benchmarks).
        self.round_trips = 0
        self.checks = 0

    def submit(
        self, keys: Sequence[str], tail: tuple[Any, ...], script: Script, decode: Callable[[Any], Any]
    ) -> Awaitable[Any]:
        """``decode(reply)`` of the script's reply for one check (its ARGV is ``tail``,
        without a batch header).

        A plain function returning an awaitable, not a coroutine: a check that finds
        round trips under way is queued now and handed its future itself, settled with
        the decoded reply, so it crosses no frame of ours on its way out and back in.
        """
        if not self._in_flight and not self._queue:
            return self._when_started(keys, tail, script, decode)
        return self._enqueue(keys, tail, script, decode)

    def _enqueue(self, keys: Sequence[str], tail: tuple[Any, ...], script: Script,
                 decode: Callable[[Any], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Check(keys, tail, script, future, decode))
        self._kick()
        return future

    async def _when_started(self, keys: Sequence[str], tail: tuple[Any, ...], script: Script,
                            decode: Callable[[Any], Any]) -> Any:
        """Found idle: decided when awaited, as it is sent (an awaitable made but awaited
        later must not count as in flight, nor jump the checks queued meanwhile)."""
        if self._in_flight or self._queue:
            return await self._enqueue(keys, tail, script, decode)
        # Idle: go at once. Whatever queues meanwhile is sent by sender tasks.
        self._in_flight += 1
        self._in_flight_checks += 1
        try:
            self.round_trips += 1
            self.checks += 1
            reply = await self._run([len(keys), *keys, *tail[1:]], script)
        finally:
            self._in_flight -= 1
            self._in_flight_checks -= 1
            self._kick()
        return decode(reply)

    def _kick(self) -> None:
        if self._queue and not self._scheduled and self._in_flight < self._max_in_flight:
            # A task of its own: a cancelled caller must not strand the queue. It
            # runs after the callbacks already due, so it collects every check
            # those submit.
            self._scheduled = True
            task = asyncio.get_running_loop().create_task(self._sender())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _sender(self) -> None:
        self._scheduled = False
        queue = self._queue
        if not queue:
            return
        # Take at most an even share of the checks under way: with two round trips
        # in flight, the app handles one half's answers while Redis runs the other.
        share = -(-(len(queue) + self._in_flight_checks) // self._max_in_flight)
        take = min(len(queue), self._max_batch, share)
        batch = queue[:take]
        del queue[:take]
        self._in_flight += 1
        self._in_flight_checks += take
        self._kick()
        try:
            if self._cluster:
                groups: dict[int, list[_Check]] = {}
                for check in batch:
                    groups.setdefault(key_slot(check.keys[0].encode()), []).append(check)
                await asyncio.gather(*(self._call(group) for group in groups.values()))
            else:
                await self._call(batch)
        except BaseException:
            _fail(batch, "redis: check abandoned, the event loop is shutting down")
            raise
        finally:
            self._in_flight -= 1
            self._in_flight_checks -= take
            self._kick()

    async def _call(self, batch: list[_Check]) -> None:
        """One script call for ``batch``; settles every future of it."""
        self.round_trips += 1
        self.checks += len(batch)
        try:
            args, script = _script_call(batch)
            reply = await self._run(args, script)
        except BackendError as exc:
            _fail(batch, str(exc))
            return
        except asyncio.CancelledError:
            _fail(batch, "redis: check abandoned, the event loop is shutting down")
            raise
        except Exception as exc:  # a bug here must not strand the waiters
            _fail(batch, f"redis: {type(exc).__name__}: {exc}")
            return
        _settle(batch, [reply] if len(batch) == 1 else reply)


def _script_call(batch: Sequence[_Check]) -> tuple[list[Any], Script]:
    """``numkeys, *KEYS, *ARGV`` and the script for ``batch`` (the batch form when
    it holds more than one check)."""
    if len(batch) == 1:
        check = batch[0]
        return [len(check.keys), *check.keys, *check.tail[1:]], check.script
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
    if len(heads) == 1:  # one head: the script gives it to every check; its algorithms are every check's
        return args, batch[0].script
    args += indexes
    return args, script_for_batch([check.script for check in batch])


def _settle(batch: Sequence[_Check], replies: Any) -> None:
    """Hand each check its reply (or its error)."""
    if isinstance(replies, Exception):
        _fail(batch, f"redis: {type(replies).__name__}: {replies}")
        return
    if not isinstance(replies, list) or len(replies) != len(batch):
        _fail(batch, f"unexpected reply from the rate-limit script: {replies!r:.200}")
        return
    for check, reply in zip(batch, replies, strict=True):
        if check.future.done():  # its waiter was cancelled
            continue
        if isinstance(reply, Exception):  # an error reply for this check only
            check.future.set_exception(BackendError(f"redis: {type(reply).__name__}: {reply}"))
            continue
        try:
            value = check.decode(reply)
        except Exception as exc:  # a malformed reply: this check's caller sees it, as if decoded there
            check.future.set_exception(exc)
        else:
            check.future.set_result(value)
