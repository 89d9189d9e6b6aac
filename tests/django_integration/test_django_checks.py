"""Bad configuration fails at start-up with a clear error: ``manage.py check`` names the
policy file, line and field; a decorator rate that does not parse fails at import."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit_mw.errors import ConfigError
from ratelimit_mw.testing import FakeClock
from tests.django_integration.conftest import project_settings

BAD_POLICY = """version: 1
routes:
  - match: "GET /reports"
    limits: ["3/fortnight"]
"""


def test_manage_py_check_names_the_file_line_and_field_of_a_bad_policy(
        tokens: dict[str, str], clock: FakeClock, tmp_path: Path) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    policy = tmp_path / "policies.yaml"
    policy.write_text(BAD_POLICY)
    with project_settings(clock, RATELIMIT_POLICIES=str(policy)), pytest.raises(SystemCheckError) as raised:
        call_command("check")
    message = str(raised.value)
    assert "ratelimit_mw.E001" in message
    assert f"{policy}:4" in message and "routes[0].limits[0]" in message


def test_a_bad_setting_is_a_check_error(tokens: dict[str, str], clock: FakeClock) -> None:
    from django.core.checks import run_checks

    with project_settings(clock, RATELIMIT_ENABLED="maybe"):
        errors = [m for m in run_checks(tags=["ratelimit_mw"]) if m.id == "ratelimit_mw.E002"]
    assert errors and "RATELIMIT_ENABLED" in errors[0].msg


def test_the_project_passes_the_checks(tokens: dict[str, str], clock: FakeClock) -> None:
    from django.core.checks import run_checks

    with project_settings(clock):
        assert [m for m in run_checks(tags=["ratelimit_mw"])] == []


def test_the_middleware_refuses_to_start_on_a_bad_policy(tokens: dict[str, str], clock: FakeClock) -> None:
    from django.test import Client

    with project_settings(clock, RATELIMIT_POLICIES=BAD_POLICY), pytest.raises(ConfigError, match="limits"):
        Client().get("/health")  # the handler loads the middleware: start-up, not a request's 500


def test_a_decorator_rate_that_does_not_parse_fails_at_import() -> None:
    from ratelimit_mw.django import ratelimit

    with pytest.raises(ConfigError, match="5/fortnight"):
        @ratelimit("5/fortnight")
        def view(request: object) -> None: ...

    with pytest.raises(ConfigError, match="key"):
        ratelimit("5/minute", key="header:")


def test_a_throttle_subclass_with_a_bad_rate_fails_at_import() -> None:
    from ratelimit_mw.django import RateLimitThrottle

    with pytest.raises(ConfigError, match="nonsense"):
        class Broken(RateLimitThrottle):
            limits = "nonsense"
