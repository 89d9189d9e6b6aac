"""Smoke test of an installed wheel, run by scripts/test.sh in a fresh virtualenv.

Usage: ``VENV/bin/python smoke_installed.py POLICIES.yaml`` from a directory outside
the checkout, so ``import ratelimit_mw`` can only find the installed package. Needs
nothing but the wheel and its dependencies: the requests are plain ASGI and WSGI calls.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ratelimit_mw
from ratelimit_mw import RateLimitMiddleware, WSGIRateLimitMiddleware

POLICIES = {"version": 1, "routes": [{"match": "GET /hello", "limits": ["1/minute"]}]}


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"smoke test failed: {what}")


def asgi_statuses() -> list[int]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hi"})

    middleware = RateLimitMiddleware(app, policies=POLICIES, backend="memory://")
    statuses: list[int] = []

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/hello", "raw_path": b"/hello", "root_path": "", "query_string": b"",
                 "headers": [(b"host", b"smoke")], "client": ("203.0.113.7", 5000), "server": ("smoke", 80)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await middleware(scope, receive, send)

    for _ in range(2):
        asyncio.run(one())
    return statuses


def wsgi_statuses() -> list[int]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    middleware = WSGIRateLimitMiddleware(app, policies=POLICIES, backend="memory://")
    statuses: list[int] = []
    for _ in range(2):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "SCRIPT_NAME": "", "QUERY_STRING": "",
                   "SERVER_NAME": "smoke", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "REMOTE_ADDR": "203.0.113.7", "wsgi.url_scheme": "http"}

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            statuses.append(int(status.split()[0]))

        b"".join(middleware(environ, start_response))
    return statuses


def main() -> None:
    location = Path(ratelimit_mw.__file__).resolve()
    check("site-packages" in location.parts, f"imported from {location}, not from the installed wheel")
    check(ratelimit_mw.__version__ == version("ratelimit_mw"), "__version__ differs from the metadata")
    cli = subprocess.run([str(Path(sys.executable).with_name("ratelimit-mw")), "check", sys.argv[1]],
                         capture_output=True, text=True, check=False)
    check(cli.returncode == 0 and "GET /resource" in cli.stdout, f"ratelimit-mw check: {cli.returncode} {cli.stderr}")
    check(asgi_statuses() == [200, 429], "ASGI: expected 200 then 429")
    check(wsgi_statuses() == [200, 429], "WSGI: expected 200 then 429")
    print(f"smoke test passed: ratelimit_mw {ratelimit_mw.__version__} from {location.parent}")


if __name__ == "__main__":
    main()
