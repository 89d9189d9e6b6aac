"""The failure matrix: every fault on real servers, for every failure policy, measured.

Extends ``test_redis_faults.py`` (which proves the decisions for each mode, sync and
async) with the faults it does not cover: a slow Redis (a busy Lua script, ``CLIENT
PAUSE``) and a 3-master Cluster with replicas losing a master (``CLUSTER FAILOVER`` on
its replica, the master killed, the master stopped with SIGSTOP until its replica
takes over) or answering late (``CLIENT PAUSE`` on the master). The standalone faults
it shares with ``test_redis_faults.py`` (killed, paused, restarted empty, refused at
start-up) are measured here too. Each row drives async checks through the fault
and measures time to detect (first degraded decision), time to recover after the
fault clears, and the checks decided without the backend. Each row also requires:
no exception, no check beyond the budget, one log line per breaker state change,
the breaker gauge back at 0, and exact limits again after recovery.

The measured rows are written to ``docs/failure-matrix.md`` when the whole matrix
ran and ``RATELIMIT_WRITE_DOCS=1`` is set (CI runs the matrix without touching the
tree); the page says which engine produced them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from ratelimit_mw.limiter import Limiter
from ratelimit_mw.metrics import RateLimitMetrics
from tests.support.redis_servers import RedisCluster, RedisServer, ServerBinary, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faultmatrix]

MODES = ("allow", "deny", "memory")
SOCKET_TIMEOUT = 0.05
BUDGET = 1.0  # no check may take longer (hang detector; the socket timeout is 50 ms)
DETECT_BOUND = 5.0
RECOVER_BOUND = 15.0
FAULT_HOLD = 0.4  # checks keep coming this long after detection, before the fault clears
PAGE = Path(__file__).resolve().parents[2] / "docs" / "failure-matrix.md"
ROWS: dict[tuple[str, str, str], Row] = {}


@dataclass
class Row:
    """One measured row of the matrix."""

    topology: str
    fault: str
    mode: str
    detect: float | None
    recover: float
    without_backend: int
    checks: int
    slowest: float


class Fault:
    """How to inflict one fault and how to clear it, on a standalone server or a cluster."""

    def __init__(self, apply: Callable[[], None], clear: Callable[[], None], may_go_unnoticed: bool = False,
                 at_start_up: bool = False) -> None:
        self.apply = apply
        self.clear = clear
        self.may_go_unnoticed = may_go_unnoticed
        #: the fault is there before the first check (nothing listens yet): no healthy start
        self.at_start_up = at_start_up


def _busy_script(server: RedisServer, seconds: float) -> threading.Thread:
    """Runs a Lua script that busy-waits ``seconds`` of server time: Redis answers no one meanwhile."""
    script = (
        "local t = redis.call('TIME') local stop = t[1] * 1e6 + t[2] + tonumber(ARGV[1]) "
        "while true do t = redis.call('TIME') if t[1] * 1e6 + t[2] >= stop then break end end return 1"
    )
    thread = threading.Thread(
        target=lambda: server.command("EVAL", script, 0, int(seconds * 1e6), timeout=seconds + 10), daemon=True
    )
    thread.start()
    return thread


def standalone_fault(name: str, server: RedisServer) -> Fault:
    busy: list[threading.Thread] = []
    if name == "killed":
        return Fault(server.kill, lambda: server.restart(empty=True))
    if name == "paused-sigstop":
        return Fault(server.pause, server.resume)
    if name == "restarted-empty":
        return Fault(lambda: server.restart(empty=True), lambda: None, may_go_unnoticed=True)
    if name == "slowed-busy-script":
        return Fault(lambda: busy.append(_busy_script(server, 1.5)), lambda: busy[0].join(20))
    if name == "slowed-client-pause":
        return Fault(lambda: server.command("CLIENT", "PAUSE", 1500, "ALL"), lambda: time.sleep(1.6))
    if name == "refused-at-start-up":
        return Fault(lambda: None, server.start, at_start_up=True)
    raise AssertionError(name)


STANDALONE_FAULTS = ["killed", "paused-sigstop", "restarted-empty", "slowed-busy-script", "slowed-client-pause",
                     "refused-at-start-up"]
MASTER_FAULTS = ["failover-command", "master-killed", "master-paused-sigstop", "master-slowed-client-pause",
                 "master-restarted-empty"]
#: faults after which the replica is the master
PROMOTING = {"failover-command", "master-killed", "master-paused-sigstop"}
CLUSTER_FAULTS = [*MASTER_FAULTS, "refused-at-start-up"]


def _limiter(url: str, mode: str) -> Limiter:
    return Limiter(url, on_backend_error=mode, breaker_threshold=2, breaker_recovery=0.2, over_limit_cache=0,
                   socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT)


class Driver:
    """Async checks, timed one by one, with the counts a row needs."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.slowest = 0.0
        self.checks = 0
        self.degraded = 0

    async def check(self, key: str, rule: str = "1000/second") -> Any:
        start = time.perf_counter()
        decision = await self.limiter.acheck(key, rule)
        elapsed = time.perf_counter() - start
        self.slowest = max(self.slowest, elapsed)
        self.checks += 1
        self.degraded += decision.degraded
        assert elapsed <= BUDGET, f"a check took {elapsed:.3f}s"
        return decision

    async def until(self, key: str, *, degraded: bool, bound: float) -> float | None:
        """Seconds until a check's ``degraded`` equals ``degraded`` (``None``: not within ``bound``)."""
        start = time.monotonic()
        while time.monotonic() - start < bound:
            if (await self.check(key)).degraded == degraded:
                return time.monotonic() - start
            await asyncio.sleep(0.01)
        return None


