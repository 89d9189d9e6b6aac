"""``ratelimit-mw explain --app`` finds the Flask extension's engine and lists the decorators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit_mw.cli import EXIT_OK, main
from tests.flask_integration.flask_apps import POLICIES


def test_explain_lists_the_flask_apps_decorated_views(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    argv = ["explain", str(path), "GET", "/reports", "--app", "tests.flask_integration.flask_apps:app", "--json"]
    assert main(argv) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    by_name = {entry["name"]: entry for entry in report["declared"]}
    search = by_name["view:tests.flask_integration.flask_apps.search"]
    assert search["source"] == "decorator" and search["limits"][0].startswith("3/minute")
    assert by_name["blueprint:api"]["limits"][0].startswith("2/minute")
    assert report["source"] == "yaml" and report["limits"][0].startswith("3/minute")
