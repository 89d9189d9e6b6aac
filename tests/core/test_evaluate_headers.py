"""All-or-nothing evaluation of several limits, and header rendering."""

from __future__ import annotations

import pytest

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.evaluate import evaluate, inspect
from ratelimit_mw.core.headers import HeaderRenderer, retry_after_seconds, sf_string
from ratelimit_mw.core.rates import parse_rate
from ratelimit_mw.errors import ConfigError

T0 = 1_000_000.0
SECOND = parse_rate("2/second; name=burst")
MINUTE = parse_rate("3/minute; name=sustained")


def test_denied_by_one_limit_consumes_nothing_from_the_others() -> None:
    rules = [SECOND, MINUTE]
    states: list = [None, None]
    results = []
    for t in (0.0, 0.0, 0.0, 0.5, 1.0, 2.0):
        steps, d = evaluate(rules, states, T0 + t, 1)
        if d.allowed:
            states = [s.state for s in steps]
        results.append((d.allowed, d.violated))
    assert results == [
        (True, ()),
        (True, ()),
        (False, ("burst",)),  # the minute limit must not have been charged
        (True, ()),  # 3rd of 3/minute: proves the denial above consumed nothing
        (False, ("sustained",)),
        (False, ("sustained",)),
    ]


def test_reports_most_restrictive_and_longest_wait() -> None:
    steps, d = evaluate([SECOND, MINUTE], [None, None], T0, 1)
    assert d.rule is SECOND and d.remaining == 1  # ties on remaining? no: 1 < 2
    states = [s.state for s in steps]
    steps, d = evaluate([SECOND, MINUTE], states, T0, 1)
    states = [s.state for s in steps]
    # both limits now deny (second: 0 left; minute: 1 left but ...) -> longest wait wins
    _, d = evaluate([SECOND, MINUTE], states, T0, 2)
    assert not d.allowed
    assert set(d.violated) == {"burst", "sustained"}
    assert d.rule is MINUTE
    assert d.retry_after == pytest.approx(20.0)  # minute rule: one more unit back after 20 s


def test_tie_on_remaining_goes_to_later_reset() -> None:
    a = parse_rate("5/second; name=a")
    b = parse_rate("5/minute; name=b")
    _, d = evaluate([a, b], [None, None], T0, 1)
    assert d.remaining == 4 and d.rule is b


def test_inspect_reports_without_consuming() -> None:
    steps, _ = evaluate([SECOND], [None], T0, 2)
    d = inspect([SECOND], [steps[0].state], T0)
    assert (d.allowed, d.remaining) == (False, 0)
    assert d.retry_after == pytest.approx(0.5)
    fresh = inspect([SECOND], [None], T0)
    assert (fresh.allowed, fresh.remaining) == (True, 2)


def _decision(allowed: bool, remaining: int = 37, reset: float = 22.2, retry: float = 0.0) -> Decision:
    rule = parse_rate("100/minute; name=burst")
    return Decision(allowed, 100, remaining, reset, retry, rule)


@pytest.mark.parametrize(
    ("styles", "allowed", "expected"),
    [
        pytest.param(
            ("x-ratelimit",), True,
            [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "37"), ("X-RateLimit-Reset", "23")],
            id="x-ratelimit",
        ),
        pytest.param(
            ("ietf",), True,
            [("RateLimit-Policy", '"burst";q=100;w=60,"day";q=10000;w=86400'),
             ("RateLimit", '"burst";r=37;t=23')],
            id="ietf-draft-11",
        ),
        pytest.param(
            ("draft03",), True,
            [("RateLimit-Limit", "100"), ("RateLimit-Remaining", "37"), ("RateLimit-Reset", "23"),
             ("RateLimit-Policy", "100;w=60, 10000;w=86400")],
            id="draft03",
        ),
        pytest.param(("none",), True, [], id="none"),
        pytest.param(("none",), False, [("Retry-After", "5")], id="none-still-retry-after-on-429"),
    ],
)
def test_header_styles(styles: tuple[str, ...], allowed: bool, expected: list[tuple[str, str]]) -> None:
    rules = [parse_rate("100/minute; name=burst"), parse_rate("10000/day; name=day")]
    renderer = HeaderRenderer(rules, styles)
    assert renderer.render(_decision(allowed, retry=4.2)) == expected


def test_retry_after_only_on_denial_and_rounded_up() -> None:
    renderer = HeaderRenderer([parse_rate("100/minute")], ("x-ratelimit",))
    names = [k for k, _ in renderer.render(_decision(True))]
    assert "Retry-After" not in names
    denied = dict(renderer.render(_decision(False, remaining=0, retry=0.01)))
    assert denied["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, 1), (0.0001, 1), (1.0, 1), (1.2, 2), (59.99, 60), (float("inf"), 1), (float("nan"), 1)],
)
def test_retry_after_seconds(seconds: float, expected: int) -> None:
    assert retry_after_seconds(seconds) == expected


def test_epoch_reset_and_renamed_headers() -> None:
    renderer = HeaderRenderer(
        [parse_rate("100/minute")], ("x-ratelimit",),
        names={"X-RateLimit-Limit": "X-Quota-Limit"}, reset="epoch",
    )
    headers = dict(renderer.render(_decision(True, reset=22.2), wall_now=1_700_000_000.5))
    assert headers["X-Quota-Limit"] == "100"
    assert headers["X-RateLimit-Reset"] == "1700000023"


def test_sf_string_escapes() -> None:
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    assert sf_string("caf\u00e9") == '"caf?"'


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({"styles": ("bogus",)}, id="style"), pytest.param({"reset": "later"}, id="reset"),
     pytest.param({"names": {"X-Nope": "A"}}, id="name")],
)
def test_renderer_rejects_bad_options(kwargs: dict) -> None:
    styles = kwargs.pop("styles", ("x-ratelimit",))
    with pytest.raises(ConfigError):
        HeaderRenderer([parse_rate("1/second")], styles, **kwargs)
