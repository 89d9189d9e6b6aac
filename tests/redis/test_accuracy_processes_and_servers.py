"""Accuracy under contention from every side: 8 worker processes calling the limiter
directly and 2 uvicorn servers running the ASGI middleware share one real Redis and
race on the same keys, for every algorithm; admissions never exceed what the
algorithm guarantees.

One race runs for all rows at once (module fixture); each row is then its own test.
Every request's time is the Redis server's ``TIME``, so the run lies in ``[t0, t1]``,
two ``TIME`` readings taken before the start signal and after every participant has
stopped. The bound each algorithm guarantees over that interval, from a fresh state:

* ``gcra``, ``token_bucket``: ``capacity + floor((t1 - t0) / interval)``, the whole
  bucket plus what refills during the run;
* ``leaky_bucket``: ``1 + floor((t1 - t0 + max_delay) / interval)``: admitted requests
  leave the queue one ``interval`` apart, the first no earlier than ``t0`` and the last
  no later than ``t1 + max_delay``;
* ``fixed_window``, ``sliding_window``: ``limit`` per aligned window the run touches
  (the sliding window's current counter alone never exceeds ``limit``);
* ``sliding_log``: ``limit`` in any ``period``, so ``limit * (1 + floor((t1 - t0) / period))``.

``quota`` rows use a week, so nothing refills and no window turns over: the bound is
the limit itself, and as the offered load is far above it, admissions must equal it
exactly (fewer would mean a check was counted but refused). ``rate`` rows refill many
times during the run, so the race also covers refills and window turnovers.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratelimit_mw.core.rates import ALGORITHMS, Rule, parse_rate
from ratelimit_mw.limiter import Limiter
from tests.redis.accuracy_worker import Target, direct_worker
from tests.support.http_servers import http_servers
from tests.support.redis_servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES = 8
SERVERS = 2
PER_SERVER = 1  # requests per (row, key) and round to each server, against one check per worker
ROUNDS = 20  # every participant checks every (row, key) once per round, in step
KEYS = ["alice", "bob"]

#: (row id, rate with its algorithm); the route and the direct calls share scope "acc-<id>".
#: A round offers each key 10 requests (8 direct, 2 over HTTP); quotas that are not a
#: multiple of 10 make the last admissions a contest within one round.
ROWS: list[tuple[str, str]] = [
    ("gcra-quota", "47/week; algorithm=gcra"),
    ("gcra-rate", "10/second; burst=5; algorithm=gcra"),
    ("token_bucket-quota", "20/week; burst=53; algorithm=token_bucket"),
    ("token_bucket-rate", "10/second; burst=5; algorithm=token_bucket"),
    # a shaping meter: the middleware holds each admitted request up to max_delay
    ("leaky_bucket-rate", "10/second; max_delay=100ms; algorithm=leaky_bucket"),
    ("fixed_window-quota", "47/week; algorithm=fixed_window"),
    ("fixed_window-rate", "10/second; algorithm=fixed_window"),
    ("sliding_window-quota", "45/week; algorithm=sliding_window"),
    ("sliding_window-rate", "10/second; algorithm=sliding_window"),
    ("sliding_log-quota", "43/week; algorithm=sliding_log"),
    ("sliding_log-rate", "10/second; algorithm=sliding_log"),
]
TARGETS: list[Target] = [(row, rate, f"acc-{row}") for row, rate in ROWS]


def bound(rule: Rule, t0: float, t1: float) -> int:
    """Most requests ``rule`` may admit for one key from a fresh state within ``[t0, t1]``."""
    span = t1 - t0
    slack = 1e-6  # the algorithms' time tolerance (EPS)
    if rule.algorithm in ("gcra", "token_bucket"):
        return rule.capacity + math.floor((span + slack) / rule.interval)
    if rule.algorithm == "leaky_bucket":
        assert rule.max_delay is not None
        return 1 + math.floor((span + rule.max_delay + slack) / rule.interval)
    if rule.algorithm in ("fixed_window", "sliding_window"):
        windows = math.floor(t1 / rule.period) - math.floor(t0 / rule.period) + 1
        return rule.limit * windows
    if rule.algorithm == "sliding_log":
        return rule.limit * (1 + math.floor(span / rule.period))
    raise AssertionError(f"no bound stated for {rule.algorithm}: add it here and in docs/redis.md")


def _policies() -> str:
    lines = [
        "version: 1",
        "defaults: {key: [header:X-Client], on_backend_error: deny}",
        "routes:",
    ]
    for row, rate, scope in TARGETS:
        lines += [f'  - match: "GET /acc/{row}"', f'    limits: ["{rate}"]', f"    scope: {scope}"]
    return "\n".join(lines) + "\n"


@dataclass
class Race:
    """What every participant reported, per ``"row|key"``."""

    t0: float
    t1: float
    direct: dict[str, list[int]]  # admitted, checks, degraded
    http: dict[str, Counter[int]]  # status -> count
    http_errors: list[str]

    def admitted(self, name: str) -> int:
        return self.direct[name][0] + self.http[name][200]


def _server_time(server: RedisServer) -> float:
    seconds, micros = server.command("TIME")
    return int(seconds) + int(micros) / 1e6


async def _drive_http(urls: list[str], rounds: int, barrier: Any) -> tuple[dict[str, Counter[int]], list[str]]:
    """Each round, ``PER_SERVER`` requests per (row, key) to every server, all at once."""
    statuses = {f"{row}|{key}": Counter[int]() for row, _ in ROWS for key in KEYS}
    requests = [(row, key, url) for row, _ in ROWS for key in KEYS for url in urls for _ in range(PER_SERVER)]
    errors: list[str] = []
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:

        async def one(row: str, key: str, url: str) -> None:
            try:
                response = await client.get(f"{url}/acc/{row}", headers={"X-Client": key})
            except httpx.HTTPError as exc:  # admitted nothing: reported, and the test fails on it
                errors.append(f"{row}|{key}: {type(exc).__name__}")
                return
            statuses[f"{row}|{key}"][response.status_code] += 1

        await asyncio.to_thread(barrier.wait, 60)
        for _ in range(rounds):
            await asyncio.gather(*(one(*request) for request in requests))
            await asyncio.to_thread(barrier.wait, 60)
    return statuses, errors


@pytest.fixture(scope="module")
def race(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    if redis_server.paused:
        redis_server.resume()
    if not redis_server.running:
        redis_server.restart(empty=True)
    redis_server.flushall()
    url = redis_server.url
    work = tmp_path_factory.mktemp("accuracy")
    policies = work / "policies.yaml"
    policies.write_text(_policies())
    env = {"RATELIMIT_POLICIES": str(policies), "REDIS_URL": url}
    argv = ["uvicorn", "tests.redis.accuracy_app:app", "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning", "--no-access-log"]
    specs = [(argv, work / f"server-{n}.log", env) for n in range(SERVERS)]

    ctx = multiprocessing.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(PROCESSES + 1)  # the workers and the HTTP driver
    workers = [
        ctx.Process(target=direct_worker,
                    args=(url, "sync" if n % 2 == 0 else "async", TARGETS, KEYS, ROUNDS, barrier, out))
        for n in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    try:
        with http_servers(specs, ready_path="/") as servers:
            urls = [s.url for s in servers]
            _same_bucket_for_both_sides(url, urls[0], work)
            t0 = _server_time(redis_server)  # before the barrier lets anyone start
            http, errors = asyncio.run(_drive_http(urls, ROUNDS, barrier))
            direct: dict[str, list[int]] = {}
            for _ in workers:
                for name, counts in out.get(timeout=60).items():
                    total = direct.setdefault(name, [0, 0, 0])
                    for i, value in enumerate(counts):
                        total[i] += value
            t1 = _server_time(redis_server)
    finally:
        barrier.abort()  # a failed run releases the workers at once
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
                w.join()
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    yield Race(t0, t1, direct, http, errors)


def _same_bucket_for_both_sides(url: str, server_url: str, work: Path) -> None:
    """One request through the middleware shows in the direct limiter's bucket: the
    direct workers' key (``header:x-client:<value>``) and scope name the route's bucket.
    Without this the race would compare two separate buckets (and fail at twice the limit)."""
    row, rate = ROWS[0]
    assert httpx.get(f"{server_url}/acc/{row}", headers={"X-Client": "probe"}, timeout=10).status_code == 200
    limiter = Limiter(url, socket_timeout=5.0)
    try:
        remaining = limiter.peek("header:x-client:probe", rate, scope=f"acc-{row}").remaining
    finally:
        limiter.close()
    assert remaining == parse_rate(rate).capacity - 1, "the direct key does not name the middleware's bucket"


def test_every_algorithm_has_rows() -> None:
    covered = {parse_rate(rate).algorithm for _, rate in ROWS}
    assert covered == set(ALGORITHMS)


def test_the_race_reached_redis_everywhere(race: Race) -> None:
    """Every check was decided by Redis, no request failed, and both sides took part."""
    assert race.http_errors == []
    assert sum(d[2] for d in race.direct.values()) == 0, "some direct checks were decided without Redis"
    for name, statuses in race.http.items():
        assert set(statuses) <= {200, 429}, (name, statuses)
    assert sum(d[1] for d in race.direct.values()) > 0
    assert sum(sum(s.values()) for s in race.http.values()) > 0


@pytest.mark.parametrize(("row", "rate"), [pytest.param(row, rate, id=row) for row, rate in ROWS])
@pytest.mark.parametrize("key", KEYS)
def test_admitted_never_exceed_the_bound(race: Race, row: str, rate: str, key: str) -> None:
    rule = parse_rate(rate)
    name = f"{row}|{key}"
    admitted = race.admitted(name)
    offered = race.direct[name][1] + sum(race.http[name].values())
    most = bound(rule, race.t0, race.t1)
    direct, http = race.direct[name], race.http[name]
    detail = (f"{name}: {admitted} admitted of {offered} offered (direct {direct[0]}/{direct[1]}, "
              f"http {http[200]}/{sum(http.values())}), bound {most} over {race.t1 - race.t0:.2f}s")
    assert admitted <= most, detail
    # more requests than the bound allows were offered, so a limiter admitting too many fails here
    assert offered > most, f"not saturated, the bound was not tested: {detail}"
    if row.endswith("-quota") and most == rule.capacity:  # a week: nothing refilled, no window turned over
        assert admitted == most, detail
