"""Every code sample of docs/outbound.md runs, against a stand-in for the remote APIs."""

from __future__ import annotations

import re
import runpy
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http_servers import ROOT

DOCS = ROOT / "docs"
SNIPPETS = sorted((DOCS / "snippets").glob("outbound_*.py"))
PAGE = DOCS / "outbound.md"


def _handler(request: httpx.Request) -> httpx.Response:
    if request.url.host == "api.github.com":
        return httpx.Response(200, headers={"x-ratelimit-remaining": "4999", "x-ratelimit-reset": "3600"})
    return httpx.Response(200, json={"ok": True})


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """httpx's own transports answer from ``_handler`` instead of the network."""
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.host}{request.url.path}")
        return _handler(request)

    monkeypatch.setattr(httpx, "HTTPTransport", lambda *a, **k: httpx.MockTransport(record))
    monkeypatch.setattr(httpx, "AsyncHTTPTransport", lambda *a, **k: httpx.MockTransport(record))
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield seen


def test_there_are_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.stem for p in SNIPPETS])
def test_snippet_runs(path: Path, remote: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{path.name} printed nothing"
    expected = {
        "outbound_transport": (["GET api.openai.com/v1/models"], "200"),
        "outbound_async": (["GET api.openai.com/v1/models"], "200"),
        "outbound_policies": (["POST api.openai.com/v1/images/generations"], "49"),
        "outbound_remote_signals": (["GET api.github.com/rate_limit"], "signal='retry-after'"),
        "outbound_metrics": (["GET api.openai.com/v1/models"], "1"),
        "outbound_decorator": ([], "sms to +15550100"),
        "outbound_seed_style": ([], "True 59"),
    }.get(path.stem)
    if expected is not None:
        assert remote == expected[0]
        assert expected[1] in out


def test_the_page_includes_every_snippet_and_holds_no_code_of_its_own() -> None:
    text = PAGE.read_text()
    included = re.findall(r'^--8<-- "([^"]+)"$', text, flags=re.MULTILINE)
    assert sorted(included) == sorted(f"docs/snippets/{p.name}" for p in SNIPPETS)
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks and all(re.fullmatch(r'--8<-- "[^"]+"\n', body) for _, body in blocks), blocks