async def _run_row(limiter: Limiter, fault: Fault, mode: str, key: str) -> tuple[float | None, float, Driver]:
    run = Driver(limiter)
    if not fault.at_start_up:
        assert not (await run.check(key)).degraded
    await asyncio.to_thread(fault.apply)
    detect = await run.until(key, degraded=True, bound=2.0 if fault.may_go_unnoticed else DETECT_BOUND)
    if detect is None:
        assert fault.may_go_unnoticed, "the fault was never detected"
    else:
        hold_until = time.monotonic() + FAULT_HOLD
        while time.monotonic() < hold_until:
            decision = await run.check(key)
            if decision.degraded and mode == "deny":
                assert not decision.allowed
            if decision.degraded and mode == "allow":
                assert decision.allowed
            await asyncio.sleep(0.01)
    clear = asyncio.create_task(asyncio.to_thread(fault.clear))
    while not clear.done():  # traffic continues while the fault clears
        await run.check(key)
        await asyncio.sleep(0.01)
    await clear
    recover = await run.until(key, degraded=False, bound=RECOVER_BOUND)
    assert recover is not None, f"no recovery within {RECOVER_BOUND}s after the fault cleared"
    # Recovery is seen on one key's node; a client may still hold a stale connection to
    # another node (a Cluster after failover), which fails one check there, degraded by the
    # failure policy. Limits must be exact once every node answers: 8 fresh keys in a row.
    assert await _settled(run, bound=RECOVER_BOUND), "the backend never answered 8 fresh keys in a row"
    exact_key = f"exact-{uuid.uuid4().hex}"
    decisions = [await run.check(exact_key, "3/minute") for _ in range(4)]
    assert [(d.allowed, d.degraded) for d in decisions] == [(True, False)] * 3 + [(False, False)], decisions
    return detect, recover, run


async def _settled(run: Driver, *, bound: float, in_a_row: int = 8) -> bool:
    """Whether ``in_a_row`` checks of fresh keys (spread over the slots) pass without the
    failure policy, within ``bound`` seconds."""
    deadline, streak = time.monotonic() + bound, 0
    while time.monotonic() < deadline:
        streak = 0 if (await run.check(f"settle-{uuid.uuid4().hex}")).degraded else streak + 1
        if streak >= in_a_row:
            return True
        await asyncio.sleep(0.01)
    return False


def _check_signals(logs: list[dict[str, Any]], registry: CollectorRegistry, sustained: bool) -> None:
    """One log line per breaker state change, and the gauge back at closed.

    A sustained fault must open the breaker; a brief one (a restart, a graceful
    failover) may fail one check or two, below the breaker's threshold.
    """
    changes = [e for e in logs if e["event"] in ("breaker_opened", "breaker_closed", "breaker_state_changed")]
    for before, after in itertools.pairwise(changes):
        assert before["new"] != after["new"], f"a state change logged twice: {changes}"
        assert after["old"] == before["new"], changes
    if sustained:
        assert any(e["event"] == "breaker_opened" for e in changes), changes
    if changes:
        assert changes[-1]["new"] == "closed", changes
    gauge = registry.get_sample_value("ratelimit_breaker_state")
    assert gauge == 0, gauge


