"""The FastAPI and Starlette test apps in real uvicorn processes, over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.asgi_frameworks.client import ADMIN
from tests.support.http_servers import http_servers

APPS = ("tests.asgi_frameworks.apps:fastapi_app", "tests.asgi_frameworks.apps:starlette_app")


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    logs: Path = tmp_path_factory.mktemp("uvicorn-frameworks")
    specs = [
        (["uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
         logs / f"{i}.log", {"RATELIMIT_ENABLED": "true"})
        for i, app in enumerate(APPS)
    ]
    with http_servers(specs, ready_path="/health") as servers:  # type: ignore[arg-type]
        yield {"fastapi": servers[0].url, "starlette": servers[1].url}


def _statuses(client: httpx.Client, path: str, n: int, token: str | None = None) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return [client.get(path, headers=headers).status_code for _ in range(n)]


@pytest.mark.slow
def test_fastapi_dependency_over_http(urls: dict[str, str]) -> None:
    with httpx.Client(base_url=urls["fastapi"], timeout=5) as client:
        assert _statuses(client, "/me", 3, "token-alice") == [200, 200, 200]
        denied = client.get("/me", headers={"Authorization": "Bearer token-alice"})
        assert denied.status_code == 429 and int(denied.headers["Retry-After"]) >= 1
        assert denied.headers["X-RateLimit-Remaining"] == "0"
        assert denied.headers["Content-Type"] == "application/problem+json"
        assert _statuses(client, "/me", 3, "token-bob") == [200, 200, 200]
        assert _statuses(client, "/me", 2) == [200, 200]  # anonymous: the loopback address's bucket
        assert "429" in client.get("/openapi.json").json()["paths"]["/me"]["get"]["responses"]
        scrape = client.get("/metrics").text
        assert 'route="dependency:GET /me"' in scrape


@pytest.mark.slow
def test_starlette_plan_change_over_http(urls: dict[str, str]) -> None:
    with httpx.Client(base_url=urls["starlette"], timeout=5) as client:
        assert _statuses(client, "/reports", 3, "token-alice") == [200, 200, 429]
        patch = client.patch("/admin/policies", json={"plans": {"team": "pro"}}, headers={
            "Authorization": f"Bearer {ADMIN}", "Content-Type": "application/merge-patch+json"})
        assert patch.status_code == 200, patch.text
        assert _statuses(client, "/reports", 5, "token-alice") == [200, 200, 200, 200, 429]
        assert _statuses(client, "/data", 4, "token-bob") == [200, 200, 200, 429]
