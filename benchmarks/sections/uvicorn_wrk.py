"""Target 6: uvicorn (1 worker) under wrk, 32 connections: ours and slowapi vs bare.

Two server stacks, each with six servers of the same Starlette app
(``benchmarks/apps.py``) side by side on free ports: bare, bare plus the five
headers ours sends (fixed values, no limiting: what the headers alone cost the
server), ours on memory, ours on Redis, slowapi on memory, slowapi on Redis.

* uvicorn[standard]: httptools and uvloop, what uvicorn picks when they are
  installed and what production installs use. The stricter row: the fastest bare
  server, so the middleware's cost is the largest share of a request.
* Plain uvicorn (``--http h11 --loop asyncio``): what ``pip install uvicorn``
  alone brings. Its bare throughput here (8.0-8.9k req/s on 2026-12-03) is the
  issue's (7.7k), while uvicorn[standard] serves 31-32k: the stack the issue's
  figures match.

wrk (one thread, 32 connections) loads all twelve in turn, repeat after repeat
(every other repeat in reverse order), rotating ``X-API-Key`` over 1,000 clients.
For ours on Redis the server's count of script-internal state reads (HMGET of a
hashed time state, GET of a window key) is read around every run: the route has
one limit, so each check reads one state, and one read per request means no
request was decided without Redis (fail-open) and the figure is honest.
(EVALSHAs are fewer than requests: concurrent checks share a script call, see the
README.)
"""

from __future__ import annotations

from benchmarks.context import Context, missing_peer
from benchmarks.http_load import load, tool_name
from benchmarks.servers import PLAIN_UVICORN, Uvicorn
from benchmarks.stats import SectionResult

NAME = "uvicorn"
TITLE = "uvicorn (1 worker) + load generator, 32 connections, requests/s (target 6)"
CONNECTIONS = 32
KEYS = 1_000
#: Label suffix of the plain-uvicorn servers (a "(...)" tail: the table compares each
#: row with the baseline of the same tail).
PLAIN = " (plain uvicorn)"


def _commands(client: object) -> tuple[int, int]:
    """(state reads, EVALSHAs) the server ran so far: checks made, and round trips for them.

    A time state (gcra, token or leaky bucket) is a hash field read by HMGET; a window
    state a key read by GET.
    """
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    reads = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "hmget"))
    return (reads,
            int(stats.get("cmdstat_evalsha", {}).get("calls", 0)))


#: (label suffix, uvicorn options, what the target row says of the stack)
STACKS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("", (), "uvicorn[standard]: httptools, uvloop"),
    (PLAIN, PLAIN_UVICORN, "plain uvicorn: h11, asyncio; the issue's bare figure"),
)


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
    for suffix, options, _ in STACKS:
        for label, kind, variant, storage in variants:
            if variant == "slowapi" and (reason := missing_peer("slowapi")):
                if not suffix:
                    result.notes.append(f"{label}: skipped, {reason}")
                continue
            label += suffix
            log_name = "".join(c if c.isalnum() else "-" for c in label)
            server = Uvicorn("benchmarks.targets.starlette_env:app", {"BENCH_APP": variant, "BENCH_STORAGE": storage},
                             log_dir=ctx.workdir, name=log_name, options=options)
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
    redis_labels = {"ours, Redis" + suffix for suffix, _, _ in STACKS}
    non_2xx = 0
    checks_per_request: list[float] = []
    evalsha_per_request: list[float] = []
    for turn in range(repeats):
        for label, _, server in servers if turn % 2 == 0 else servers[::-1]:
            before = _commands(client) if label in redis_labels else (0, 0)
            measured = load(server.url, duration=duration, connections=CONNECTIONS, keys=KEYS, workdir=ctx.workdir)
            if label in redis_labels:
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
            f"ours, Redis (both stacks): {low:.3f}-{max(checks_per_request):.3f} checks in Redis per request"
            + (" (< 1: some requests were decided without Redis)" if low < 0.99 else "")
            + f"; {min(evalsha_per_request):.3f}-{max(evalsha_per_request):.3f} EVALSHA per request (coalesced)")
    for suffix, _, stack in STACKS:
        bare = "bare Starlette" + suffix
        result.add_ratio_target(6, f"uvicorn throughput, ours memory vs bare ({stack})", "ours, memory" + suffix,
                                bare, 0.90, ">=")
        result.add_ratio_target(6, f"uvicorn throughput, ours Redis vs bare ({stack})", "ours, Redis" + suffix,
                                bare, 0.75, ">=")
    return result
