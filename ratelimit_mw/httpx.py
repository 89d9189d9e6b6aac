"""httpx transports that pace outgoing requests by outbound rules (sync and async twins).

::

    transport = RateLimitTransport(
        {"api.openai.com": "3000/minute", "api.twilio.com": "100/second"},
        transport=httpx.HTTPTransport(),   # the wrapped transport (default: httpx's own)
        max_wait=30.0,                     # seconds; on_limit="raise" fails at once instead
    )
    client = httpx.Client(transport=transport)

Each request is matched by method, scheme, host, port and path against the rules
(:class:`~ratelimit_mw.policy.outbound.OutboundIndex`); a request no rule matches goes
straight through. A matched one takes quota first (:meth:`OutboundLimiter.acquire
<ratelimit_mw.outbound.OutboundLimiter.acquire>`: waits in turn up to ``max_wait``,
or raises :class:`~ratelimit_mw.errors.RateLimitExceeded`), then goes out; its
response's rate-limit signals pause the rule for every sharer. With ``retries=N``, a
429 or 503 that paused the rule is sent again once the pause ends, at most ``N``
times, while the pause fits in ``max_wait``; otherwise that response is returned as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ratelimit_mw.outbound import OutboundLimiter
from ratelimit_mw.policy.outbound import OutboundRule

__all__ = ["AsyncRateLimitTransport", "RateLimitTransport"]

_RETRY_STATUSES = (429, 503)


def _outbound(
    rules: Mapping[str, Any] | Sequence[OutboundRule] | None, outbound: OutboundLimiter | None, options: Any
) -> OutboundLimiter:
    if outbound is None:
        return OutboundLimiter(rules, **options)
    if rules is not None or options:
        raise TypeError("give either an OutboundLimiter (outbound=) or rules and options, not both")
    return outbound


class RateLimitTransport(httpx.BaseTransport):
    """Wraps a sync httpx transport; applies outbound rules to every request.

    Args:
        rules: outbound rules from code (see :mod:`ratelimit_mw.policy.outbound`).
        transport: the transport that sends the requests (``httpx.HTTPTransport()``).
        outbound: an existing :class:`~ratelimit_mw.outbound.OutboundLimiter` to share
            (with decorators or other clients), instead of ``rules`` and ``options``.
        retries: how many times a request answered 429/503 with a pause is sent again.
        **options: for a new OutboundLimiter: ``policies``, ``backend``, ``max_wait``,
            ``on_limit``, ``clock``...
    """

    def __init__(
        self,
        rules: Mapping[str, Any] | Sequence[OutboundRule] | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        outbound: OutboundLimiter | None = None,
        retries: int = 0,
        **options: Any,
    ) -> None:
        self.outbound = _outbound(rules, outbound, options)
        self.transport = transport if transport is not None else httpx.HTTPTransport()
        self.retries = retries

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        rule = self.outbound.match(request.method, url.scheme, url.host, url.port, url.path)
        if rule is None:
            return self.transport.handle_request(request)
        outbound = self.outbound
        if self.retries:
            request.read()  # a body that may be sent twice must be replayable
        attempt = 0
        while True:
            outbound.acquire(rule)
            response = self.transport.handle_request(request)
            pause = outbound.observe_response(rule, response.status_code, response.headers)
            if (
                pause is None or attempt >= self.retries or response.status_code not in _RETRY_STATUSES
                or pause.seconds > outbound.max_wait
            ):
                return response
            response.close()
            attempt += 1

    def close(self) -> None:
        self.transport.close()


class AsyncRateLimitTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`RateLimitTransport`; the same arguments, with an async transport."""

    def __init__(
        self,
        rules: Mapping[str, Any] | Sequence[OutboundRule] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        outbound: OutboundLimiter | None = None,
        retries: int = 0,
        **options: Any,
    ) -> None:
        self.outbound = _outbound(rules, outbound, options)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.retries = retries

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        rule = self.outbound.match(request.method, url.scheme, url.host, url.port, url.path)
        if rule is None:
            return await self.transport.handle_async_request(request)
        outbound = self.outbound
        if self.retries:
            await request.aread()
        attempt = 0
        while True:
            await outbound.aacquire(rule)
            response = await self.transport.handle_async_request(request)
            pause = await outbound.aobserve_response(rule, response.status_code, response.headers)
            if (
                pause is None or attempt >= self.retries or response.status_code not in _RETRY_STATUSES
                or pause.seconds > outbound.max_wait
            ):
                return response
            await response.aclose()
            attempt += 1

    async def aclose(self) -> None:
        await self.transport.aclose()
