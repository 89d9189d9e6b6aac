"""Target 6: uvicorn (1 worker) under wrk, 32 connections: ours and slowapi vs bare.

Six servers of the same Starlette app (``benchmarks/apps.py``) run side by side
on free ports: bare, bare plus the five headers ours sends (fixed values, no
limiting: what the headers alone cost the server), ours on memory, ours on Redis,
slowapi on memory, slowapi on Redis. wrk (one thread, 32 connections) loads them in turn, repeat after repeat,
rotating ``X-API-Key`` over 1,000 clients. For ours on Redis the server's count
of script-internal state reads (HMGET of a hashed time state, GET of a window
key) is read around every run: the route has one limit, so each check reads one
state, and one read per request means no request was decided without Redis
(fail-open) and the figure is honest. (EVALSHAs are fewer than
requests: concurrent checks share a script call, see the README.)
"""

from __future__ import annotations

from benchmarks.context import Context, missing_peer
from benchmarks.http_load import load, tool_name
from benchmarks.servers import Uvicorn
from benchmarks.stats import SectionResult

NAME = "uvicorn"
TITLE = "uvicorn (1 worker) + load generator, 32 connections, requests/s (target 6)"
CONNECTIONS = 32
KEYS = 1_000


def _commands(client: object) -> tuple[int, int]:
    """(state reads, EVALSHAs) the server ran so far: checks made, and round trips for them.

    A time state (gcra, token or leaky bucket) is a hash field read by HMGET; a window
    state a key read by GET.
    """
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    reads = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "hmget"))
    return (reads,
            int(stats.get("cmdstat_evalsha", {}).get("calls", 0)))


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    redis_url = ctx.redis().url
    client = ctx.redis_flush()
    ctx.stack.callback(client.close)
    tool = tool_name()
    result.extra["load_generator"] = tool
    result.notes.append(f"load generator: {tool}; {CONNECTIONS} connections, {KEYS:,} API keys round-robin")
    variants = [
        ("bare Starlette", "baseline", "bare", "memory://"),
        ("bare + our 5 headers, fixed", "info", "bare-headers", "memory://"),
        ("ours, memory", "ours", "ours", "memory://"),
        ("ours, Redis", "ours", "ours", redis_url),
        ("slowapi, memory", "peer", "slowapi", "memory://"),
        ("slowapi, Redis", "peer", "slowapi", redis_url),
    ]
    servers: list[tuple[str, str, Uvicorn]] = []
    for label, kind, variant, storage in variants:
        if variant == "slowapi" and (reason := missing_peer("slowapi")):
            result.notes.append(f"{label}: skipped, {reason}")
            continue
        server = Uvicorn("benchmarks.targets.starlette_env:app", {"BENCH_APP": variant, "BENCH_STORAGE": storage},
                         log_dir=ctx.workdir, name=label.replace(" ", "").replace(",", "-"))
        ctx.stack.callback(server.stop)
        servers.append((label, kind, server))
    for _, _, server in servers:
        server.wait_ready()
    duration = 1.0 if ctx.smoke else 4.0
    repeats = 1 if ctx.smoke else min(ctx.repeats, 3)
    for _, _, server in servers if not ctx.smoke else ():  # warm-up: first requests, pools
        load(server.url, duration=1.0, connections=CONNECTIONS, keys=KEYS, workdir=ctx.workdir)
    samples = {label: result.sample(label, "req/s", kind=kind) for label, kind, _ in servers}
    p99 = {label: result.sample(f"{label}: p99 latency", "ms", kind="info") for label, _, _ in servers}
    non_2xx = 0
    checks_per_request: list[float] = []
    evalsha_per_request: list[float] = []
    for _ in range(repeats):
        for label, _, server in servers:
            before = _commands(client) if label == "ours, Redis" else (0, 0)
            measured = load(server.url, duration=duration, connections=CONNECTIONS, keys=KEYS, workdir=ctx.workdir)
            if label == "ours, Redis":
                after = _commands(client)
                checks_per_request.append((after[0] - before[0]) / max(measured.requests, 1))
                evalsha_per_request.append((after[1] - before[1]) / max(measured.requests, 1))
            samples[label].values.append(measured.requests_per_s)
            p99[label].values.append(measured.p99_ms)
            non_2xx += measured.non_2xx
    for _, _, server in servers:
        server.stop()
    result.extra["non_2xx_responses"] = non_2xx
    result.extra["ours_redis_checks_per_request"] = checks_per_request
    result.extra["ours_redis_evalsha_per_request"] = evalsha_per_request
    if non_2xx:
        result.notes.append(f"{non_2xx} non-2xx responses during the timed runs (expected none)")
    if checks_per_request:
        low = min(checks_per_request)
        result.notes.append(
            f"ours, Redis: {low:.3f}-{max(checks_per_request):.3f} checks in Redis per request"
            + (" (< 1: some requests were decided without Redis)" if low < 0.99 else "")
            + f"; {min(evalsha_per_request):.3f}-{max(evalsha_per_request):.3f} EVALSHA per request (coalesced)")
    result.add_ratio_target(6, "uvicorn throughput, ours memory vs bare", "ours, memory", "bare Starlette", 0.90, ">=")
    result.add_ratio_target(6, "uvicorn throughput, ours Redis vs bare", "ours, Redis", "bare Starlette", 0.75, ">=")
    return result
