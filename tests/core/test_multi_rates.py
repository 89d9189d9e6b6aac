"""``"1/second;5/minute"`` is two limits wherever limits are accepted; options after
a rate (``; burst=40``) still belong to it."""

from __future__ import annotations

import pytest

from ratelimit_mw import parse_rate, parse_rates
from ratelimit_mw.errors import ConfigError, PolicyError
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1/second;5/minute", ["1/second", "5/minute"]),
        ("1/second, 5/minute", ["1/second", "5/minute"]),
        ("10/second; burst=40", ["10/second; burst=40"]),
        ("10/second; burst=40; 500/hour", ["10/second; burst=40", "500/hour"]),
        ("10/second; burst=40, name=fast; 2 per minute", ["10/second; burst=40", "2/minute"]),
    ],
)
def test_several_limits_in_one_string(text: str, expected: list[str]) -> None:
    assert [str(rule) for rule in parse_rates(text)] == expected


def test_options_stay_with_their_rate() -> None:
    fast, slow = parse_rates("10/second; name=fast; algorithm=token_bucket; 5/minute")
    assert (fast.name, fast.algorithm) == ("fast", "token_bucket")
    assert (slow.name, slow.algorithm) == ("5-per-minute", "gcra")


@pytest.mark.parametrize("text", ["", "burst=3; 1/second", "1/second;nonsense", "1/second; colour=red"])
def test_bad_strings_are_clear_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        parse_rates(text)


def test_parse_rate_still_means_one_limit() -> None:
    with pytest.raises(ConfigError, match="invalid rate option"):
        parse_rate("1/second;5/minute")


def test_policy_limits_accept_the_string() -> None:
    policies = load_policies("version: 1\nroutes:\n  - {match: /a, limits: '1/second;5/minute'}\n")
    assert [str(r) for r in policies.routes[0].rules] == ["1/second", "5/minute"]


def test_policy_error_points_at_the_entry() -> None:
    with pytest.raises(PolicyError) as info:
        load_policies("version: 1\nroutes:\n  - match: /a\n    limits: ['1/second;5/fortnight']\n")
    assert (info.value.line, info.value.field) == (4, "routes[0].limits[0]")


def test_limiter_checks_both_limits() -> None:
    limiter = Limiter("memory://", clock=FakeClock())
    decisions = [limiter.check("k", "1/second;2/minute").allowed for _ in range(2)]
    assert decisions == [True, False]
