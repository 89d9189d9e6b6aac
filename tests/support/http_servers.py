"""Real HTTP server processes (uvicorn, gunicorn) on free loopback ports, for tests.

One place for what every end-to-end test needs: pick a port, start the server with
the repo on ``PYTHONPATH``, log to a file (a pipe could fill and block a chatty
server), poll readiness with a bounded deadline, and always stop the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.redis_servers import free_port

__all__ = ["ROOT", "ServerProcess", "http_server", "http_servers"]

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """One server process started with ``python -m <argv...>``; ``{port}`` in argv is filled in.

    Args:
        argv: arguments after ``python -m``, e.g. ``["uvicorn", "app:app", "--port", "{port}"]``.
        log_path: file receiving the server's stdout and stderr.
        env: extra environment variables (on top of ``os.environ`` and ``PYTHONPATH``).
    """

    def __init__(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port(bus_offset=None)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *(a.replace("{port}", str(self.port)) for a in argv)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, is_ready: Callable[[str], bool], deadline: float) -> None:
        """Poll ``is_ready(url)`` until true; fail with the log tail at ``deadline``."""
        while True:
            try:
                if is_ready(self.url):
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"server {self.url} did not start: {tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate, then kill if it does not exit within 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _default_ready(path: str) -> Callable[[str], bool]:
    return lambda url: httpx.get(url + path, timeout=0.5).status_code < 500


@contextmanager
def http_servers(
    specs: Sequence[tuple[Sequence[str], Path, Mapping[str, str] | None]],
    *,
    ready: Callable[[str], bool] | None = None,
    ready_path: str = "/",
    timeout: float = 20.0,
) -> Iterator[list[ServerProcess]]:
    """Start several servers (concurrently), wait until all answer, stop them all after."""
    is_ready = ready or _default_ready(ready_path)
    with ExitStack() as stack:
        servers = []
        for argv, log_path, env in specs:
            server = ServerProcess(argv, log_path, env)
            stack.callback(server.stop)
            servers.append(server)
        deadline = time.monotonic() + timeout
        for server in servers:
            server.wait_ready(is_ready, deadline)
        yield servers


@contextmanager
def http_server(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    **options: object,
) -> Iterator[str]:
    """One server: yields its base URL."""
    with http_servers([(argv, log_path, env)], **options) as (server,):  # type: ignore[arg-type]
        yield server.url
