"""Rate strings and mappings."""

from __future__ import annotations

import pytest

from ratelimit_mw.core.rates import parse_rate, rule_from_mapping
from ratelimit_mw.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "limit", "period", "capacity", "window"),
    [
        pytest.param("10/second", 10, 1, 10, 1, id="slash"),
        pytest.param("10/s", 10, 1, 10, 1, id="short-unit"),
        pytest.param("100 per minute", 100, 60, 100, 60, id="per"),
        pytest.param("5/10s", 5, 10, 5, 10, id="multi-period"),
        pytest.param("1000/day", 1000, 86400, 1000, 86400, id="day"),
        pytest.param("10/second; burst=40", 10, 1, 40, 4, id="burst"),
        pytest.param("10/second; burst_multiplier=1.5", 10, 1, 15, 2, id="burst-multiplier"),
        pytest.param("5 per 10 minutes", 5, 600, 5, 600, id="per-n-units"),
        pytest.param("5/minute", 5, 60, 5, 60, id="design-example-q5-w60"),
    ],
)
def test_parse_rate(text: str, limit: int, period: float, capacity: int, window: int) -> None:
    rule = parse_rate(text)
    assert (rule.limit, rule.period, rule.capacity, rule.window) == (limit, period, capacity, window)
    assert rule.algorithm == "gcra"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("0/second", "at least 1", id="zero"),
        pytest.param("ten per minute", "expected e.g.", id="words"),
        pytest.param("5/fortnight", "unknown unit", id="unit"),
        pytest.param("5/s; burts=3", "known options", id="option-typo"),
        pytest.param("5/s; algorithm=magic", "unknown algorithm", id="algorithm"),
        pytest.param("5/s; burst=0", ">= 1", id="burst-zero"),
        pytest.param("5/s; burst=3; burst_multiplier=2", "not both", id="burst-both"),
        pytest.param("5/s; algorithm=fixed_window; burst=9", "bucket algorithms only", id="burst-window"),
        pytest.param("5/s; max_delay=1", "leaky_bucket", id="max-delay-not-leaky"),
        pytest.param("5/0s", "positive", id="zero-period"),
    ],
)
def test_bad_rates(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("mapping", "limit", "period", "capacity"),
    [
        pytest.param({"limit": 100, "period": 60, "burst": 150}, 100, 60, 150, id="canonical"),
        pytest.param({"requests_per_second": 100, "burst_size": 150}, 100, 1, 150, id="seed-aliases"),
        pytest.param({"requests": 60, "window_size": 60}, 60, 60, 60, id="window-size"),
        pytest.param({"limit": 5, "period": "10s"}, 5, 10, 5, id="period-text"),
    ],
)
def test_rule_from_mapping(mapping: dict, limit: int, period: float, capacity: int) -> None:
    rule = rule_from_mapping(mapping)
    assert (rule.limit, rule.period, rule.capacity) == (limit, period, capacity)


@pytest.mark.parametrize(
    "mapping",
    [
        pytest.param({"period": 60}, id="no-limit"),
        pytest.param({"limit": 0}, id="zero"),
        pytest.param({"limit": 5, "perid": 1}, id="typo"),
        pytest.param({"requests_per_second": 5, "period": 2}, id="rps-and-period"),
        pytest.param({"limit": True}, id="bool"),
    ],
)
def test_bad_mappings(mapping: dict) -> None:
    with pytest.raises(ConfigError):
        rule_from_mapping(mapping)


def test_default_names_are_stable_and_custom_names_kept() -> None:
    assert parse_rate("10/second").name == "10-per-second"
    assert parse_rate("5/10s").name == "5-per-10s"
    assert parse_rate("10/second; name=burst").name == "burst"
