"""Every code sample of the docs is a file in docs/snippets, and every file there runs.

``.py`` snippets are executed (tests/docs/snippet_runner.py, in a subprocess) and, when
they define an app, sent one request to a limited route; ``.yaml`` snippets are loaded with the policy
loader. The folder is globbed, so snippets added later (``outbound_*.py``) are covered
too. A fenced Python or YAML block written straight into a page fails the build of
this test, and so does a snippet no page includes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ratelimit_mw import PolicySet, load_policies

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
#: outbound_* snippets call third-party APIs: tests/outbound/test_outbound_snippets.py runs
#: them against a stand-in transport (never the network).
PY_SNIPPETS = sorted(p for p in SNIPPETS.glob("*.py") if not p.name.startswith("outbound_"))
YAML_SNIPPETS = sorted([*SNIPPETS.glob("*.yaml"), *SNIPPETS.glob("*.yml")])
PAGES = sorted(DOCS.glob("**/*.md"))
INCLUDE = re.compile(r'--8<--\s+"([^"]+)"')
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
MARK = "SNIPPET-RESULT "  # as in snippet_runner.py
NAME = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)+\.(?:py|ya?ml)$")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("snippets")
    shutil.copy(ROOT / "policies.example.yaml", work / "policies.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "REDIS_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("snippet_runner.py")), *map(str, PY_SNIPPETS)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            item = json.loads(line[len(MARK):])
            results[item["name"]] = item
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_there_are_snippets_of_both_kinds() -> None:
    assert len(PY_SNIPPETS) >= 20 and len(YAML_SNIPPETS) >= 10


@pytest.mark.parametrize("path", PY_SNIPPETS, ids=lambda p: p.name)
def test_python_snippet_runs(path: Path, executed: dict[str, dict[str, Any]]) -> None:
    result = executed.get(path.name)
    assert result is not None, f"{path.name}: the runner reported nothing (crashed before it?)"
    assert result["ok"], result["error"]
    if result["status"] is not None:  # an app: GET /resource went through it
        assert result["status"] < 500, f"{path.name}: GET /resource answered {result['status']}"
        if "policies.yaml" in path.read_text(encoding="utf-8"):
            assert result["limited"], f"{path.name}: GET /resource came back without rate-limit headers"


@pytest.mark.parametrize("path", YAML_SNIPPETS, ids=lambda p: p.name)
def test_yaml_snippet_is_a_valid_policy_file(path: Path) -> None:
    policies = load_policies(path, env={})
    assert isinstance(policies, PolicySet)
    assert policies.routes or policies.unmatched is not None


@pytest.mark.parametrize("path", sorted([*SNIPPETS.glob("*.py"), *YAML_SNIPPETS]), ids=lambda p: p.name)
def test_snippet_is_named_after_its_page_and_included(path: Path) -> None:
    assert NAME.match(path.name), f"{path.name}: expected <page>_<name>.py or .yaml"
    page = DOCS / (path.stem.split("_")[0] + ".md")
    including = [p for p in PAGES if f"docs/snippets/{path.name}" in INCLUDE.findall(p.read_text(encoding="utf-8"))]
    assert including, f"{path.name} is included by no page"
    assert any(p.name.startswith(path.stem.split("_")[0]) for p in including), (page, including)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_samples_live_in_snippets(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for include in INCLUDE.findall(text):
        assert (ROOT / include).is_file(), f"{page.name} includes a missing file {include}"
    for block in FENCE.finditer(text):
        if block["lang"] not in ("python", "py", "yaml", "yml"):
            continue  # shell commands, console sessions, HTTP headers
        body = [line.strip() for line in block["body"].splitlines() if line.strip()]
        assert len(body) == 1 and INCLUDE.fullmatch(body[0]), (
            f"{page.name}: a {block['lang']} block must be one --8<-- include of docs/snippets/..., got {body[:3]}"
        )
