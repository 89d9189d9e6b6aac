"""What every section gets: the mode (full or smoke), shared servers, logging, cleanup."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.servers import RedisHandle, start_redis

__all__ = ["Context", "PEERS", "missing_peer"]

#: Peer distribution -> module it is imported as.
PEERS = {
    "limits": "limits",
    "slowapi": "slowapi",
    "flask-limiter": "flask_limiter",
    "throttled-py": "throttled",
}


def missing_peer(name: str) -> str | None:
    """``None`` when peer ``name`` imports, else why not (rows are then skipped, not failed)."""
    try:
        importlib.import_module(PEERS[name])
    except ImportError as exc:
        return f"{name} not installed ({exc}); pip install -e '.[all]' --group bench"
    return None


@dataclass
class Context:
    """Run-wide settings and resources.

    Attributes:
        smoke: tiny counts, one repeat: checks that every section still works.
        repeats: interleaved repeats per subject (medians, min and max are over these).
        workdir: scratch directory for logs and schedules (removed at the end).
    """

    smoke: bool
    repeats: int
    workdir: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _redis: RedisHandle | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def create(cls, *, smoke: bool, repeats: int | None = None) -> Context:
        stack = contextlib.ExitStack()
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rlbench-")))
        return cls(smoke=smoke, repeats=repeats or (1 if smoke else 7), workdir=workdir, stack=stack)

    def n(self, full: int, smoke: int) -> int:
        """A count: ``full`` normally, ``smoke`` in smoke mode."""
        return smoke if self.smoke else full

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def redis(self) -> RedisHandle:
        """The run's Redis server, started on first use and stopped at the end."""
        if self._redis is None:
            handle = start_redis()
            self.stack.callback(handle.stop)
            self._redis = handle
            self.log(f"redis: {handle.description} at {handle.url}")
        return self._redis

    def redis_flush(self) -> Any:
        """FLUSHALL + CONFIG RESETSTAT on the run's server; returns a fresh client (caller closes)."""
        client = self.redis().client()
        client.flushall()
        client.config_resetstat()
        return client

    def close(self) -> None:
        self.stack.close()

    @staticmethod
    def loadavg() -> tuple[float, float, float]:
        try:
            return os.getloadavg()
        except OSError:  # pragma: no cover - not on Linux
            return (float("nan"),) * 3
