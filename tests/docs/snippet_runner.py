"""Runs documentation snippets in a fresh interpreter and reports each as a JSON line.

Usage: ``python tests/docs/snippet_runner.py SNIPPET.py...`` from a directory holding
the ``policies.yaml`` the snippets name. A snippet passes when it executes without an
exception. Then, if it defines an app (``app``, ``application``, ``limited``) and talks
to no Redis, one ``GET /resource`` goes through it (a limited route of
policies.example.yaml); the status and whether rate-limit headers came back are
reported. Snippets that
show another library's code (``*_theirs*``) are executed, never sent requests.

Snippets run in one process, one after the other, so side effects (structlog or
logging configuration, a reload thread, Django settings) stay out of the test
process. Snippets whose name contains ``django`` run with minimal Django settings.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import runpy
import sys
import traceback
import types
from pathlib import Path
from typing import Any

APP_NAMES = ("app", "application", "limited")
#: Prefix of the result lines (snippets print too).
MARK = "SNIPPET-RESULT "


def _django() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    urls = types.ModuleType("snippet_urls")
    urls.urlpatterns = []  # type: ignore[attr-defined]
    sys.modules["snippet_urls"] = urls
    settings.configure(
        SECRET_KEY="snippets", DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF="snippet_urls",
        INSTALLED_APPS=[], MIDDLEWARE=[], USE_TZ=True,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    )
    django.setup()


def _is_asgi(app: Any) -> bool:
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def _one_request(app: Any) -> Any:
    import httpx

    if _is_asgi(app):
        async def get() -> Any:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://snippet") as client:
                return await client.get("/resource")

        return asyncio.run(get())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://snippet") as client:
        return client.get("/resource")


def run(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"name": path.name, "ok": False, "status": None, "limited": None, "error": None}
    try:
        if "django" in path.name:
            _django()
        namespace = runpy.run_path(str(path), run_name="__snippet__")
        source = path.read_text(encoding="utf-8")
        if "_theirs" not in path.stem and "redis" not in source:
            app = next((namespace[n] for n in APP_NAMES if callable(namespace.get(n))), None)
            if app is not None:
                response = _one_request(app)
                result["status"] = response.status_code
                result["limited"] = "ratelimit-policy" in response.headers
        result["ok"] = True
    except BaseException:  # a snippet calling sys.exit is a failure too
        result["error"] = traceback.format_exc(limit=6)
    return result


def main(argv: list[str]) -> int:
    for arg in argv:
        print(MARK + json.dumps(run(Path(arg))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
