"""The shared pause of an outbound rule in Redis: one key holding when the pause ends.

Used by :meth:`RedisBackend.pause <ratelimit_mw.backends.redis.RedisBackend.pause>`.
The end is computed from the server's ``TIME`` inside the script, so every process
sees the same end whatever its own clock says, and the key expires when the pause
does, leaving nothing behind.
"""

from __future__ import annotations

import math
from typing import Any

from ratelimit_mw.backends.redis_lua import Script

__all__ = ["PAUSE_SCRIPT", "pause_args", "pause_reply"]

#: KEYS[1]: the pause key; ARGV[1]: milliseconds to pause from now (0: read only).
#: Extends, never shortens, a running pause. Returns the milliseconds left.
PAUSE_SCRIPT = Script(
    """local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local stop = tonumber(redis.call('GET', KEYS[1]) or '0')
if ms > 0 and now + ms > stop then
  stop = now + ms
  redis.call('SET', KEYS[1], stop, 'PX', ms)
end
if stop > now then return stop - now end
return 0
"""
)


def pause_args(key: str, seconds: float) -> list[Any]:
    """EVALSHA arguments after the script's SHA: one key, the pause in milliseconds."""
    return [1, key, max(0, math.ceil(seconds * 1000))]


def pause_reply(reply: Any) -> float:
    """The script's reply (milliseconds left) in seconds."""
    return max(0, int(reply)) / 1000.0
