"""The one Lua script of the Redis backend, and the codec around it.

Each algorithm of :mod:`ratelimit_mw.core.algorithms` has a Lua mirror in
``backends/lua/<algorithm>.lua``; ``state.lua`` (shared helpers) comes first and
``check.lua`` (the dispatcher) last. They are concatenated into ONE script, so a
request with any number of rules, of any algorithms, is one ``EVALSHA``: one
round trip, atomic, all-or-nothing.

The codec is exact in both directions: floats go to Lua as ``repr()`` (shortest
text that round-trips) and come back as ``'%.17g'`` text, because Redis would
truncate a Lua number to an integer. Lua's doubles are IEEE binary64 like
Python's, and the mirrors keep Python's operation order, so a decision read
from Redis equals the memory backend's bit for bit (the conformance tests check
that). The reply becomes :class:`~ratelimit_mw.core.algorithms.Step` values that
:func:`ratelimit_mw.core.evaluate.combine` folds, so the Decision logic is the
same code for every backend.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from ratelimit_mw.core.algorithms import Step
from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.evaluate import combine
from ratelimit_mw.core.rates import Rule
from ratelimit_mw.errors import BackendError, ConfigError

__all__ = [
    "LUA_FILES", "RENEW_SCRIPT", "Script", "argv", "check_args", "decode_hit", "decode_peek", "locate", "min_ttl_ms",
    "rule_args", "script", "script_for", "script_for_batch",
]

#: Concatenation order: helpers, the algorithm mirrors, then the dispatcher.
LUA_FILES = (
    "state.lua",
    "gcra.lua",
    "token_bucket.lua",
    "leaky_bucket.lua",
    "fixed_window.lua",  # also defines the window load/store helpers
    "sliding_window.lua",
    "sliding_log.lua",
    "concurrency.lua",
    "check.lua",
)

def locate(key: str) -> tuple[str, str]:
    """Where a time state of storage key ``key`` lives: (hash, field).

    The mirror of ``locate`` in ``lua/state.lua``: ``p:{tag}rest:slot`` is field
    ``rest`` (the text up to the next ``:``) of the hash ``p:{tag}:slot``; a key
    without that shape is field ``""`` of a hash named like the key.
    """
    open_ = key.find("{")
    close = key.find("}", open_ + 1) if open_ >= 0 else -1
    colon = key.find(":", close + 1) if close >= 0 else -1
    if colon < 0:
        return key, ""
    return key[: close + 1] + key[colon:], key[close + 1 : colon]


#: Values per rule in a reply: allowed, remaining, reset_after, retry_after, delay.
_FIELDS = 5


class Script:
    """The script text and its SHA1 (what ``EVALSHA`` names it by).

    Attributes:
        text: the concatenated Lua source.
        sha: hex SHA1 of ``text``, computed locally; Redis computes the same.
        algorithms: the algorithms it holds (``None``: all of them).
    """

    __slots__ = ("algorithms", "sha", "text")

    def __init__(self, text: str, algorithms: frozenset[str] | None = None) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()
        self.algorithms = algorithms


#: Lua files each algorithm needs besides state.lua and check.lua.
_NEEDS = {
    "gcra": ("gcra.lua",),
    "token_bucket": ("token_bucket.lua",),
    "leaky_bucket": ("leaky_bucket.lua",),
    "fixed_window": ("fixed_window.lua",),
    "sliding_window": ("fixed_window.lua", "sliding_window.lua"),  # shares the window helpers
    "sliding_log": ("sliding_log.lua",),
    "concurrency": ("concurrency.lua",),
}


@cache
def _source(name: str) -> str:
    folder = resources.files("ratelimit_mw.backends").joinpath("lua")
    return f"-- >>> {name}\n{folder.joinpath(name).read_text(encoding='utf-8')}"


@cache
def script(algorithms: frozenset[str] | None = None) -> Script:
    """The script for a set of algorithms (``None``: all of them), built once per set.

    Redis re-runs the whole script body on every EVALSHA, defining every function it
    contains: the script with all six algorithms cost ~36 us of server time per call
    against ~16 us for GCRA alone (measured with INFO commandstats), so each request
    runs a script holding only the algorithms of its own limits.
    """
    wanted = set(LUA_FILES[1:-1]) if algorithms is None else {f for a in algorithms for f in _NEEDS.get(a, ())}
    names = ["state.lua", *(f for f in LUA_FILES[1:-1] if f in wanted), "check.lua"]
    return Script("\n".join(_source(name) for name in names), algorithms)


@lru_cache(maxsize=256)
def script_for(rules: tuple[Rule, ...]) -> Script:
    """The script for one tuple of rules (cached: routes reuse their rule tuples)."""
    return script(frozenset(rule.algorithm for rule in rules))


def script_for_batch(scripts: Sequence[Script]) -> Script:
    """One script holding the algorithms of every check in a batch.

    Usually every check of a batch names the same script (the routes share their
    algorithms), and that script is returned as it is.
    """
    first = scripts[0]
    if all(s is first for s in scripts):
        return first
    if any(s.algorithms is None for s in scripts):
        return script(None)
    return script(frozenset().union(*(s.algorithms or () for s in scripts)))


def _params(rule: Rule) -> tuple[float | int, float | int]:
    """The two numbers each Lua mirror reads from the rule (see the file headers)."""
    algorithm = rule.algorithm
    if algorithm in ("gcra", "leaky_bucket"):
        return rule.interval, rule.tolerance
    if algorithm == "token_bucket":
        return rule.interval, rule.capacity
    return rule.period, rule.limit


@lru_cache(maxsize=1024)
def rule_args(rules: tuple[Rule, ...]) -> tuple[str, ...]:
    """``ARGV`` tail for ``rules``: per rule the algorithm name and two parameters.

    Cached: a route's rules are the same objects on every request, so the text is
    built once.
    """
    out: list[str] = []
    for rule in rules:
        a, b = _params(rule)
        out += (rule.algorithm, repr(a), repr(b))
    return tuple(out)


#: The script that renews a process's leases on one in-flight key (``lua/renew.lua``).
RENEW_SCRIPT = Script(resources.files("ratelimit_mw.backends").joinpath("lua").joinpath("renew.lua").read_text("utf-8"))


def argv(
    mode: str,
    keys: Sequence[str],
    rules: Sequence[Rule],
    cost: int,
    now: float | None,
    min_ttl_ms: str,
) -> list[Any]:
    """``numkeys, *KEYS, *ARGV`` for the script (see ``lua/check.lua``)."""
    tail = check_args(mode, keys, rules, cost, now, min_ttl_ms)
    return [tail[0], *keys, *tail[1:]]


def check_args(
    mode: str,
    keys: Sequence[str],
    rules: Sequence[Rule],
    cost: int,
    now: float | None,
    min_ttl_ms: str,
) -> list[Any]:
    """One check's ``ARGV`` headed by its number of keys: its part of a batch."""
    n = len(keys)
    if n != len(rules) or not n:
        raise ConfigError(f"need one storage key per rule, got {n} keys for {len(rules)} rules")
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ConfigError(f"cost must be a whole number >= 0, got {cost!r}")
    rule_tuple = rules if type(rules) is tuple else tuple(rules)
    return [n, mode, "" if now is None else repr(float(now)), str(cost), min_ttl_ms, *rule_args(rule_tuple)]


