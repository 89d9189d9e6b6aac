"""Where the time goes in OUR code: a sampling profile of one benchmark subject.

Usage::

    .venv/bin/python -m benchmarks.profile SUBJECT [--seconds 3] [--tree]

Subjects: ``inmem`` (Limiter.check, memory, 12,000 keys), ``asgi`` (Starlette +
RateLimitMiddleware in-process, allowed), ``wsgi`` (Flask + WSGIRateLimitMiddleware),
``redis-sync`` (Limiter.check on Redis), ``redis-async`` (64 concurrent acheck on
Redis), ``asgi-redis`` (the ASGI app on Redis, 32 requests in flight: what uvicorn
runs in target 6), ``asgi-parts`` (no profiler: the middleware's parts costed in
situ by stubbing them out), ``uvicorn-parts`` (the same under uvicorn and wrk, as
the server's CPU per request, plus idle latency on memory and Redis), ``redis-wait``
(no profiler: the demo app on uvicorn and Redis with timing probes, one request every
2 ms: the time to the Redis write, the wait, the time after the reply, and the
script's own time from ``INFO commandstats``), ``cold-parts`` (no profiler: the
app and the fast lane's parts per request, back to back and with the CPU caches
evicted before each request, as inside a server). Prints the
share of samples by package (ratelimit_mw, redis, starlette, asyncio...), then OUR
functions by self time and by total time, as a share of everything the subject did.
Uses pyinstrument (sampling, 1 ms), so the shares are not inflated by per-call
profiler overhead as cProfile's are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.apps import ALLOW, engine_of, starlette_app, stub_admit
from benchmarks.asgi_driver import http_scope
from benchmarks.servers import start_redis

__all__ = ["main"]

_PKG = os.sep + "ratelimit_mw" + os.sep


def _bucket(path: str) -> str:
    if _PKG in path and "site-packages" not in path:
        return "ratelimit_mw"
    for name in ("redis", "starlette", "flask", "werkzeug", "asyncio", "hiredis", "structlog", "benchmarks"):
        if f"{os.sep}{name}{os.sep}" in path:
            return name
    return "other (stdlib, builtins)"


def _walk(frame: Any, self_by: dict[str, float], total_by: dict[str, float], buckets: dict[str, float],
          stack: tuple[str, ...] = ()) -> None:
    path = frame.file_path or ""
    label = f"{frame.function} ({os.path.relpath(path) if path.startswith(os.getcwd()) else os.path.basename(path)}" \
            f":{frame.line_no})"
    ours = _PKG in path and "site-packages" not in path
    # self time: this frame's time minus its real children and its time spent awaiting
    own = frame.time
    for child in frame.children:
        if child.identifier != "[self]":
            own -= child.time
        if child.identifier in ("[await]", "[out-of-context]"):
            buckets["waiting (await: I/O, event loop idle)"] += child.time
    buckets[_bucket(path)] += own
    if ours:
        self_by[label] += own
        if label not in stack:  # count a recursive function's total once
            total_by[label] += frame.time
    for child in frame.children:
        if not child.is_synthetic:
            _walk(child, self_by, total_by, buckets, (*stack, label) if ours else stack)


def _report(session: Any, top: int, tree: bool) -> None:
    root = session.root_frame()
    if root is None:
        print("no samples")
        return
    total = root.time
    self_by: dict[str, float] = defaultdict(float)
    total_by: dict[str, float] = defaultdict(float)
    buckets: dict[str, float] = defaultdict(float)
    _walk(root, self_by, total_by, buckets)
    print(f"{total:.2f} s sampled")
    print("\nshare by package (self time):")
    for name, seconds in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / total:6.1%}  {name}")
    print(f"\nratelimit_mw functions by SELF time (top {top}):")
    for label, seconds in sorted(self_by.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds / total:6.1%}  {label}")
    print(f"\nratelimit_mw functions by TOTAL time, callees included (top {top}):")
    for label, seconds in sorted(total_by.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds / total:6.1%}  {label}")
    if tree:
        from pyinstrument.renderers import ConsoleRenderer

        print(ConsoleRenderer(unicode=False, color=False, show_all=False).render(session))


def _loop_sync(call: Callable[[int], Any], seconds: float, profiler: Any) -> Callable[[], None]:
    import time

    def spin(until: float, i: int = 0) -> int:
        while time.perf_counter() < until:
            for _ in range(200):
                call(i)
                i += 1
        return i

    def run() -> None:
        i = spin(time.perf_counter() + 0.3)  # warm-up: connections, scripts, caches
        profiler.start()
        spin(time.perf_counter() + seconds, i)
        profiler.stop()

    return run


def _subject(name: str, seconds: float, redis_url: str | None, profiler: Any) -> Callable[[], None]:
    """A callable that warms the subject up, then runs it for ``seconds`` under ``profiler``."""
    import time

    from ratelimit_mw import Limiter

    if name == "inmem":
        limiter = Limiter("memory://")
        quota = limiter.quota(ALLOW, scope="bench")
        keys = [f"client-{i}" for i in range(12_000)]
        return _loop_sync(lambda i: limiter.check(keys[i % 12_000], quota), seconds, profiler)
    if name == "redis-sync":
        limiter = Limiter(redis_url)
        quota = limiter.quota(ALLOW, scope="bench")
        return _loop_sync(lambda i: limiter.check(f"client-{i % 1000}", quota), seconds, profiler)
    if name == "wsgi":
        from benchmarks.apps import flask_app
        from benchmarks.sections.wsgi import _call, _environ

        app = flask_app("ours")
        template = _environ()
        return _loop_sync(lambda i: _call(app, template), seconds, profiler)
    if name not in ("asgi", "asgi-redis", "redis-async"):
        raise SystemExit(f"unknown subject {name!r}")
    concurrency = {"asgi": 1, "asgi-redis": 32, "redis-async": 64}[name]
    degraded = [0]

    async def main() -> None:
        if name == "redis-async":
            limiter = Limiter(redis_url)
            quota = limiter.quota(ALLOW, scope="bench")

            async def one(i: int) -> None:
                if (await limiter.acheck(f"client-{i % 1000}", quota)).degraded:
                    degraded[0] += 1
        else:
            app = starlette_app("ours", storage=redis_url or "memory://")
            body = {"type": "http.request", "body": b"", "more_body": False}
            scopes = [http_scope(api_key=f"client-{i}") for i in range(1000)]

            async def receive() -> dict[str, Any]:
                return body

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and not any(
                        k == b"x-ratelimit-remaining" for k, _ in message["headers"]):
                    degraded[0] += 1

            async def one(i: int) -> None:
                await app(dict(scopes[i % 1000], state={}), receive, send)

        async def worker(offset: int, width: int, until: float) -> None:
            i = offset
            while time.perf_counter() < until:
                await one(i)
                i += width

        # warm-up, ramping the concurrency up so the connection pool grows gradually
        for width in sorted({1, min(8, concurrency), concurrency}):
            until = time.perf_counter() + 0.3
            await asyncio.gather(*(worker(w, width, until) for w in range(width)))
        degraded[0] = 0
        profiler.start()
        until = time.perf_counter() + seconds
        await asyncio.gather(*(worker(w, concurrency, until) for w in range(concurrency)))
        profiler.stop()
        if degraded[0]:
            print(f"WARNING: {degraded[0]} checks decided without the backend during the profile")

    return lambda: asyncio.run(main())


def asgi_parts(repeats: int = 7, count: int = 5000) -> None:
    """The middleware's cost in situ, by difference: the same app with parts of it stubbed out.

    No profiler overhead: each variant is timed like the ``asgi`` section, and the
    differences of the medians are the parts' costs inside a real request.
    """
    import statistics

    from benchmarks.asgi_driver import run_requests

    loop = asyncio.new_event_loop()
    scopes = [http_scope()] * count
    fixed = stub_admit(starlette_app("ours"), "fixed")
    passthrough = stub_admit(starlette_app("ours"), "none")
    variants = {
        "bare Starlette": starlette_app("bare"),
        "ours": starlette_app("ours"),
        "ours, the plan returns a fixed verdict": fixed,
        "ours, no plan (pass-through)": passthrough,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for app in variants.values():
        run_requests(app, scopes[:500], loop)
    for _ in range(repeats):
        for name, app in variants.items():
            times[name].append(run_requests(app, scopes, loop) / count * 1e6)
    med = {name: statistics.median(values) for name, values in times.items()}
    print("== in-situ cost of the middleware's parts (us per request, medians)")
    for name, value in med.items():
        print(f"  {value:7.2f}  {name}")
    bare = med["bare Starlette"]
    injected = med["ours, the plan returns a fixed verdict"]
    print(f"  {med['ours'] - bare:7.2f}  added by the middleware in all")
    print(f"  {med['ours'] - injected:7.2f}  the plan (key, limiter check, header rendering)")
    print(f"  {injected - med['ours, no plan (pass-through)']:7.2f}  header injection (send wrapper)")
    print(f"  {med['ours, no plan (pass-through)'] - bare:7.2f}  the middleware layer itself "
          "(route lookup, call)")
    print(f"  budget for target 2 (>= 80% of bare): {bare / 0.8 - bare:.2f} us added")
    loop.close()


def cold_parts(repeats: int = 7, count: int = 3000, evict_mib: int = 4) -> dict[str, tuple[float, float]]:
    """Per-request costs hot (back to back) and cold (the CPU caches evicted before each
    request, by copying ``evict_mib`` MiB, as a server's own work between two requests
    does): the whole app, the route's plan, and the plan's parts one by one.

    Shows in process why a cost measured in a loop is several times larger inside
    uvicorn, and which parts grow the most. Returns ``{row: (hot_us, cold_us)}``.
    """
    import statistics

    from benchmarks.asgi_driver import _drop, _receive
    from ratelimit_mw.requestview import SCOPE

    source = bytearray(evict_mib << 20)
    target = bytearray(evict_mib << 20)
    scopes = [http_scope(api_key=f"client-{i % 1000}") for i in range(2000)]
    loop = asyncio.new_event_loop()
    apps = {"app: bare Starlette": starlette_app("bare"),
            "app: ours, the plan returns a fixed verdict": stub_admit(starlette_app("ours"), "fixed"),
            "app: ours": starlette_app("ours")}
    plan = engine_of(apps["app: ours"]).router(SCOPE, raw=True).plan(scopes[0]["method"], scopes[0]["path"])
    assert plan is not None and hasattr(plan, "key")
    decision = plan.check("header:x-api-key:client-1", 1)
    parts: dict[str, Callable[[Any], Any]] = {
        "plan": plan.decide,
        "plan: key": plan.key,
        "plan: check": lambda scope: plan.check("header:x-api-key:client-1", 1),
        "plan: render": lambda scope: plan.render(decision),
    }

    async def serve(app: Any, cold: bool) -> float:
        took = 0.0
        for i in range(count):
            if cold:
                target[:] = source
            scope = dict(scopes[i % 2000], state={})
            started = time.perf_counter()
            await app(scope, _receive, _drop)
            took += time.perf_counter() - started
        return took / count * 1e6

    def call(part: Callable[[Any], Any], cold: bool) -> float:
        took = 0.0
        for i in range(count):
            if cold:
                target[:] = source
            scope = scopes[i % 2000]
            started = time.perf_counter()
            part(scope)
            took += time.perf_counter() - started
        return took / count * 1e6

    rows: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in [*apps, *parts]}
    for evict in (False, True):
        for app in apps.values():
            loop.run_until_complete(serve(app, evict))  # warm-up
        for _ in range(repeats):
            for name, app in apps.items():
                rows[name][evict].append(loop.run_until_complete(serve(app, evict)))
            for name, part in parts.items():
                rows[name][evict].append(call(part, evict))
    loop.close()
    result = {name: (statistics.median(hots), statistics.median(colds)) for name, (hots, colds) in rows.items()}
    print(f"== per-request cost hot, and cold ({evict_mib} MiB copied before each request), us, medians")
    print(f"  {'hot':>7}  {'cold':>7}")
    for name, (hot, cold) in result.items():
        print(f"  {hot:7.2f}  {cold:7.2f}  {name}")
    bare_hot, bare_cold = result["app: bare Starlette"]
    ours_hot, ours_cold = result["app: ours"]
    print(f"  added by ours: {ours_hot - bare_hot:.2f} us hot, {ours_cold - bare_cold:.2f} us cold; "
          f"ratio to bare {bare_hot / ours_hot:.3f} hot, {bare_cold / ours_cold:.3f} cold")
    return result


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _idle_latency(port: int, count: int, gap: float) -> float:
    """Median seconds per request, one at a time on a kept connection, ``gap`` apart."""
    import http.client
    import statistics

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    took = []
    try:
        for i in range(count):
            time.sleep(gap)
            started = time.perf_counter()
            conn.request("GET", "/resource", headers={"X-API-Key": f"idle-{i % 500}"})
            conn.getresponse().read()
            took.append(time.perf_counter() - started)
    finally:
        conn.close()
    return statistics.median(took)


def uvicorn_parts(repeats: int = 3, seconds: float = 3.0) -> None:
    """The middleware's cost inside uvicorn, by difference, as CPU per request.

    Seven servers of the target-6 app under the target-6 load (32 connections, 1,000
    keys): bare, bare plus our five headers fixed, ours with the route's plan stubbed
    to a fixed verdict and to none (:func:`benchmarks.apps.stub_admit`), ours, and ours
    on Redis. For each: requests/s and the
    server's user and system CPU per request from ``/proc`` (Linux), medians of
    interleaved runs. Then, one request at a time
    2 ms apart (an idle server), the median latency of bare, ours on memory and ours
    on Redis: what waiting on Redis adds to a request when nothing else runs.
    """
    import statistics
    import tempfile

    from benchmarks.http_load import load
    from benchmarks.servers import Uvicorn

    if not sys.platform.startswith("linux"):
        raise SystemExit("uvicorn-parts reads /proc: Linux only")
    redis = start_redis()
    workdir = Path(tempfile.mkdtemp(prefix="uvicorn-parts-"))
    variants = {
        "bare Starlette": {"BENCH_APP": "bare"},
        "bare + our 5 headers, fixed": {"BENCH_APP": "bare-headers"},
        "ours, no plan (pass-through)": {"BENCH_APP": "ours", "BENCH_STUB": "none"},
        "ours, the plan returns a fixed verdict": {"BENCH_APP": "ours", "BENCH_STUB": "fixed"},
        "ours, memory": {"BENCH_APP": "ours"},
        "ours, Redis": {"BENCH_APP": "ours", "BENCH_STORAGE": redis.url},
    }
    servers: dict[str, Uvicorn] = {}
    try:
        for name, env in variants.items():
            servers[name] = Uvicorn("benchmarks.targets.starlette_env:app", env, log_dir=workdir,
                                    name=name.replace(" ", "").replace(",", "-"))
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
        for server in servers.values():
            server.wait_ready()
            load(server.url, duration=1.0, connections=32, keys=1000, workdir=workdir)  # warm-up
        for turn in range(repeats):
            order = list(servers.items())
            for name, server in order if turn % 2 == 0 else reversed(order):
                user, system = _cpu_seconds(server.proc.pid)
                measured = load(server.url, duration=seconds, connections=32, keys=1000, workdir=workdir)
                user2, system2 = _cpu_seconds(server.proc.pid)
                n = max(measured.requests, 1)
                rows[name].append((measured.requests_per_s, (user2 - user) / n * 1e6, (system2 - system) / n * 1e6))
        print("== uvicorn + wrk (32 connections): throughput and the server's CPU per request (medians)")
        print(f"  {'req/s':>8}  {'vs bare':>7}  {'user us':>7}  {'sys us':>6}  variant")
        bare = statistics.median(r[0] for r in rows["bare Starlette"])
        for name, values in rows.items():
            rate = statistics.median(r[0] for r in values)
            print(f"  {rate:8,.0f}  {rate / bare:7.2f}  {statistics.median(r[1] for r in values):7.1f}  "
                  f"{statistics.median(r[2] for r in values):6.1f}  {name}")
        print("== one request at a time, 2 ms apart: median latency (us)")
        for name in ("bare Starlette", "ours, memory", "ours, Redis"):
            port = servers[name].port
            print(f"  {statistics.median(_idle_latency(port, 600, 0.002) for _ in range(3)) * 1e6:8.0f}  {name}")
    finally:
        for server in servers.values():
            server.stop()
        redis.stop()


def redis_wait(count: int = 1500, gap: float = 0.002) -> None:
    """Where an idle request's time goes when its check goes to Redis.

    The demo app (``examples/fastapi_app.py``, two gcra limits) with timing probes
    (``benchmarks/targets/probed_demo.py``) on uvicorn and Redis, one request every
    ``gap`` seconds. Prints the latency the client sees, the split in the server
    (to the write of the check, the wait for Redis, from the reply to the response
    start) and what Redis itself reports for the script (``INFO commandstats``),
    next to a ``return 1`` script sent the same way.
    """
    import json
    import tempfile
    import urllib.request

    import redis as redis_py

    from benchmarks.servers import Uvicorn

    redis = start_redis()
    workdir = Path(tempfile.mkdtemp(prefix="redis-wait-"))
    server = Uvicorn("benchmarks.targets.probed_demo:app", {"REDIS_URL": redis.url}, log_dir=workdir, name="probed")
    client = redis_py.Redis.from_url(redis.url)
    try:
        server.wait_ready()
        _idle_latency(server.port, 300, gap / 2)  # warm-up
        probe = f"http://127.0.0.1:{server.port}/__probe"
        urllib.request.urlopen(probe, timeout=5).read()
        client.config_resetstat()
        seen = _idle_latency(server.port, count, gap)
        rows = json.loads(urllib.request.urlopen(probe, timeout=5).read())
        script = client.info("commandstats").get("cmdstat_evalsha", {})
        sha = client.script_load("return 1")
        client.config_resetstat()
        for _ in range(count // 3):
            time.sleep(gap)
            client.evalsha(sha, 0)
        trivial = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        client.close()
        server.stop()
        redis.stop()

    def spread(values: list[float]) -> str:
        ordered = sorted(values)
        at = [ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6 for q in (0.5, 0.9, 0.99)]
        return f"{at[0]:7.0f} {at[1]:7.0f} {at[2]:7.0f}"

    split = [r for r in rows if r[0] is not None]
    print(f"== the demo app on uvicorn + Redis, one request every {gap * 1000:g} ms ({count} requests)")
    print(f"  client-observed median: {seen * 1e6:.0f} us")
    print(f"  in the server ({len(split)} of {len(rows)} requests split)      p50     p90     p99 (us)")
    for i, label in enumerate(("entry -> check written to Redis", "waiting for Redis's reply",
                               "reply -> response start (app)", "entry -> response start")):
        print(f"  {label:42} {spread([r[i] for r in split])}")
    print("  Redis's own time per EVALSHA (INFO commandstats, usec_per_call):")
    print(f"    the demo route's script: {script.get('usec_per_call', float('nan')):.1f} us "
          f"({script.get('calls', 0)} calls); 'return 1' sent the same way: "
          f"{trivial.get('usec_per_call', float('nan')):.1f} us")
    if len(split) < len(rows) / 2:
        print("  WARNING: most checks were sent in batches; the split covers only lone ones")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subject", choices=["inmem", "asgi", "wsgi", "redis-sync", "redis-async", "asgi-redis",
                                            "asgi-parts", "uvicorn-parts", "redis-wait", "cold-parts"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    args = parser.parse_args(argv)
    if args.subject == "asgi-parts":
        asgi_parts()
        return 0
    if args.subject == "uvicorn-parts":
        uvicorn_parts()
        return 0
    if args.subject == "redis-wait":
        redis_wait()
        return 0
    if args.subject == "cold-parts":
        cold_parts()
        return 0
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pip install pyinstrument", file=sys.stderr)
        return 2
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115
    redis = start_redis() if "redis" in args.subject else None
    try:
        profiler = Profiler(interval=0.001, async_mode="enabled")
        _subject(args.subject, args.seconds, redis.url if redis else None, profiler)()
        print(f"== profile: {args.subject}")
        _report(profiler.last_session, args.top, args.tree)
    finally:
        if redis is not None:
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
