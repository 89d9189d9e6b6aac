"""``ratelimit-mw explain --app`` finds the engine of a Django project's WSGI handler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit_mw.cli import EXIT_OK, main
from tests.django_integration.project.limits import POLICIES


@pytest.mark.usefixtures("project")
def test_explain_lists_the_django_projects_decorated_views(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    argv = ["explain", str(path), "GET", "/reports", "--app", "tests.django_integration.project.wsgi:application",
            "--json"]
    assert main(argv) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    declared = {entry["name"]: entry for entry in report["declared"]}
    assert declared, "the decorated views are listed"
    assert all(entry["source"] == "decorator" for entry in declared.values())
    assert any(entry["limits"][0].startswith("3/minute") for entry in declared.values())
    assert report["source"] == "yaml" and report["limits"][0].startswith("3/minute")
