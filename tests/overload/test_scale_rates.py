"""``scale_rates:``: the routes' rate limits follow their pool's load factor, between the
floor and 1, and a client's usage carries over when the factor changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ratelimit_mw import WSGIRateLimitMiddleware
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.errors import PolicyError
from ratelimit_mw.overload.scaling import factors, level, scaled_rule
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock

POLICIES = """version: 1
overload:
  algorithm: %(algorithm)s
  initial: %(initial)s
  min: 1
  max: 10
  latency_target: 100ms
  window: 1s
%(scale)s
routes:
  - match: /health
    exempt: true
  - match: /slow
    limits: ["1000/minute"]
  - match: /api
    limits: ["10/minute", "2 concurrent"]
"""


def policies(initial: int = 5, scale: str = "  scale_rates: {floor: 0.25}", algorithm: str = "fixed") -> str:
    return POLICIES % {"initial": initial, "scale": scale, "algorithm": algorithm}


def app(clock: FakeClock) -> Any:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            clock.advance(0.15)  # slower than the 100 ms target: the pool's latency rises
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return wsgi


def admitted(client: httpx.Client, n: int = 20) -> tuple[int, str]:
    responses = [client.get("/api") for _ in range(n)]
    ok = [r for r in responses if r.status_code == 200]
    assert all(r.status_code == 429 for r in responses[len(ok):])
    return len(ok), responses[0].headers["RateLimit-Policy"]


@pytest.mark.parametrize(
    ("initial", "scale", "expected"),
    [
        pytest.param(5, "  scale_rates: {floor: 0.25}", 5, id="half-loaded"),
        pytest.param(5, "  scale_rates: 0.8", 8, id="scalar-floor-wins"),
        pytest.param(10, "  scale_rates: {floor: 0.25}", 10, id="at-max"),
        pytest.param(1, "  scale_rates: {floor: 0.25}", 2, id="at-the-floor"),
        pytest.param(5, "", 10, id="off"),
    ],
)
def test_rates_scale_by_the_pool_factor(initial: int, scale: str, expected: int) -> None:
    clock = FakeClock()
    mw = WSGIRateLimitMiddleware(app(clock), policies=policies(initial, scale), backend="memory://", clock=clock)
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        count, policy = admitted(client)
    assert count == expected
    assert f'"10-per-minute";q={expected};w=60' in policy  # the headers say the scaled quota
    assert 'qu="concurrent-requests"' in policy  # an in-flight limit is not scaled


def test_usage_carries_over_when_the_factor_changes() -> None:
    """The scaled limits keep the route's storage: the share of the quota a client used
    stays used when the factor changes (GCRA keeps it as time)."""
    clock = FakeClock()
    mw = WSGIRateLimitMiddleware(app(clock), policies=policies(10), backend="memory://", clock=clock)
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        assert [client.get("/api").status_code for _ in range(4)] == [200] * 4
        mw.engine.set_policies(load_policies(policies(5)))  # the pool now runs at half its max
        # 40% of the quota is used: 60% of 5/minute is left, not a fresh 5
        assert [client.get("/api").status_code for _ in range(4)] == [200, 200, 200, 429]
        mw.engine.set_policies(load_policies(policies(10)))
        assert client.get("/api").status_code == 429  # the whole quota is used, at any factor
        clock.advance(12)  # two requests' worth at 10/minute
        assert [client.get("/api").status_code for _ in range(3)] == [200, 200, 429]


ADAPTIVE = """version: 1
overload:
  algorithm: aimd
  initial: 3
  min: 1
  max: 10
  latency_target: 100ms
  window: 1s
  priorities: {critical: 1.0}
  scale_rates: 0.1
routes:
  - match: /slow
    limits: ["1000/minute"]
  - match: /api
    limits: ["10/minute"]
"""


def test_an_adaptive_limit_that_falls_tightens_the_rates() -> None:
    """aimd on an injected clock: slow responses push the pool's limit down, and the
    route's rate limit follows it."""
    clock = FakeClock()
    mw = WSGIRateLimitMiddleware(app(clock), policies=ADAPTIVE, backend="memory://", clock=clock)
    gate = mw.engine.overload.gates["default"]  # type: ignore[union-attr]
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        before, _ = admitted(client)
        assert before == 3  # 10/minute at 3 of 10
        clock.advance(60)  # the quota is whole again
        for _ in range(300):
            client.get("/slow")
            if gate.limit < 3:
                break
        assert gate.limit < 3
        after, policy = admitted(client)
    steps = factors(0.1)
    expected = max(1, int(10 * steps[level(gate.limit, 10, len(steps))] + 1e-9))
    assert after == expected < before
    assert f'"10-per-minute";q={expected};' in policy


def test_the_ladder_and_scaled_rules() -> None:
    assert factors(0.25)[:3] == (1.0, 0.95, 0.9) and factors(0.25)[-1] == 0.25
    assert factors(1.0) == (1.0,)
    steps = factors(0.25)
    assert steps[level(10, 10, len(steps))] == 1.0
    assert steps[level(5.2, 10, len(steps))] == 0.5  # rounded down to a step
    assert steps[level(0.5, 10, len(steps))] == 0.25  # never below the floor
    rule = parse_rate("10/second; burst=40")
    half = scaled_rule(rule, 0.5)
    assert (half.limit, half.burst, half.period, half.name) == (5, 20, 1.0, rule.name)
    assert scaled_rule(parse_rate("1/minute"), 0.1).limit == 1  # never below one
    assert scaled_rule(parse_rate("3 concurrent"), 0.5).limit == 3


@pytest.mark.parametrize(
    ("scale", "field", "message"),
    [
        pytest.param("  scale_rates: 0", "overload.scale_rates", "(0, 1]", id="zero"),
        pytest.param("  scale_rates: {floor: 1.5}", "overload.scale_rates.floor", "(0, 1]", id="above-one"),
        pytest.param("  scale_rates: {flor: 0.5}", "overload.scale_rates.flor", "did you mean 'floor'", id="typo"),
        pytest.param("  scale_rates: {}", "overload.scale_rates", "needs a floor", id="no-floor"),
    ],
)
def test_errors_name_file_line_and_field(scale: str, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policies(policies(5, scale))
    error = caught.value
    assert (error.line, error.field) == (9, field)
    assert message in str(error)
