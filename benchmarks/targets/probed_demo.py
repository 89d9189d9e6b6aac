"""``uvicorn benchmarks.targets.probed_demo:app``: the demo app with timing probes.

For ``python -m benchmarks.profile redis-wait``. Splits each request's time in the
server into: from the app's entry to the write of its check to Redis (``pre``), the
wait for the reply (``wait``, from the write to the read callback that parses it),
and from the reply to the response start (``post``: the decision, the headers and
the demo endpoint). Wraps two private methods of the coalescer's channel
(:class:`~ratelimit_mw.backends.redis_channel.OrderedChannel`), so only a request
whose own task wrote its check (an idle check, not one of a batch) gets the split.
``GET /__probe`` returns the rows recorded so far as JSON and forgets them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from examples.fastapi_app import app as demo
from ratelimit_mw.backends.redis_channel import OrderedChannel

__all__ = ["app"]

_clock = time.perf_counter
#: per request: [pre, wait, post, total] seconds (the first three None without a split)
_rows: list[list[float | None]] = []
_written: dict[Any, tuple[asyncio.Future[Any], float]] = {}  # task -> (its check's future, write time)
_arrived: dict[asyncio.Future[Any], float] = {}  # future -> reply time

_send = OrderedChannel._send
_received = OrderedChannel._received


def _probed_send(self: OrderedChannel, link: Any, future: asyncio.Future[Any], args: Any, loop: Any) -> None:
    _written[asyncio.current_task()] = (future, _clock())
    _send(self, link, future, args, loop)


def _probed_received(self: OrderedChannel, link: Any, data: bytes) -> None:
    now = _clock()
    before = [entry[0] for entry in self._waiting]
    _received(self, link, data)
    for future in before[: len(before) - len(self._waiting)]:
        _arrived[future] = now


OrderedChannel._send = _probed_send  # type: ignore[method-assign]
OrderedChannel._received = _probed_received  # type: ignore[method-assign]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await demo(scope, receive, send)
        return
    if scope["path"] == "/__probe":
        body = json.dumps(_rows).encode()
        _rows.clear()
        _written.clear()
        _arrived.clear()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    started = _clock()
    task = asyncio.current_task()

    async def probed(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            now = _clock()
            written = _written.pop(task, None)
            arrived = _arrived.pop(written[0], None) if written is not None else None
            if written is not None and arrived is not None:
                _rows.append([written[1] - started, arrived - written[1], now - arrived, now - started])
            else:
                _rows.append([None, None, None, now - started])
        await send(message)

    await demo(scope, receive, probed)
