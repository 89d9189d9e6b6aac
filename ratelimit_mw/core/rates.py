"""Rate parsing and the :class:`Rule` value object.

A rate ``N/period`` admits ``N`` requests at once from a fresh state, then refills
at ``N`` per ``period``. ``burst`` sets another capacity for the bucket algorithms
(gcra, token_bucket, leaky_bucket); window algorithms count exactly ``N`` per window
and reject a ``burst`` option, because it would mean nothing there.

Accepted text forms::

    10/second   10/s   10 per second   100/minute   5/10s   5 per 10 minutes
    1000/day    10/second; burst=40   10/second; burst_multiplier=1.5
    10/second; name=burst; algorithm=leaky_bucket; max_delay=500ms

several limits in one string, as in the ``limits`` library and flask-limiter
(:func:`parse_rates`; options apply to the limit before them)::

    1/second;5/minute   10/second, 1000/day   10/second; burst=40; 500/hour

an in-flight limit (at most N requests of a key at once; ``lease`` is how long a
slot outlives a worker that died holding it, on Redis; 30 s unless set)::

    5 concurrent   5 concurrent; lease=15s

and the mapping form ``{limit: 100, period: 60, burst: 150}`` (aliases from older
configs: ``requests``, ``window``/``window_size``/``window_seconds``, ``burst_size``,
``requests_per_second``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ratelimit_mw.errors import ConfigError

#: Tolerance for time comparisons, in seconds (see ``ratelimit_mw.core.algorithms``).
EPS = 1e-6

__all__ = [
    "ALGORITHMS",
    "BUCKET_ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "DEFAULT_LEASE",
    "Rule",
    "concurrent_rule",
    "parse_duration",
    "parse_rate",
    "parse_rates",
    "rule_from_mapping",
]

ALGORITHMS = (
    "gcra",
    "token_bucket",
    "leaky_bucket",
    "fixed_window",
    "sliding_window",
    "sliding_log",
)
#: The algorithm of an in-flight limit (``N concurrent``); not a rate algorithm, so not
#: in :data:`ALGORITHMS` (a policy's ``algorithm:`` cannot name it).
IN_FLIGHT = "concurrency"
#: An in-flight limit's lease unless ``lease=`` sets one.
DEFAULT_LEASE = 30.0
#: Algorithms whose capacity (``burst``) may differ from the per-period limit.
BUCKET_ALGORITHMS = frozenset({"gcra", "token_bucket", "leaky_bucket"})
DEFAULT_ALGORITHM = "gcra"

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("ms", "msec", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "wk", "week", "weeks"), 604800.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_RATE_RE = re.compile(
    r"^\s*(?P<limit>\d+)\s*(?:/|per\b)\s*(?P<count>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$",
    re.IGNORECASE,
)
_DURATION_RE = re.compile(r"^\s*(?P<count>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)
_PERIOD_NAMES = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day", 604800.0: "week"}
_RATE_OPTIONS = ("algorithm", "burst", "burst_multiplier", "max_delay", "name")
_CONCURRENT_RE = re.compile(r"^\s*(?P<limit>\d+)\s*concurrent\s*$", re.IGNORECASE)
_CONCURRENT_OPTIONS = ("lease", "name")


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit: ``limit`` requests per ``period`` seconds, checked by ``algorithm``.

    Derived values are computed once here so the per-request maths is a handful of
    float operations.

    An in-flight limit (``"5 concurrent"``) is ``algorithm="concurrency"`` with
    ``limit`` the most requests in flight and ``period`` its lease in seconds.

    Attributes:
        limit: requests per period (in flight, for ``concurrency``).
        period: period in seconds (the lease, for ``concurrency``).
        burst: bucket capacity (``limit`` unless set; ignored by window algorithms).
        algorithm: one of :data:`ALGORITHMS`.
        max_delay: leaky bucket only: the longest a request may be delayed.
        name: policy name shown in ``RateLimit``/``RateLimit-Policy`` headers.
        interval: seconds per request at the sustained rate (``period / limit``).
        capacity: most requests admitted at once (the header ``Limit``).
        tolerance: ``capacity * interval`` (bucket algorithms) or the window length.
        window: seconds for the quota to become whole again (header ``w``).
        signature: short stable text identifying the maths (used in storage keys).
    """

    limit: int
    period: float
    burst: int = 0
    algorithm: str = DEFAULT_ALGORITHM
    max_delay: float | None = None
    name: str = ""
    interval: float = field(init=False, repr=False, compare=False)
    capacity: int = field(init=False, repr=False, compare=False)
    tolerance: float = field(init=False, repr=False, compare=False)
    window: int = field(init=False, repr=False, compare=False)
    signature: str = field(init=False, repr=False, compare=False)
    #: ``float(capacity)``: the token bucket's maths in floats only (mixed int/float
    #: operations are the slow, unspecialised ones in CPython)
    capacity_float: float = field(init=False, repr=False, compare=False)
    #: ``EPS / interval``: the time tolerance in tokens, for the token bucket. The same
    #: float the division per check gave, so decisions are bit-for-bit unchanged.
    slack: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigError(f"limit must be a whole number >= 1, got {self.limit!r}")
        if not isinstance(self.period, (int, float)) or not math.isfinite(self.period) or self.period <= 0:
            raise ConfigError(f"period must be a positive number of seconds, got {self.period!r}")
        if self.algorithm not in ALGORITHMS and self.algorithm != "concurrency":
            raise ConfigError(
                f"unknown algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
            )
        bucket = self.algorithm in BUCKET_ALGORITHMS
        burst = self.burst or self.limit
        if self.burst and not bucket and self.burst != self.limit:
            raise ConfigError(f"burst applies to bucket algorithms only, not {self.algorithm}")
        if burst < 1:
            raise ConfigError(f"burst must be >= 1, got {self.burst!r}")
        if self.max_delay is not None:
            if self.algorithm != "leaky_bucket":
                raise ConfigError("max_delay applies to the leaky_bucket algorithm only")
            if not math.isfinite(self.max_delay) or self.max_delay < 0:
                raise ConfigError(f"max_delay must be >= 0 seconds, got {self.max_delay!r}")
        period = float(self.period)
        interval = period / self.limit
        if self.algorithm == "leaky_bucket":
            max_delay = (burst - 1) * interval if self.max_delay is None else float(self.max_delay)
            capacity = math.floor(max_delay / interval + 1e-9) + 1
            tolerance = max_delay
            window = math.ceil(capacity * interval - 1e-9)
        elif bucket:
            capacity = burst
            tolerance = burst * interval
            window = math.ceil(tolerance - 1e-9)
        else:
            capacity = self.limit
            tolerance = period
            window = math.ceil(period - 1e-9)
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "burst", burst if bucket else self.limit)
        if self.algorithm == "leaky_bucket":
            object.__setattr__(self, "max_delay", tolerance)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "capacity_float", float(capacity))
        object.__setattr__(self, "slack", EPS / interval)
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "tolerance", tolerance)
        object.__setattr__(self, "window", max(window, 1))
        if not self.name:
            object.__setattr__(self, "name", _default_name(self.limit, period, self.algorithm))
        signature = f"{self.algorithm}:{self.limit}/{period:g}:{burst}"
        if self.algorithm == "leaky_bucket":
            signature += f":{tolerance:g}"
        object.__setattr__(self, "signature", signature)

    @property
    def in_flight(self) -> bool:
        """An in-flight limit (``N concurrent``): its slots are given back when responses end."""
        return self.algorithm == "concurrency"

    def __str__(self) -> str:
        if self.algorithm == "concurrency":
            return f"{self.limit} concurrent; lease={self.period:g}s"
        text = f"{self.limit}/{_period_text(self.period)}"
        if self.algorithm in BUCKET_ALGORITHMS and self.burst != self.limit:
            text += f"; burst={self.burst}"
        return text


