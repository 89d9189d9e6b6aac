"""The coalescer's own bookkeeping, with an in-process runner standing in for the
script call: each check of a batch gets its own reply, decoded, or its own error.

(Redis itself is exercised in tests/redis/test_redis_coalescing.py; here the runner is
the coalescer's injected dependency, so a malformed reply can be produced on purpose.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ratelimit_mw.backends.redis_batch import CheckCoalescer
from ratelimit_mw.backends.redis_lua import script_for
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.errors import BackendError

SCRIPT = script_for((parse_rate("10/minute"),))


def _decode(reply: Any) -> int:
    if not isinstance(reply, int):
        raise ValueError(f"malformed reply {reply!r}")
    return reply * 10


def test_each_check_of_a_batch_gets_its_own_decoded_reply_or_error() -> None:
    calls: list[list[Any]] = []

    async def run(args: list[Any], script: Any) -> Any:
        calls.append(args)
        await asyncio.sleep(0)
        if "batch" not in args:
            return 0  # the lone first check
        return [1, "garbage", RuntimeError("ERR in this check"), 4]

    async def main() -> list[Any]:
        coalescer = CheckCoalescer(run, in_flight=1)
        waiters = [asyncio.ensure_future(coalescer.submit([f"k{i}"], ("h", 1), SCRIPT, _decode)) for i in range(5)]
        return await asyncio.gather(*waiters, return_exceptions=True)

    got = asyncio.run(main())
    assert len(calls) == 2  # the lone check, then the four that queued behind it in one batch
    assert got[0] == 0 and got[1] == 10 and got[4] == 40
    assert isinstance(got[2], ValueError) and "garbage" in str(got[2])
    assert isinstance(got[3], BackendError) and "ERR in this check" in str(got[3])


def test_a_queued_check_is_handed_a_future_and_a_lone_one_a_coroutine() -> None:
    async def run(args: list[Any], script: Any) -> Any:
        await asyncio.sleep(0)
        return 7 if "batch" not in args else [7]

    async def main() -> None:
        coalescer = CheckCoalescer(run)
        lone = coalescer.submit(["a"], ("h", 1), SCRIPT, _decode)
        assert asyncio.iscoroutine(lone)
        task = asyncio.ensure_future(lone)
        await asyncio.sleep(0)
        queued = coalescer.submit(["b"], ("h", 1), SCRIPT, _decode)
        assert isinstance(queued, asyncio.Future)
        assert await task == 70 and await queued == 70

    asyncio.run(main())


@pytest.mark.parametrize("reply", ["not a list", [1, 2, 3]])
def test_a_batch_reply_of_the_wrong_shape_fails_every_check_of_it(reply: Any) -> None:
    async def run(args: list[Any], script: Any) -> Any:
        await asyncio.sleep(0)
        return 0 if "batch" not in args else reply

    async def main() -> list[Any]:
        coalescer = CheckCoalescer(run, in_flight=1)
        waiters = [asyncio.ensure_future(coalescer.submit([f"k{i}"], ("h", 1), SCRIPT, _decode)) for i in range(3)]
        return await asyncio.gather(*waiters, return_exceptions=True)

    got = asyncio.run(main())
    assert got[0] == 0
    assert all(isinstance(g, BackendError) and "unexpected reply" in str(g) for g in got[1:])