def min_ttl_ms(min_ttl: float) -> str:
    """The ``min_ttl`` option in whole milliseconds, as the script reads it."""
    if not math.isfinite(min_ttl) or min_ttl < 0:
        raise ConfigError(f"min_ttl must be >= 0 seconds, got {min_ttl!r}")
    return str(math.ceil(min_ttl * 1000))


def _steps(reply: Any, count: int, offset: int, stride: int) -> list[Step]:
    steps = []
    for i in range(count):
        j = offset + i * stride
        steps.append(
            Step(
                reply[j] == 1, None, int(reply[j + 1]), float(reply[j + 2]),
                float(reply[j + 3]), 0.0, float(reply[j + 4]),
            )
        )
    return steps


def _check(reply: Any, expected: int) -> None:
    if not isinstance(reply, list) or len(reply) != expected:
        raise BackendError(f"unexpected reply from the rate-limit script: {reply!r:.200}")


_new = tuple.__new__


def decode_hit(rules: Sequence[Rule], reply: Any) -> Decision:
    """Turn the script's per-rule values into a Decision via ``combine``.

    One rule (the common case) builds the Decision ``combine`` would build,
    directly: this runs once per check, and the detour cost ~1.5 us.
    """
    n = len(rules)
    if n == 1 and type(reply) is list and len(reply) == _FIELDS:
        rule = rules[0]
        allowed = reply[0] == 1
        return _new(Decision, (
            allowed, rule.capacity, int(reply[1]), float(reply[2]), float(reply[3]), rule,
            float(reply[4]), () if allowed else (rule.name,), False,
        ))
    _check(reply, n * _FIELDS)
    return combine(rules, _steps(reply, n, 0, _FIELDS))


def decode_peek(rules: Sequence[Rule], reply: Any) -> Decision:
    """The peek reply (a cost-0 and a cost-1 step per rule) as ``inspect`` reports it.

    Mirrors :func:`ratelimit_mw.core.evaluate.inspect`, which takes states: the
    script evaluates the steps where the states are, and this combines them the
    same way.
    """
    n = len(rules)
    _check(reply, 2 * n * _FIELDS)
    look = combine(rules, _steps(reply, n, 0, 2 * _FIELDS))
    probe = combine(rules, _steps(reply, n, _FIELDS, 2 * _FIELDS))
    return Decision(
        probe.allowed, look.limit, look.remaining, look.reset_after, probe.retry_after,
        look.rule, 0.0, probe.violated,
    )
