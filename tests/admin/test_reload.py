"""File and SIGHUP reloads, driven through ``check_once`` (no sleeps)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.engine import Engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.reload import PolicyReloader, install_sighup_reload, watch_policies
from ratelimit_mw.testing import FakeClock, FakeRequest

GOOD = 'version: 1\nroutes:\n  - match: "GET /resource"\n    limits: ["5/minute"]\n'
NEWER = 'version: 1\nroutes:\n  - match: "GET /resource"\n    limits: ["2/minute"]\n'
BAD = 'version: 1\nroutes:\n  - match: "GET /resource"\n    limits: ["lots"]\n'


def _write(path: Path, text: str, mtime: int) -> None:
    """Write and set an explicit mtime, so the test never depends on clock granularity."""
    path.write_text(text)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Engine, Path, PolicyReloader]:
    path = tmp_path / "policies.yaml"
    _write(path, GOOD, 1000)
    engine = Engine(load_policies(path), Limiter("memory://", clock=FakeClock()))
    return engine, path, watch_policies(engine, path, start=False)


def _limit(engine: Engine) -> int:
    verdict = engine.decide(FakeRequest("GET", "/resource"))
    assert verdict is not None
    return verdict.decision.limit


def test_unchanged_file_is_not_reloaded(setup: tuple[Engine, Path, PolicyReloader]) -> None:
    engine, path, reloader = setup
    before = engine.policies
    with capture_logs() as events:
        assert reloader.check_once() is None
        _write(path, GOOD, 2000)  # touched, same content
        assert reloader.check_once() is None
    assert engine.policies is before and events == []


def test_a_changed_file_is_reloaded_once(setup: tuple[Engine, Path, PolicyReloader]) -> None:
    engine, path, reloader = setup
    assert _limit(engine) == 5
    _write(path, NEWER, 2000)
    with capture_logs() as events:
        assert reloader.check_once() is True
        assert reloader.check_once() is None
    assert _limit(engine) == 2
    assert [(e["event"], e["origin"], e["path"]) for e in events] == [(log.POLICIES_RELOADED, "file", str(path))]


def test_a_bad_file_keeps_the_old_policies_and_is_reported_once(
    setup: tuple[Engine, Path, PolicyReloader],
) -> None:
    engine, path, reloader = setup
    before = engine.policies
    _write(path, BAD, 2000)
    with capture_logs() as events:
        assert reloader.check_once() is False
        _write(path, BAD, 3000)  # same bad content again: not re-reported
        assert reloader.check_once() is None
    assert engine.policies is before and _limit(engine) == 5
    [failed] = events
    assert failed["event"] == log.POLICIES_RELOAD_FAILED and failed["log_level"] == "error"
    assert (failed["file"], failed["line"], failed["field"]) == (str(path), 4, "routes[0].limits[0]")
    assert "lots" in failed["reason"]

    _write(path, NEWER, 4000)  # fixed
    with capture_logs() as events:
        assert reloader.check_once() is True
    assert _limit(engine) == 2 and events[0]["event"] == log.POLICIES_RELOADED


def test_a_deleted_then_restored_file(setup: tuple[Engine, Path, PolicyReloader]) -> None:
    engine, path, reloader = setup
    path.unlink()
    with capture_logs() as events:
        assert reloader.check_once() is False
    assert events[0]["reason"] == "file not found" and _limit(engine) == 5
    _write(path, NEWER, 2000)
    assert reloader.check_once() is True and _limit(engine) == 2


def test_a_rename_over_the_file_is_seen(setup: tuple[Engine, Path, PolicyReloader]) -> None:
    engine, path, reloader = setup
    staged = path.with_suffix(".tmp")
    _write(staged, NEWER, 1000)  # same mtime as the original: size and content differ
    staged.replace(path)
    assert reloader.check_once() is True and _limit(engine) == 2


def test_the_background_thread_starts_and_stops(setup: tuple[Engine, Path, PolicyReloader]) -> None:
    _, _, reloader = setup
    reloader.interval = 0.01
    reloader.start()
    assert reloader._thread is not None and reloader._thread.is_alive()
    reloader.stop()
    assert reloader._thread is None


@pytest.fixture
def restore_sighup() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_sighup_reloads(setup: tuple[Engine, Path, PolicyReloader], restore_sighup: None) -> None:
    engine, path, _ = setup
    calls: list[int] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: calls.append(signum))
    reloader = install_sighup_reload(engine, path)
    _write(path, NEWER, 2000)
    with capture_logs() as events:
        os.kill(os.getpid(), signal.SIGHUP)
        assert reloader.signal_thread is not None
        reloader.signal_thread.join(timeout=10)
    assert _limit(engine) == 2
    assert calls == [signal.SIGHUP]  # the previous handler still ran
    assert events[0]["event"] == log.POLICIES_RELOADED

    with capture_logs() as events:  # a forced reload of unchanged content still reloads
        os.kill(os.getpid(), signal.SIGHUP)
        reloader.signal_thread.join(timeout=10)
    assert [e["event"] for e in events] == [log.POLICIES_RELOADED]
