"""``benchmarks.profile redis-wait`` still splits a request's time (its probes wrap two
private methods of the Redis channel, so a change there must show up here)."""

from __future__ import annotations

import re

import pytest

from benchmarks.profile import redis_wait

pytestmark = pytest.mark.slow


def test_redis_wait_splits_every_lone_request(capsys: pytest.CaptureFixture[str]) -> None:
    redis_wait(count=60, gap=0.001)
    out = capsys.readouterr().out
    split = re.search(r"in the server \((\d+) of (\d+) requests split\)", out)
    assert split is not None, out
    assert int(split.group(2)) >= 60 and int(split.group(1)) >= 50, out  # lone checks: nearly all split
    parts = {}
    for label in ("entry -> check written to Redis", "waiting for Redis's reply", "reply -> response start (app)",
                  "entry -> response start"):
        line = re.search(re.escape(label) + r"\s+(\d+)\s+(\d+)\s+(\d+)", out)
        assert line is not None, (label, out)
        parts[label] = int(line.group(1))
    assert 0 < parts["waiting for Redis's reply"] < parts["entry -> response start"]
    assert re.search(r"the demo route's script: [\d.]+ us \(\d+ calls\)", out), out