def _record(row: Row) -> None:
    ROWS[(row.topology, row.fault, row.mode)] = row
    complete = len(ROWS) == (len(STANDALONE_FAULTS) + len(CLUSTER_FAULTS)) * len(MODES)
    if complete and os.environ.get("RATELIMIT_WRITE_DOCS") == "1":
        _write_page()


def _write_page() -> None:
    engine = os.environ.get("RATELIMIT_TEST_REDIS_SERVER", "default")
    lines = [
        "# Failure behaviour, measured",
        "",
        "Generated by `RATELIMIT_WRITE_DOCS=1 pytest -m faultmatrix` (`tests/redis/test_failure_matrix.py`) on real",
        "servers over",
        f"loopback (engine: `{engine}`), with `socket_timeout=0.05`, `breaker_threshold=2`,",
        "`breaker_recovery=0.2` and async checks every ~10 ms. Figures vary with the machine; what the",
        "test asserts is in the last column.",
        "",
        "- **detect**: seconds from the fault (for `refused-at-start-up`, from the first check, made while",
        "  nothing listens yet) to the first check decided without Redis (`-`: never noticed).",
        "- **recover**: seconds from the fault having cleared (server started, restarted or resumed, script",
        "  or pause over, replica promoted) to the first check decided by Redis again; `0.00` when the",
        "  breaker's probe had already succeeded while the fault cleared.",
        "- **without backend**: checks decided by the failure policy (of **checks** during the row).",
        "- **slowest**: the slowest single check, in milliseconds.",
        "",
        "| topology | fault | on_backend_error | detect (s) | recover (s) | without backend | checks | slowest (ms) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS.values():
        detect = "-" if row.detect is None else f"{row.detect:.2f}"
        lines.append(
            f"| {row.topology} | {row.fault} | `{row.mode}` | {detect} | {row.recover:.2f} | "
            f"{row.without_backend} | {row.checks} | {row.slowest * 1000:.0f} |"
        )
    lines += [
        "",
        "Every row also asserts: no exception and no check slower than 1 s; while degraded, `allow`",
        "admits and `deny` refuses (`tests/redis/test_redis_faults.py` checks `memory`'s per-process",
        "limits, and sync checks, for the standalone faults); one `breaker_opened`/`breaker_closed` log",
        "line per state change; the",
        "`ratelimit_breaker_state` gauge back at 0; and a fresh client limited to `3/minute` gets",
        "exactly 3 admissions from Redis after recovery.",
        "",
        "A standalone `restarted-empty` server or a `CLUSTER FAILOVER` may go unnoticed (`-`): the client",
        "reconnects or follows the MOVED redirection within one check.",
        "",
        "In the Cluster rows the fault hits the master owning the checked key. `master-paused-sigstop`",
        "stops it (`SIGSTOP`) longer than the 1 s node timeout, so the cluster promotes its replica; the",
        "fault clears when the replica is master and the old one is resumed (it rejoins as a replica).",
        "`master-slowed-client-pause` holds its clients for 1.5 s (`CLIENT PAUSE ALL`); the cluster bus",
        "is not paused, so nothing fails over and the same master answers again.",
        "`master-restarted-empty` restarts it at once with its cluster configuration but no data: it",
        "is back within the node timeout, so nothing fails over, but it reports `cluster_state:fail` and",
        "refuses its slots until it has rejoined (about 2 s), so the row is detected; its clients then",
        "start with a whole quota.",
        "",
    ]
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text("\n".join(lines))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault_name", STANDALONE_FAULTS)
def test_standalone_fault(redis_server_binary: ServerBinary, fault_name: str, mode: str) -> None:
    server = RedisServer(port=free_port(), binary=redis_server_binary.path, name="matrix")
    if fault_name != "refused-at-start-up":
        server.start()
    registry = CollectorRegistry()
    limiter = _limiter(server.url, mode)
    RateLimitMetrics(registry=registry).attach(limiter)

    async def main() -> tuple[float | None, float, Driver]:
        try:
            return await _run_row(limiter, standalone_fault(fault_name, server), mode, "client-a")
        finally:
            await limiter.aclose()

    try:
        with capture_logs() as logs:
            detect, recover, run = asyncio.run(main())
    finally:
        server.stop()
    _check_signals(logs, registry, fault_name not in ("restarted-empty",))
    _record(Row("standalone", fault_name, mode, detect, recover, run.degraded, run.checks, run.slowest))


@pytest.fixture
def replicated_cluster(redis_server_binary: ServerBinary) -> Iterator[RedisCluster]:
    cluster = RedisCluster(masters=3, replicas_per_master=1, binary=redis_server_binary.path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault_name", MASTER_FAULTS)
def test_cluster_master_failover(replicated_cluster: RedisCluster, fault_name: str, mode: str) -> None:
    cluster = replicated_cluster
    registry = CollectorRegistry()
    limiter = _limiter(cluster.url, mode)
    RateLimitMetrics(registry=registry).attach(limiter)
    key = "client-a"
    storage_key = limiter.storage_keys(key, limiter.quota("1000/second", None))[0]
    client = cluster.client()
    try:
        owner = client.get_node_from_key(storage_key)
        master = next(m for m in cluster.masters if m.port == owner.port)
        replica = cluster.replicas[cluster.masters.index(master)]
    finally:
        client.close()
    if fault_name == "failover-command":
        fault = Fault(lambda: replica.command("CLUSTER", "FAILOVER"), lambda: _wait_role(replica, "master"),
                      may_go_unnoticed=True)
    elif fault_name == "master-killed":
        fault = Fault(master.kill, lambda: _wait_role(replica, "master"))
    elif fault_name == "master-paused-sigstop":
        # stopped longer than the node timeout: the cluster promotes the replica, and the
        # old master, resumed, rejoins as its replica; the fault has cleared once it has
        # (until then it may still answer for its old slots, and a check may fail once)
        fault = Fault(master.pause, lambda: (_wait_role(replica, "master"), master.resume(),
                                             _wait_role(master, "slave")))
    elif fault_name == "master-slowed-client-pause":
        # CLIENT PAUSE stops clients, not the cluster bus: no failover, the same master answers late
        fault = Fault(lambda: master.command("CLIENT", "PAUSE", 1500, "ALL"), lambda: time.sleep(1.6))
    else:
        # back within the node timeout with its cluster config but no data: no failover, but the
        # node refuses its slots until it has rejoined (the rejoin delay, 2 node timeouts)
        fault = Fault(lambda: master.restart(empty=True), lambda: None)

    async def main() -> tuple[float | None, float, Driver]:
        try:
            return await _run_row(limiter, fault, mode, key)
        finally:
            await limiter.aclose()

    with capture_logs() as logs:
        detect, recover, run = asyncio.run(main())
    assert (_role(replica) == "master") is (fault_name in PROMOTING)  # ROLE says "slave" for a replica
    _check_signals(logs, registry, not fault.may_go_unnoticed)
    _record(Row("cluster 3+3", fault_name, mode, detect, recover, run.degraded, run.checks, run.slowest))


@pytest.mark.parametrize("mode", MODES)
def test_cluster_refused_at_start_up(redis_server_binary: ServerBinary, mode: str) -> None:
    """The limiter is made, and checks, before any cluster node listens; then the cluster
    starts (nodes up, slots assigned, replicas attached) while checks continue."""
    cluster = RedisCluster(masters=3, replicas_per_master=1, binary=redis_server_binary.path, seed_port=free_port())
    registry = CollectorRegistry()
    limiter = _limiter(cluster.url, mode)
    RateLimitMetrics(registry=registry).attach(limiter)
    fault = Fault(lambda: None, cluster.start, at_start_up=True)

    async def main() -> tuple[float | None, float, Driver]:
        try:
            return await _run_row(limiter, fault, mode, "client-a")
        finally:
            await limiter.aclose()

    try:
        with capture_logs() as logs:
            detect, recover, run = asyncio.run(main())
    finally:
        cluster.stop()
    _check_signals(logs, registry, True)
    _record(Row("cluster 3+3", "refused-at-start-up", mode, detect, recover, run.degraded, run.checks, run.slowest))


def _role(server: RedisServer) -> str:
    reply = server.command("ROLE")
    role = reply[0]
    return role.decode() if isinstance(role, bytes) else str(role)


def _wait_role(server: RedisServer, role: str, bound: float = 15.0) -> None:
    """The fault clears when the replica has taken over (cluster-node-timeout is 1 s)."""
    deadline = time.monotonic() + bound
    while _role(server) != role:
        assert time.monotonic() < deadline, f"{server!r} never became {role}"
        time.sleep(0.05)
