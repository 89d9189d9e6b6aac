"""The remote side's own rate-limit signals, read from a response: how long to pause.

Pure (no I/O, no clock: the caller passes the wall-clock ``now`` for HTTP dates and
epoch resets). Read in this order, the first that applies wins:

1. ``429``/``503`` with ``Retry-After`` (delay-seconds or an HTTP date): RFC 9110.
2. ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-11): an item with ``r=0``
   pauses for its ``t``, or for its policy's ``w`` in ``RateLimit-Policy`` when it
   has no ``t``. The older single-item form ``limit=.., remaining=0, reset=5`` too.
3. ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` (delta seconds, or epoch
   seconds as GitHub sends), ``X-RateLimit-Reset-After``, or OpenAI's
   ``x-ratelimit-remaining-requests: 0`` with ``x-ratelimit-reset-requests: 6m0s``.

A 429 without any usable hint pauses nothing here: the caller's own limit keeps
pacing. Every pause is capped by ``max_pause``, so a wrong or hostile header
cannot stop the caller for a day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import NamedTuple

__all__ = ["RemotePause", "remote_pause"]

#: Epoch values are at least this (2001-09-09); smaller resets are delta seconds.
_EPOCH_FLOOR = 1e9
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SF_PARAM = re.compile(r"""\s*;\s*([a-z*][a-z0-9_.*-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]+))?""")


class RemotePause(NamedTuple):
    """A pause the remote side asked for.

    Attributes:
        seconds: how long to send nothing more under this rule (> 0, capped).
        signal: which header said so: ``retry-after``, ``ratelimit`` or ``x-ratelimit``.
    """

    seconds: float
    signal: str


def remote_pause(
    status: int, headers: Mapping[str, str], now: float, *, max_pause: float = 300.0
) -> RemotePause | None:
    """How long the response asks its sender to wait, or ``None``.

    Args:
        status: the response's status code.
        headers: its headers (``httpx.Headers`` or a plain mapping; names in any case).
        now: wall-clock seconds since the epoch, for dates and epoch resets.
        max_pause: the longest pause honoured, in seconds.
    """
    # One pass over the names: most responses carry no rate-limit header at all, and a
    # case-insensitive lookup per candidate name (httpx.Headers.get) costs more.
    relevant = {
        low: value
        for name, value in headers.items()
        if name[:1] in "rRxX" and ((low := name.lower()) == "retry-after" or "ratelimit" in low)
    }
    if not relevant:
        return None
    found = _read(status, relevant, now)
    if found is None or not found[0] > 0:
        return None
    return RemotePause(min(found[0], max_pause), found[1])


def _read(status: int, headers: Mapping[str, str], now: float) -> tuple[float, str] | None:
    if status in (429, 503):
        retry = headers.get("retry-after")
        if retry:
            seconds = _retry_after(retry, now)
            if seconds is not None:
                return seconds, "retry-after"
    current = headers.get("ratelimit")
    if current:
        seconds = _ratelimit(current, headers.get("ratelimit-policy"))
        if seconds is not None:
            return seconds, "ratelimit"
    for remaining_name, reset_names in (
        ("x-ratelimit-remaining", ("x-ratelimit-reset-after", "x-ratelimit-reset")),
        ("x-ratelimit-remaining-requests", ("x-ratelimit-reset-requests",)),
    ):
        remaining = _number(headers.get(remaining_name))
        if remaining is None or remaining > 0:
            continue
        for name in reset_names:
            value = headers.get(name)
            if value is None:
                continue
            seconds = _reset(value, now, after=name.endswith("-after"))
            if seconds is not None:
                return seconds, "x-ratelimit"
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _retry_after(value: str, now: float) -> float | None:
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - now


def _reset(value: str, now: float, *, after: bool) -> float | None:
    number = _number(value)
    if number is None:
        return _go_duration(value)
    if after or number < _EPOCH_FLOOR:
        return number
    if number > _EPOCH_FLOOR * 1000:  # epoch milliseconds
        number /= 1000
    return number - now


def _go_duration(value: str) -> float | None:
    """``"6m0s"``, ``"1.5s"``, ``"20ms"`` (OpenAI's reset headers) -> seconds."""
    text = value.strip()
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _items(text: str) -> list[tuple[str, dict[str, str]]]:
    """A Structured Fields list of items with parameters, leniently (RFC 9651 subset)."""
    out: list[tuple[str, dict[str, str]]] = []
    pos, size = 0, len(text)
    while pos < size:
        while pos < size and text[pos] in " \t,":
            pos += 1
        if pos >= size:
            break
        if text[pos] == '"':
            end = pos + 1
            while end < size and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            name, pos = text[pos + 1 : end], end + 1
        else:
            end = pos
            while end < size and text[end] not in ";,":
                end += 1
            name, pos = text[pos:end].strip(), end
        params: dict[str, str] = {}
        while pos < size and text[pos] != ",":
            match = _SF_PARAM.match(text, pos)
            if match is None:
                while pos < size and text[pos] != ",":
                    pos += 1
                break
            params[match.group(1)] = (match.group(2) or "").strip('"')
            pos = match.end()
        out.append((name, params))
    return out


def _ratelimit(current: str, policy: str | None) -> float | None:
    if "remaining=" in current.lower():  # draft 03-07: "limit=100, remaining=0, reset=5"
        fields = dict(
            (k.strip().lower(), v.strip()) for k, _, v in (p.partition("=") for p in current.split(","))
        )
        remaining, reset = _number(fields.get("remaining")), _number(fields.get("reset"))
        return reset if remaining is not None and remaining <= 0 else None
    windows = {name: _number(params.get("w")) for name, params in _items(policy)} if policy else {}
    longest: float | None = None
    for name, params in _items(current):
        remaining = _number(params.get("r"))
        if remaining is None or remaining > 0:
            continue
        wait = _number(params.get("t"))
        if wait is None:
            wait = windows.get(name)
        if wait is not None and (longest is None or wait > longest):
            longest = wait
    return longest
