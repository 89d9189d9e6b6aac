"""Events reach structlog when the app configured it, else the standard logging module."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.engine import Engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.testing import FakeClock, FakeRequest
from tests.observability.helpers import POLICIES


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as an application that never configured it sees it."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    assert not structlog.is_configured()
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def _flood_one_key(clock: FakeClock) -> None:
    engine = Engine(load_policies(POLICIES), Limiter("memory://", clock=clock), wall_clock=clock)
    request = FakeRequest("GET", "/resource", {"x-api-key": "SECRET-abc"})
    decisions = [engine.decide(request).reject for _ in range(60)]
    assert any(decisions), "the policy must deny within 60 requests for this test to mean anything"


@pytest.mark.usefixtures("unconfigured_structlog")
def test_without_structlog_configuration_events_reach_the_ratelimit_mw_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="ratelimit_mw"):
        _flood_one_key(FakeClock())
    records = [r for r in caplog.records if r.name == "ratelimit_mw"]
    assert [r.event for r in records] == [log.RATE_LIMITED]  # type: ignore[attr-defined]
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.fields["route"] == "GET /resource"  # type: ignore[attr-defined]
    assert record.getMessage().startswith("rate_limited route=\"GET /resource\" ")
    assert "SECRET-abc" not in record.getMessage()


@pytest.mark.usefixtures("unconfigured_structlog")
def test_without_structlog_configuration_nothing_is_printed(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ratelimit_mw"):
        log.logger.warning(log.BREAKER_OPENED, old="closed", new="open")
    assert capsys.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records] == ["breaker_opened old=closed new=open"]


@pytest.mark.usefixtures("unconfigured_structlog")
def test_exception_events_carry_the_traceback_and_levels_are_respected(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="ratelimit_mw"):
        log.logger.info(log.POLICIES_RELOADED, origin="file")  # below the level: dropped
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.logger.exception(log.INTERNAL_ERROR, error="RuntimeError", detail="a b")
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == 'internal_error error=RuntimeError detail="a b"'


def test_with_structlog_configured_events_go_through_structlog_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ratelimit_mw"), capture_logs() as events:
        assert structlog.is_configured()
        _flood_one_key(FakeClock())
    assert [e["event"] for e in events] == [log.RATE_LIMITED]
    assert events[0]["log_level"] == "info" and events[0]["route"] == "GET /resource"
    assert not [r for r in caplog.records if r.name == "ratelimit_mw"]
