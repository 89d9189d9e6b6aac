"""Reading the remote side's rate-limit signals: which header wins, and how long to pause."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

from ratelimit_mw.core.signals import RemotePause, remote_pause

NOW = 1_800_000_000.0
DATE = format_datetime(datetime.fromtimestamp(NOW + 7, tz=timezone.utc), usegmt=True)

CASES = [
    pytest.param(429, {"Retry-After": "3"}, RemotePause(3.0, "retry-after"), id="429-retry-after-seconds"),
    pytest.param(503, {"Retry-After": DATE}, RemotePause(7.0, "retry-after"), id="503-retry-after-date"),
    pytest.param(200, {"Retry-After": "3"}, None, id="200-retry-after-ignored"),
    pytest.param(429, {}, None, id="429-without-hint"),
    pytest.param(429, {"Retry-After": "soon"}, None, id="429-unparsable-retry-after"),
    pytest.param(
        200, {"RateLimit": '"burst";r=0;t=4, "day";r=90;t=3600', "RateLimit-Policy": '"burst";q=10;w=4'},
        RemotePause(4.0, "ratelimit"), id="draft11-exhausted-item",
    ),
    pytest.param(200, {"RateLimit": '"burst";r=3;t=4'}, None, id="draft11-not-exhausted"),
    pytest.param(
        200, {"RateLimit": '"day";r=0', "RateLimit-Policy": '"day";q=1000;w=86400'},
        RemotePause(300.0, "ratelimit"), id="draft11-window-from-policy-capped",
    ),
    pytest.param(200, {"RateLimit": "limit=10, remaining=0, reset=6"}, RemotePause(6.0, "ratelimit"), id="draft07"),
    pytest.param(
        200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"}, RemotePause(5.0, "x-ratelimit"),
        id="x-ratelimit-delta",
    ),
    pytest.param(
        200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW + 12))},
        RemotePause(12.0, "x-ratelimit"), id="x-ratelimit-epoch",
    ),
    pytest.param(
        200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((NOW + 2) * 1000))},
        RemotePause(2.0, "x-ratelimit"), id="x-ratelimit-epoch-ms",
    ),
    pytest.param(200, {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "5"}, None, id="x-ratelimit-remaining"),
    pytest.param(
        200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"},
        RemotePause(90.0, "x-ratelimit"), id="openai-style-duration",
    ),
    pytest.param(
        429, {"Retry-After": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "50"},
        RemotePause(2.0, "retry-after"), id="retry-after-wins",
    ),
    pytest.param(429, {"Retry-After": "86400"}, RemotePause(300.0, "retry-after"), id="capped-by-max-pause"),
    pytest.param(429, {"Retry-After": "-5"}, None, id="negative-ignored"),
]


@pytest.mark.parametrize(("status", "headers", "expected"), CASES)
def test_remote_pause(status: int, headers: dict[str, str], expected: RemotePause | None) -> None:
    assert remote_pause(status, httpx.Headers(headers), NOW, max_pause=300.0) == expected
