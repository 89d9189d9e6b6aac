"""The stubbed variants the ``asgi-parts`` and ``uvicorn-parts`` profiles cost parts by."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from benchmarks.apps import starlette_app, stub_admit


def _get(app: Any, *keys: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            return [await client.get("/resource", headers={"X-API-Key": key}) for key in keys]

    return asyncio.run(run())


def test_fixed_stub_sends_the_same_headers_whatever_the_client() -> None:
    first, second = _get(stub_admit(starlette_app("ours"), "fixed"), "a", "a")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-remaining"] == second.headers["x-ratelimit-remaining"]
    assert "ratelimit-policy" in first.headers


def test_none_stub_passes_requests_through_untouched() -> None:
    (response,) = _get(stub_admit(starlette_app("ours"), "none"), "a")
    assert response.status_code == 200
    assert not any(name.startswith(("x-ratelimit", "ratelimit")) for name in response.headers)


def test_real_app_counts_down_unlike_the_stub() -> None:
    first, second = _get(starlette_app("ours"), "a", "a")
    assert int(second.headers["x-ratelimit-remaining"]) == int(first.headers["x-ratelimit-remaining"]) - 1
