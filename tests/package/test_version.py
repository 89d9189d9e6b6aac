"""One version: the package attribute, the CLI and the installed metadata agree."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

import ratelimit_mw
from ratelimit_mw.cli import main


def test_version_attribute_is_the_installed_metadata_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", ratelimit_mw.__version__)
    assert version("ratelimit_mw") == ratelimit_mw.__version__


def test_cli_version_prints_the_same_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ratelimit-mw {ratelimit_mw.__version__}"


def test_changelog_has_an_entry_for_this_version() -> None:
    from pathlib import Path

    changelog = (Path(__file__).parents[2] / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(ratelimit_mw.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
