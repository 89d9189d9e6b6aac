"""Reload policies from their file when it changes, or on ``SIGHUP``.

A reload validates the new file completely before anything changes: a bad file
keeps the old policies in force and logs ``policies_reload_failed`` with the
file, line and field of the problem; a good one is swapped in atomically
(:meth:`~ratelimit_mw.engine.Engine.set_policies`) and logs ``policies_reloaded``.

Change detection is a ``stat`` per check (inode, mtime, ctime and size); only when
those move is the file read, and it is reloaded only if its content hash differs from the last
one seen. Editors that save by rename, ``touch``, and Kubernetes ConfigMap symlink
swaps are all caught, and a content that failed once is not retried (nor logged
again) until it changes.

Under gunicorn, ``kill -HUP <master>`` already restarts the workers, which then
read the file afresh; :func:`install_sighup_reload` is for single-process servers
such as uvicorn. With :mod:`ratelimit_mw.policy_sync`, Redis is the shared source
of truth: publish file changes through the admin API instead of watching files on
each node.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ratelimit_mw import log
from ratelimit_mw.errors import PolicyError
from ratelimit_mw.policy.loader import load_policies

__all__ = ["PolicyReloader", "install_sighup_reload", "watch_policies"]


class PolicyReloader:
    """Reloads ``path`` into ``engine`` when the file's content changes.

    The content present at construction counts as loaded (the engine is assumed to
    run it already), so the first check reloads only if the file changed since.

    Args:
        engine: the :class:`~ratelimit_mw.engine.Engine` (or a middleware with ``.engine``).
        path: the policy file.
        interval: seconds between checks of the background thread (:meth:`start`).
        env: variables for ``${VAR}`` interpolation (default ``os.environ``).
    """

    def __init__(
        self,
        engine: Any,
        path: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = getattr(engine, "engine", engine)
        self.path = Path(path)
        self.interval = interval
        self.env = env
        self._lock = threading.Lock()
        self._stat = self._stat_now()
        self._digest = self._digest_now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The thread started by the last ``SIGHUP`` (join it to wait for that reload).
        self.signal_thread: threading.Thread | None = None

    def _stat_now(self) -> tuple[int, int, int, int] | None:
        try:
            st = self.path.stat()  # follows symlinks: a ConfigMap swap changes the target inode
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size

    def _digest_now(self) -> str | None:
        try:
            return hashlib.blake2b(self.path.read_bytes(), digest_size=16).hexdigest()
        except OSError:
            return None

    def check_once(self, *, force: bool = False) -> bool | None:
        """Reload if the file changed (always, with ``force``).

        Returns:
            ``True`` when new policies were applied, ``False`` when the new content
            was rejected (old policies kept), ``None`` when nothing changed.
        """
        with self._lock:
            stat = self._stat_now()
            if not force and stat == self._stat:
                return None
            self._stat = stat
            digest = self._digest_now()
            if not force and digest == self._digest:
                return None
            self._digest = digest
            try:
                policies = load_policies(self.path, env=self.env)
            except PolicyError as exc:
                log.logger.error(
                    log.POLICIES_RELOAD_FAILED,
                    origin="file",
                    path=str(self.path),
                    error=str(exc),
                    **exc.to_dict(),
                )
                return False
            self.engine.set_policies(policies)
            log.logger.info(
                log.POLICIES_RELOADED,
                origin="file",
                path=str(self.path),
                routes=len(policies.routes),
                digest=digest,
            )
            return True

    def start(self) -> PolicyReloader:
        """Check every ``interval`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ratelimit-policy-reload", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (waits for a check in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception as exc:  # never let the watcher die silently
                log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, component="reload")


def watch_policies(
    engine: Any,
    path: str | os.PathLike[str],
    *,
    interval: float = 1.0,
    env: Mapping[str, str] | None = None,
    start: bool = True,
) -> PolicyReloader:
    """Reload ``path`` into ``engine`` whenever it changes; returns the running reloader.

    Args:
        engine: an Engine or a middleware.
        path: the policy file the engine was built from.
        interval: seconds between checks.
        env: variables for ``${VAR}`` interpolation (default ``os.environ``).
        start: start the background thread now (``False``: call ``check_once`` yourself).
    """
    reloader = PolicyReloader(engine, path, interval=interval, env=env)
    return reloader.start() if start else reloader


def install_sighup_reload(
    engine: Any, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> PolicyReloader:
    """Reload ``path`` on ``SIGHUP`` (call from the main thread).

    The signal handler only starts a short-lived thread: loading YAML inside a
    handler could deadlock on a lock the interrupted code holds. A previously
    installed Python handler is still called.

    Raises:
        ValueError: not called from the main thread (a Python signal rule).
    """
    reloader = PolicyReloader(engine, path, env=env)
    previous = signal.getsignal(signal.SIGHUP)

    def on_sighup(signum: int, frame: Any) -> None:
        thread = threading.Thread(
            target=reloader.check_once, kwargs={"force": True}, name="ratelimit-sighup-reload", daemon=True
        )
        reloader.signal_thread = thread
        thread.start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGHUP, on_sighup)
    return reloader