def _period_text(period: float) -> str:
    name = _PERIOD_NAMES.get(period)
    return name if name else f"{period:g}s"


def _default_name(limit: int, period: float, algorithm: str = DEFAULT_ALGORITHM) -> str:
    if algorithm == "concurrency":
        return f"{limit}-concurrent"
    return f"{limit}-per-{_period_text(period)}"


def _concurrent(text: str, limit: int, tail: str) -> Rule:
    """``N concurrent; lease=15s; name=x``: an in-flight limit."""
    options = _options(text, tail, _CONCURRENT_OPTIONS, "option", "an in-flight limit takes")
    return concurrent_rule(limit, options.get("lease"), options.get("name") or "")


def concurrent_rule(limit: Any, lease: Any = None, name: str = "") -> Rule:
    """An in-flight limit of ``limit`` requests, each slot leased for ``lease`` (30 s)."""
    seconds = DEFAULT_LEASE if lease is None else parse_duration(lease, what="lease")
    if seconds < 1:
        raise ConfigError(f"lease must be at least 1 second, got {lease!r}")
    return Rule(limit=_positive_int(limit, "an in-flight limit"), period=seconds, algorithm="concurrency", name=name)


def parse_duration(value: Any, *, what: str = "duration") -> float:
    """Parse ``0.5``, ``"500ms"``, ``"2s"``, ``"1 minute"`` into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        unit = (match.group("unit") or "s").lower() if match else ""
        if not match or unit not in _UNITS:
            raise ConfigError(f"invalid {what} {value!r}; use seconds or e.g. '500ms', '2s'")
        seconds = float(match.group("count")) * _UNITS[unit]
    else:
        raise ConfigError(f"invalid {what} {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{what} must be >= 0, got {value!r}")
    return seconds


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def _build(
    limit: int,
    period: float,
    options: Mapping[str, Any],
    algorithm: str | None,
) -> Rule:
    algo = str(options.get("algorithm") or algorithm or DEFAULT_ALGORITHM)
    if algo == "concurrency":
        raise ConfigError("an in-flight limit is written 'N concurrent' (e.g. '5 concurrent; lease=15s'), "
                          "not a rate with algorithm=concurrency")
    burst = 0
    if options.get("burst") is not None:
        burst = _positive_int(options["burst"], "burst")
    if options.get("burst_multiplier") is not None:
        if burst:
            raise ConfigError("give burst or burst_multiplier, not both")
        try:
            mult = float(options["burst_multiplier"])
        except (TypeError, ValueError):
            raise ConfigError(f"burst_multiplier must be a number, got {options['burst_multiplier']!r}") from None
        if not math.isfinite(mult) or mult < 1:
            raise ConfigError(f"burst_multiplier must be >= 1, got {options['burst_multiplier']!r}")
        burst = max(1, math.floor(limit * mult + 1e-9))
    max_delay = None
    if options.get("max_delay") is not None:
        max_delay = parse_duration(options["max_delay"], what="max_delay")
    name = options.get("name") or ""
    if not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}")
    return Rule(
        limit=limit, period=period, burst=burst, algorithm=algo, max_delay=max_delay, name=name
    )


@lru_cache(maxsize=1024)
def parse_rate(text: str, algorithm: str | None = None) -> Rule:
    """Parse a rate string such as ``"10/second; burst=40"`` into a :class:`Rule`.

    Args:
        text: the rate, with optional ``; key=value`` options.
        algorithm: the algorithm to use when the text names none.

    Raises:
        ConfigError: with a message saying what is wrong and what is expected.
    """
    if not isinstance(text, str):
        raise ConfigError(f"a rate must be a string such as '10/second', got {text!r}")
    head, _, tail = text.partition(";")
    concurrent = _CONCURRENT_RE.match(head)
    if concurrent:
        return _concurrent(text, int(concurrent.group("limit")), tail)
    match = _RATE_RE.match(head)
    if not match:
        raise ConfigError(
            f"invalid rate {text!r}; expected e.g. '10/second', '100 per minute', '5/10s'"
        )
    limit = int(match.group("limit"))
    if limit < 1:
        raise ConfigError(f"invalid rate {text!r}: the limit must be at least 1")
    unit = match.group("unit").lower()
    if unit not in _UNITS:
        raise ConfigError(
            f"invalid rate {text!r}: unknown unit {match.group('unit')!r} "
            "(use second, minute, hour, day, week or s, m, h, d)"
        )
    count = float(match.group("count")) if match.group("count") else 1.0
    period = count * _UNITS[unit]
    if period <= 0:
        raise ConfigError(f"invalid rate {text!r}: the period must be positive")
    return _build(limit, period, _options(text, tail, _RATE_OPTIONS, "rate option", "known options"), algorithm)


def _options(text: str, tail: str, known: Sequence[str], what: str, listing: str) -> dict[str, str]:
    """The ``; name=value`` options after a rate; an unknown or malformed one is an error."""
    options: dict[str, str] = {}
    for part in re.split(r"[;,]", tail):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in known:
            raise ConfigError(f"invalid {what} {part.strip()!r} in {text!r}; {listing}: {', '.join(known)}")
        options[key] = value.strip()
    return options


@lru_cache(maxsize=1024)
def parse_rates(text: str, algorithm: str | None = None) -> tuple[Rule, ...]:
    """Parse ``"1/second;5/minute"`` (``;`` or ``,`` between them) into several rules.

    A part holding ``=`` is an option of the limit before it (``10/second; burst=40``
    stays one limit); any other part starts a new limit. One limit gives a 1-tuple.

    Raises:
        ConfigError: a part is neither a rate nor an option, or an option comes first.
    """
    if not isinstance(text, str):
        raise ConfigError(f"a rate must be a string such as '10/second', got {text!r}")
    groups: list[list[str]] = []
    for part in re.split(r"[;,]", text):
        if not part.strip():
            continue
        if "=" in part:
            if not groups:
                raise ConfigError(f"invalid rate {text!r}: option {part.strip()!r} comes before any rate")
            groups[-1].append(part.strip())
        else:
            groups.append([part.strip()])
    if not groups:
        raise ConfigError(f"invalid rate {text!r}; expected e.g. '10/second', '100 per minute', '5/10s'")
    if len(groups) == 1:
        return (parse_rate(text, algorithm),)
    return tuple(parse_rate("; ".join(group), algorithm) for group in groups)


_MAPPING_ALIASES = {
    "limit": "limit",
    "requests": "limit",
    "period": "period",
    "window": "period",
    "window_size": "period",
    "window_seconds": "period",
    "burst": "burst",
    "burst_size": "burst",
    "burst_multiplier": "burst_multiplier",
    "requests_per_second": "requests_per_second",
    "algorithm": "algorithm",
    "max_delay": "max_delay",
    "name": "name",
}


def rule_from_mapping(data: Mapping[str, Any], algorithm: str | None = None) -> Rule:
    """Build a :class:`Rule` from ``{limit: 100, period: 60, burst: 150}`` and aliases,
    or an in-flight limit from ``{concurrent: 5, lease: 15s}``."""
    if "concurrent" in data:
        extra = set(map(str, data)) - {"concurrent", "lease", "name"}
        if extra:
            raise ConfigError(f"an in-flight limit takes concurrent, lease and name, not {', '.join(sorted(extra))}")
        return concurrent_rule(data["concurrent"], data.get("lease"), str(data.get("name") or ""))
    norm: dict[str, Any] = {}
    for key, value in data.items():
        canon = _MAPPING_ALIASES.get(str(key))
        if canon is None:
            raise ConfigError(
                f"unknown rate field {key!r}; known: {', '.join(sorted(_MAPPING_ALIASES))}"
            )
        if canon in norm:
            raise ConfigError(f"rate field {key!r} given twice (under another alias)")
        norm[canon] = value
    if "requests_per_second" in norm:
        if "limit" in norm or "period" in norm:
            raise ConfigError("give requests_per_second, or limit and period, not both")
        norm["limit"] = norm.pop("requests_per_second")
        norm["period"] = 1
    if "limit" not in norm:
        raise ConfigError("a rate mapping needs 'limit' (requests per period)")
    limit = _positive_int(norm.pop("limit"), "limit")
    period = parse_duration(norm.pop("period", 1), what="period")
    if period <= 0:
        raise ConfigError("period must be positive")
    return _build(limit, period, norm, algorithm)
