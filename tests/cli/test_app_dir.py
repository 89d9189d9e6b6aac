"""``--app-dir``: the CLI imports a project's own modules (``call:`` specs) from it, as uvicorn does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ratelimit_mw.cli import EXIT_INVALID, EXIT_OK, main

POLICIES = """
version: 1
routes:
  - match: "GET /data"
    limits: ["5/minute"]
    key: call:tenant_keys_for_cli_test:key_of
"""


def test_call_specs_import_from_the_app_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tenant_keys_for_cli_test.py").write_text("def key_of(request):\n    return 'tenant'\n")
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(Path.cwd()))])
    monkeypatch.chdir(tmp_path)  # the module is not in the current directory
    assert main(["check", str(policies)]) == EXIT_INVALID
    assert "cannot import module 'tenant_keys_for_cli_test'" in capsys.readouterr().err
    assert main(["--app-dir", str(project), "check", str(policies)]) == EXIT_OK
    assert "GET /data" in capsys.readouterr().out
