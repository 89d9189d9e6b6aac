"""OutboundLimiter logic with an injected clock: waiting, raising, pauses, the decorator,
failure modes, fairness bookkeeping, metrics and logs."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.errors import ConfigError, RateLimitExceeded
from ratelimit_mw.httpx import AsyncRateLimitTransport, RateLimitTransport
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.metrics import RateLimitMetrics
from ratelimit_mw.outbound import OutboundLimiter
from ratelimit_mw.testing import FakeClock
from tests.observability.helpers import FlakyBackend


def _outbound(clock: FakeClock, **options: object) -> OutboundLimiter:
    return OutboundLimiter({"api.example.com": "2/second", "openai": {"limit": 3, "window": 60}},
                           clock=clock, **options)  # type: ignore[arg-type]


def test_acquire_waits_exactly_for_the_quota() -> None:
    clock = FakeClock()
    outbound = _outbound(clock)
    start = clock.now
    times = []
    for _ in range(5):
        assert outbound.acquire("api.example.com").allowed
        times.append(round(clock.now - start, 6))
    assert times == [0.0, 0.0, 0.5, 1.0, 1.5]  # burst of 2, then one per 0.5 s


def test_raise_mode_and_max_wait() -> None:
    clock = FakeClock()
    outbound = _outbound(clock, on_limit="raise")
    outbound.acquire("openai")
    outbound.acquire("openai")
    outbound.acquire("openai")
    with pytest.raises(RateLimitExceeded) as info:
        outbound.acquire("openai")
    assert info.value.decision.retry_after == pytest.approx(20.0)
    assert clock.now == 1_000_000.0  # raised at once, no time passed
    with pytest.raises(RateLimitExceeded):  # waiting mode, but 20 s > max_wait: fails fast
        outbound.acquire("openai", on_limit="wait", max_wait=5.0)
    assert clock.now == 1_000_000.0
    assert outbound.acquire("openai", on_limit="wait", max_wait=25.0).allowed
    assert clock.now == pytest.approx(1_000_020.0)


def test_the_decorator_paces_sync_and_async_functions() -> None:
    clock = FakeClock()
    outbound = OutboundLimiter(clock=clock)

    @outbound.limit("openai", "2/second")
    def call(n: int) -> int:
        return n * 2

    @outbound.limit("openai")
    async def acall(n: int) -> int:
        return n * 3

    assert call.__name__ == "call" and asyncio.iscoroutinefunction(acall)
    assert [call(1), call(2)] == [2, 4] and clock.now == 1_000_000.0
    assert asyncio.run(acall(3)) == 9 and clock.now == pytest.approx(1_000_000.5)  # same quota, waited
    assert call(4) == 8 and clock.now == pytest.approx(1_000_001.0)

    @outbound.limit("openai", on_limit="raise")
    def strict() -> None:
        return None

    with pytest.raises(RateLimitExceeded):
        strict()
    with pytest.raises(ConfigError, match="other limits"):
        outbound.limit("openai", "5/second")
    with pytest.raises(ConfigError, match="no outbound rule named 'nope'"):
        outbound.limit("nope")


def test_seed_calling_style_equivalents() -> None:
    clock = FakeClock()
    outbound = OutboundLimiter(clock=clock)
    outbound.add("api_service", {"requests_per_second": 100, "burst_size": 150})  # configure_limit
    decision = outbound.try_acquire("api_service")  # allow_request() / check_limit(key)
    assert (decision.allowed, decision.remaining) == (True, 149)
    usage = outbound.usage("api_service")  # get_current_usage
    assert usage["limit"] == 150 and usage["remaining"] == 149 and usage["paused_for"] == 0.0
    outbound.add("api_service", "1/minute")  # replaced in place
    assert [str(r) for r in outbound.rule("api_service").rules] == ["1/minute"]


def _upstream(status: int = 429, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.startswith("/busy") and len(seen) == 1:
            return httpx.Response(status, headers=headers or {"Retry-After": "2"})
        return httpx.Response(200, json={"n": len(seen)})

    transport = httpx.MockTransport(handler)
    transport.seen = seen  # type: ignore[attr-defined]
    return transport


def test_a_remote_429_pauses_the_rule_and_the_next_request_waits() -> None:
    clock = FakeClock()
    outbound = OutboundLimiter({"api.example.com": "100/second"}, clock=clock)
    client = httpx.Client(transport=RateLimitTransport(outbound=outbound, transport=_upstream()))
    assert client.get("https://api.example.com/busy").status_code == 429
    assert outbound.paused_for("api.example.com") == pytest.approx(2.0)
    start = clock.now
    assert client.get("https://api.example.com/other").status_code == 200
    assert clock.now - start == pytest.approx(2.0)  # waited out the pause
    assert client.get("https://elsewhere.example.org/").status_code == 200  # no rule: not paused


def test_retries_send_again_after_the_pause_when_enabled() -> None:
    clock = FakeClock()
    upstream = _upstream()
    transport = RateLimitTransport({"api.example.com": "100/second"}, transport=upstream, retries=2, clock=clock)
    response = httpx.Client(transport=transport).post("https://api.example.com/busy", content=b"body")
    assert response.status_code == 200 and upstream.seen == ["/busy", "/busy"]  # type: ignore[attr-defined]
    assert clock.now - 1_000_000.0 == pytest.approx(2.0)


def test_a_pause_longer_than_max_wait_returns_the_429_instead_of_retrying() -> None:
    clock = FakeClock()
    upstream = _upstream(headers={"Retry-After": "60"})
    transport = RateLimitTransport({"api.example.com": "100/second"}, transport=upstream, retries=3, clock=clock,
                                   max_wait=5.0)
    assert httpx.Client(transport=transport).get("https://api.example.com/busy").status_code == 429
    with pytest.raises(RateLimitExceeded):
        httpx.Client(transport=transport).get("https://api.example.com/next")
    assert upstream.seen == ["/busy"]  # type: ignore[attr-defined]


def test_async_transport_pauses_and_waits() -> None:
    clock = FakeClock()
    upstream = _upstream(headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"}, status=200)

    async def main() -> list[int]:
        transport = AsyncRateLimitTransport({"api.example.com": "100/second"}, transport=upstream, clock=clock)
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get("https://api.example.com/busy")
            second = await client.get("https://api.example.com/x")
        return [first.status_code, second.status_code]

    assert asyncio.run(main()) == [200, 200]
    assert clock.now - 1_000_000.0 == pytest.approx(3.0)  # the X-RateLimit reset was honoured


@pytest.mark.parametrize(
    ("mode", "admitted"),
    [
        pytest.param("allow", 5, id="allow-fails-open"),
        pytest.param("deny", 0, id="deny-fails-closed"),
        pytest.param("memory", 2, id="memory-keeps-the-rule-in-process"),
    ],
)
def test_a_backend_outage_follows_the_rules_on_backend_error(mode: str, admitted: int) -> None:
    clock = FakeClock()
    backend = FlakyBackend()
    backend.failing = True
    limiter = Limiter(backend, clock=clock, on_backend_error="allow")
    outbound = OutboundLimiter({"api.example.com": {"limits": "2/minute", "on_backend_error": mode}},
                               limiter=limiter, clock=clock, on_limit="raise")
    results = []
    for _ in range(5):
        try:
            decision = outbound.acquire("api.example.com")
            results.append(decision.degraded)
        except RateLimitExceeded as exc:
            assert exc.decision.degraded or mode == "memory"
    assert len(results) == admitted and all(results)


def test_backend_outage_deny_in_waiting_mode_waits_up_to_max_wait_then_raises() -> None:
    clock = FakeClock()
    backend = FlakyBackend()
    backend.failing = True
    limiter = Limiter(backend, clock=clock, breaker_recovery=2.0)
    outbound = OutboundLimiter({"a.example.com": {"limits": "5/second", "on_backend_error": "deny"}},
                               limiter=limiter, clock=clock, max_wait=3.0)
    with pytest.raises(RateLimitExceeded) as info:
        outbound.acquire("a.example.com")
    assert info.value.decision.degraded
    assert 0 < clock.now - 1_000_000.0 <= 3.0  # it waited (for a recovery) within max_wait
    backend.failing = False
    clock.advance(5)
    assert not outbound.acquire("a.example.com").degraded  # recovered


def test_metrics_and_logs_say_outbound_and_never_carry_the_url() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    outbound = OutboundLimiter({"api.example.com": "1/second"}, clock=clock, max_wait=0.2)
    transport = RateLimitTransport(outbound=outbound, transport=_upstream())
    RateLimitMetrics(registry).attach(transport)
    client = httpx.Client(transport=transport)
    with capture_logs() as events:
        assert client.get("https://api.example.com/busy?api_key=SECRET123").status_code == 429
        with pytest.raises(RateLimitExceeded):
            client.get("https://api.example.com/x?api_key=SECRET123")
    kinds = [e["event"] for e in events]
    assert kinds == [log.OUTBOUND_PAUSED, log.RATE_LIMITED]
    assert all(e["direction"] == "outbound" and e.get("host") == "api.example.com" for e in events)
    labels = {"direction": "outbound", "rule": "api.example.com", "host": "api.example.com"}
    assert registry.get_sample_value("ratelimit_outbound_decisions_total", {**labels, "outcome": "allowed"}) == 1
    assert registry.get_sample_value("ratelimit_outbound_decisions_total", {**labels, "outcome": "limited"}) == 1
    assert registry.get_sample_value("ratelimit_outbound_pauses_total",
                                     {"rule": "api.example.com", "signal": "retry-after"}) == 1
    text = repr(events) + "".join(
        repr(sample) for metric in registry.collect() for sample in metric.samples
    )
    assert "SECRET123" not in text and "/busy" not in text and "?" not in text


def test_waiters_queue_in_order_and_only_the_head_polls() -> None:
    """20 threads wait on a spent quota: they are admitted in arrival order, and the
    backend sees about one check per admission (no herd re-checking on every refill)."""
    import threading

    outbound = OutboundLimiter({"x": "50/second"}, max_wait=5.0)
    limiter = outbound.limiter
    checks = 0
    real_check = limiter.check

    def counting_check(*args: object, **kwargs: object) -> object:
        nonlocal checks
        checks += 1
        return real_check(*args, **kwargs)  # type: ignore[arg-type]

    limiter.check = counting_check  # type: ignore[method-assign]
    for _ in range(50):
        assert outbound.try_acquire("x").allowed
    checks = 0
    order: list[int] = []
    threads = []
    for i in range(20):
        thread = threading.Thread(target=lambda i=i: (outbound.acquire("x"), order.append(i)))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 2
        while outbound.usage("x")["waiting"] < i + 1 and len(order) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.0005)
    for thread in threads:
        thread.join(5)
    assert order == list(range(20))
    assert checks <= 2 * 20 + 2, checks
    assert outbound.usage("x")["waiting"] == 0


@pytest.mark.parametrize("cancel", ["head", "middle"])
def test_a_cancelled_waiting_task_frees_its_place(cancel: str) -> None:
    async def main() -> tuple[list[str], dict[str, float], int]:
        outbound = OutboundLimiter({"x": "10/second"}, max_wait=5.0)
        for _ in range(10):
            assert (await outbound.atry_acquire("x")).allowed
        admitted: list[str] = []
        at: dict[str, float] = {}
        start = time.monotonic()

        async def wait(name: str) -> None:
            await outbound.aacquire("x")
            admitted.append(name)
            at[name] = time.monotonic() - start

        tasks = {}
        for name in "abc":
            tasks[name] = asyncio.create_task(wait(name))
            await asyncio.sleep(0.005)
        assert outbound.usage("x")["waiting"] == 3
        victim = "a" if cancel == "head" else "b"
        tasks[victim].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return admitted, at, outbound.usage("x")["waiting"]

    admitted, at, waiting = asyncio.run(main())
    survivors = ["b", "c"] if cancel == "head" else ["a", "c"]
    assert admitted == survivors and waiting == 0
    # the cancelled place was not kept: the second survivor got the second refill (~0.2 s), not a third
    assert at[survivors[0]] < 0.17 and at[survivors[1]] < 0.27, at


def test_async_fifo_order_is_exact_in_one_process() -> None:
    async def main() -> list[int]:
        outbound = OutboundLimiter({"x": "100/second"}, max_wait=5.0)
        for _ in range(100):
            await outbound.atry_acquire("x")
        order: list[int] = []

        async def wait(i: int) -> None:
            await outbound.aacquire("x")
            order.append(i)

        tasks = []
        for i in range(30):
            tasks.append(asyncio.create_task(wait(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == list(range(30))


def test_a_newcomer_does_not_overtake_waiters() -> None:
    clock = FakeClock()
    outbound = _outbound(clock)
    gate_rule = outbound.rule("api.example.com")
    outbound.acquire(gate_rule)
    outbound.acquire(gate_rule)
    waiter = outbound._gates["api.example.com"].join()  # someone is waiting
    try:
        clock.advance(10)  # quota is back, but the waiter has not run yet
        decision = outbound.try_acquire(gate_rule)
        assert not decision.allowed and decision.retry_after > 0
    finally:
        outbound._gates["api.example.com"].leave(waiter)
    assert outbound.try_acquire(gate_rule).allowed


def test_sync_and_async_twins_match() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))}

    names = public(OutboundLimiter)
    sync = {n for n in names if f"a{n}" in names}
    assert sync == {"acquire", "try_acquire", "usage", "pause", "paused_for", "observe_response"}
    assert names - sync - {f"a{n}" for n in sync} == {"add", "rule", "match", "limit"}
    assert {"handle_request", "close"} <= public(RateLimitTransport)
    assert {"handle_async_request", "aclose"} <= public(AsyncRateLimitTransport)


def test_metrics_tell_waited_calls_from_immediate_ones() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    outbound = RateLimitMetrics(registry).attach(_outbound(clock))
    for _ in range(3):
        outbound.acquire("api.example.com")
    labels = {"direction": "outbound", "rule": "api.example.com", "host": "api.example.com"}
    value = registry.get_sample_value
    assert value("ratelimit_outbound_decisions_total", {**labels, "outcome": "allowed"}) == 2
    assert value("ratelimit_outbound_decisions_total", {**labels, "outcome": "waited"}) == 1
    assert value("ratelimit_outbound_wait_seconds_sum", {"rule": "api.example.com"}) == pytest.approx(0.5)


def test_a_rule_object_from_elsewhere_must_be_registered() -> None:
    from ratelimit_mw.policy.outbound import outbound_rules

    (stranger,) = outbound_rules({"elsewhere": "1/second"})
    with pytest.raises(ConfigError, match="no outbound rule named 'elsewhere'"):
        OutboundLimiter().acquire(stranger)
