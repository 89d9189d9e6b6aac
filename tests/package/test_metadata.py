"""The package's metadata: license, classifiers, URLs, extras only for what the code imports."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_classifier_exists_and_the_expected_ones_are_there() -> None:
    listed = PROJECT["classifiers"]
    unknown = [c for c in listed if c not in KNOWN_CLASSIFIERS]
    assert not unknown, f"PyPI would refuse these classifiers: {unknown}"
    for wanted in ("Typing :: Typed", "Framework :: FastAPI", "Framework :: Flask", "Framework :: Django"):
        assert wanted in listed


def test_python_version_classifiers_match_requires_python() -> None:
    low = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", PROJECT["requires-python"]).groups())  # type: ignore[union-attr]
    versions = [
        tuple(int(x) for x in c.rsplit(" ", 1)[1].split("."))
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions and min(versions) == low


def test_license_file_is_mit_as_declared() -> None:
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_project_urls_are_https() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


def test_version_has_one_source() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]


def _imports_of(library: str) -> list[str]:
    pattern = re.compile(rf"^\s*(?:import|from)\s+{library}\b", re.M)
    return [str(p) for p in (ROOT / "ratelimit_mw").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]


# werkzeug comes with Flask: only ratelimit_mw.flask imports it, under the `flask` extra.
@pytest.mark.parametrize(("extra", "library"), [("redis", "redis"), ("prometheus", "prometheus_client"),
                                                  ("starlette", "starlette"), ("flask", "(?:flask|werkzeug)"),
                                                  ("fastapi", "fastapi")])
def test_an_extra_exists_exactly_when_the_package_imports_its_library(extra: str, library: str) -> None:
    assert (extra in PROJECT["optional-dependencies"]) == bool(_imports_of(library)), _imports_of(library)


def test_development_tools_are_not_user_extras() -> None:
    extras = PROJECT["optional-dependencies"]
    for tool in ("pytest", "mypy", "ruff", "mkdocs", "twine"):
        assert not any(tool in req for reqs in extras.values() for req in reqs), tool
