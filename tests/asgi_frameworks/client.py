"""A small synchronous client over httpx's ASGI transport, choosing the peer address."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

ADMIN = "asgi-frameworks-admin-token-0123456789"


class Client:
    """Requests run on ``loop`` when given (one loop for apps whose backend keeps async
    connections, e.g. Redis), else each on a fresh loop."""

    def __init__(self, app: Any, ip: str = "203.0.113.9", loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.app = app
        self.ip = ip
        self.loop = loop

    def request(self, method: str, path: str, *, token: str | None = None, ip: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(ip or self.ip, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, path, headers=sent, **kwargs)

        return self.loop.run_until_complete(go()) if self.loop is not None else asyncio.run(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def statuses(self, path: str, n: int, **kwargs: Any) -> list[int]:
        return [self.get(path, **kwargs).status_code for _ in range(n)]

    def patch_policies(self, patch: dict[str, Any]) -> httpx.Response:
        return self.request("PATCH", "/admin/policies", json=patch, headers={
            "Authorization": f"Bearer {ADMIN}", "Content-Type": "application/merge-patch+json"})
