"""Target 10: a key over its limit costs no Redis round trip (the local over-limit cache).

The Starlette app with RateLimitMiddleware on Redis (``10/second; burst=40`` per
``X-API-Key``, the demo's bucket) is driven in-process: 90% of requests come from
one abusive key, the other 10% each from a new key. ``INFO commandstats`` is read
before and after. Commands the client sends (EVALSHA/EVAL: round trips) are the
target's figure; commands the script runs inside the server (TIME, GET, SET...)
are reported too. The same run with ``over_limit_cache=0`` shows what the cache
saves.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.asgi_driver import http_scope
from benchmarks.context import Context
from benchmarks.stats import SectionResult, Target

NAME = "overlimit"
TITLE = "Over-limit key, Redis commands per request (target 10)"
POLICY = (
    "version: 1\n"
    "defaults: {key: 'header:X-API-Key'}\n"
    "routes:\n"
    "  - {match: 'GET /resource', limits: ['10/second; burst=40']}\n"
)
_CLIENT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval")
_OURS_STATS = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_flushall")


def _app(url: str, cache: int) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ratelimit_mw import RateLimitMiddleware

    async def resource(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/resource", resource)])
    app.add_middleware(RateLimitMiddleware,  # type: ignore[arg-type]  # see benchmarks/README.md
                       policies=POLICY, backend=url, over_limit_cache=cache,
                       socket_timeout=1.0)
    return app


async def _drive(app: Any, scopes: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"200": 0, "429": 0, "other": 0, "no_headers": 0}
    body = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return body

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = str(message["status"])
            counts[status if status in counts else "other"] += 1
            if not any(k == b"x-ratelimit-remaining" for k, _ in message.get("headers", ())):
                counts["no_headers"] += 1

    for template in scopes:
        await app(dict(template, state={}), receive, send)
    return counts


def _commands(client: Any) -> tuple[int, int]:
    stats = client.info("commandstats")
    sent = sum(int(stats.get(name, {}).get("calls", 0)) for name in _CLIENT_COMMANDS)
    total = sum(int(v.get("calls", 0)) for k, v in stats.items() if k not in _OURS_STATS)
    return sent, total - sent


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(20_000, 300)
    scopes = [http_scope(api_key="abuser" if i % 10 else f"user-{i}") for i in range(count)]
    url = ctx.redis().url
    for label, cache, kind in (("ours, over-limit cache on (default)", 10_000, "ours"),
                               ("ours, over_limit_cache=0", 0, "info")):
        client = ctx.redis_flush()
        try:
            app = _app(url, cache)
            started = time.perf_counter()
            before = _commands(client)
            counts = asyncio.run(_drive(app, scopes))
            after = _commands(client)
            elapsed = time.perf_counter() - started
        finally:
            client.close()
        sent = after[0] - before[0]
        inside = after[1] - before[1]
        result.sample(f"{label}: client commands per request", "cmd/req", kind=kind).values.append(sent / count)
        result.sample(f"{label}: script-internal commands per request", "cmd/req", kind="info").values.append(
            inside / count)
        result.sample(f"{label}: requests/s in-process", "req/s", kind="info").values.append(count / elapsed)
        result.extra[label] = {"requests": count, "evalsha": sent, "script_internal": inside, **counts}
        if counts["other"] or counts["no_headers"]:
            result.notes.append(f"{label}: {counts['other']} unexpected statuses, "
                                f"{counts['no_headers']} answers without headers (decided without Redis)")
        if cache:
            sample = result.get(f"{label}: client commands per request")
            result.targets.append(Target(
                10, "over-limit key: Redis round trips (EVALSHA) per request, 90% abusive traffic",
                sample.median, 0.15, "<=",
                detail=f"{sent:,} EVALSHA for {count:,} requests ({counts['200']:,} allowed, {counts['429']:,} "
                       f"limited); {inside / count:.2f} script-internal commands per request besides"))
    result.notes.append("the 10% of requests from new keys need one round trip each: 0.10 is the floor")
    return result
