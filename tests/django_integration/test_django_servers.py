"""The Django project under real server processes over loopback HTTP: uvicorn running
``get_asgi_application()`` (the middleware in async mode) and gunicorn running
``get_wsgi_application()``. Users log in through the login view (session cookie) or
send a DRF token; the database is the test process's SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.django_setup import DATABASE_PATH
from tests.support.http_servers import http_server

SERVERS = {
    "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
                "tests.django_integration.project.asgi:application"],
    "gunicorn": ["gunicorn", "--workers", "1", "--worker-class", "sync", "--bind", "127.0.0.1:{port}",
                 "--log-level", "warning", "tests.django_integration.project.wsgi:application"],
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server_url(request: pytest.FixtureRequest, tokens: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = request.param
    log_path: Path = tmp_path_factory.mktemp(f"django_{name}") / "server.log"
    env = {"DJANGO_TEST_DB": str(DATABASE_PATH), "DJANGO_SETTINGS_MODULE": "tests.django_integration.project.settings"}
    # one worker: the memory backend counts per process
    with http_server(SERVERS[name], log_path, env, ready_path="/health") as url:
        yield url


def _login(client: httpx.Client, user: str) -> None:
    from tests.django_integration.conftest import PASSWORD

    answer = client.post("/login", data={"username": user, "password": PASSWORD})
    assert answer.status_code == 200 and "sessionid" in client.cookies


@pytest.mark.slow
def test_users_are_limited_apart_over_http(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=5) as alice, \
            httpx.Client(base_url=server_url, timeout=5) as bob, \
            httpx.Client(base_url=server_url, timeout=5) as anonymous:
        _login(alice, "alice")
        _login(bob, "bob")
        answers = [alice.get("/reports") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].json() == {"user": "alice", "remaining": 2}
        denied = answers[3]
        assert "Slow down" in denied.text  # RATELIMIT_VIEW, with the headers
        assert int(denied.headers["retry-after"]) >= 1 and denied.headers["x-ratelimit-remaining"] == "0"
        # bob and the anonymous client share alice's IP (loopback), and keep their own limits
        assert bob.get("/reports").json() == {"user": "bob", "remaining": 2}
        assert anonymous.get("/reports").json() == {"user": None, "remaining": 2}
        # the decorator on an async view, and on a class-based view
        assert [alice.get("/async-search").status_code for _ in range(3)] == [200, 200, 429]
        assert bob.get("/async-search").json() == {"user": "bob", "remaining": 1}
        assert [alice.get("/profile").status_code for _ in range(3)] == [200, 200, 429]
        assert [alice.get("/health").status_code for _ in range(5)] == [200] * 5


@pytest.mark.slow
def test_drf_token_users_are_limited_apart_over_http(server_url: str, tokens: dict[str, str]) -> None:
    def client(user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Token {tokens[user]}"} if user else {}
        return httpx.Client(base_url=server_url, timeout=5, headers=headers)

    with client("carol") as carol, client("bob") as bob, client(None) as anonymous:
        answers = [carol.get("/api/me") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.json()["remaining"] for a in answers[:3]] == [2, 1, 0]
        assert answers[3].headers["x-ratelimit-remaining"] == "0" and int(answers[3].headers["retry-after"]) >= 1
        assert bob.get("/api/me").json() == {"user": "bob", "remaining": 2}
        assert anonymous.get("/api/me").json() == {"user": None, "remaining": 2}
