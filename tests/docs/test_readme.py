"""The README stays lean, keeps the two quick-start commands, and its links resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_at_most_20_kb() -> None:
    assert len(README.encode("utf-8")) <= 20_000


def test_readme_keeps_the_two_quick_start_commands() -> None:
    assert re.search(r"^bash scripts/demo\.sh +#", README, re.M)
    assert re.search(r"^bash scripts/test\.sh +#", README, re.M)
    assert (ROOT / "scripts" / "demo.sh").is_file() and (ROOT / "scripts" / "test.sh").is_file()


def test_readme_has_an_example_per_framework() -> None:
    for name in ("FastAPI", "Starlette", "Flask", "Django"):
        assert f"**{name}" in README


def test_every_relative_link_of_the_readme_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(relative) >= 20
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_python_examples_compile() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, "README.md", "exec")
