"""``ratelimit-mw explain`` names where each limit comes from: YAML, the client's plan, or
code (decorators and dependencies of the app given with ``--app``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit_mw.cli import EXIT_NOT_FOUND, EXIT_OK, main

POLICIES = """\
version: 1
policies:
  free: {limits: ["2/minute"]}
  pro: {limits: ["4/minute"]}
plans: {default: free, free: free, pro: pro}
routes:
  - match: "GET /reports"
    plan: header:X-Plan
    key: [header:X-User, ip]
  - match: "GET /plain"
    limits: ["1/second;5/minute"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return str(path)


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(["explain", *argv, "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_yaml_limits_say_yaml(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = explain(capsys, policy_file, "GET", "/plain")
    assert report["source"] == "yaml" and len(report["limits"]) == 2


@pytest.mark.parametrize(("headers", "plan", "limit"), [
    (["-H", "X-Plan: pro"], "pro", "4/minute"),
    (["-H", "X-Plan: gold"], "free", "2/minute"),  # unknown: the default plan
    ([], "free", "2/minute"),
])
def test_plan_limits_say_which_plan(policy_file: str, capsys: pytest.CaptureFixture[str], headers: list[str],
                                    plan: str, limit: str) -> None:
    report = explain(capsys, policy_file, "GET", "/reports", *headers)
    assert (report["source"], report["resolved_plan"]) == ("plan", plan)
    assert report["limits"][0].startswith(limit)
    assert set(report["plan"]["plans"]) == {"free", "pro"}


def test_declared_limits_of_an_app(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = explain(capsys, policy_file, "GET", "/plain", "--app", "tests.asgi_frameworks.apps:fastapi_app")
    by_name = {entry["name"]: entry for entry in report["declared"]}
    assert by_name["dependency:GET /me"]["source"] == "dependency"
    assert [text.split(";")[0] for text in by_name["dependency:GET /team/a"]["limits"]] == ["1/second", "2/minute"]


def test_text_output_names_the_sources(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", policy_file, "GET", "/reports", "-H", "X-Plan: pro",
                 "--app", "tests.asgi_frameworks.apps:fastapi_app"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "plan: pro (from header:X-Plan)" in out and "(source: plan)" in out
    assert "dependency:GET /me: 3/minute" in out and "(source: dependency)" in out


def test_an_app_without_an_engine_is_a_usage_error(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", policy_file, "GET", "/plain", "--app", "json:dumps"]) == EXIT_NOT_FOUND
    assert "no rate-limit engine" in capsys.readouterr().err
