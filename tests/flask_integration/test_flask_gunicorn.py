"""The Flask app under a real gunicorn process, driven over loopback HTTP: users log in
through the login view, and the session cookie is what tells them apart."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.http_servers import http_server


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("gunicorn_flask") / "server.log"
    # one worker: the memory backend counts per process
    argv = ["gunicorn", "--workers", "1", "--worker-class", "sync", "--bind", "127.0.0.1:{port}",
            "--log-level", "warning", "tests.flask_integration.flask_apps:app"]
    with http_server(argv, log_path, {"FLASK_TEST_BACKEND": "memory://"}, ready_path="/health") as url:
        yield url


def _login(client: httpx.Client, user: str) -> None:
    answer = client.post("/login", data={"user": user})
    assert answer.status_code == 200 and "session" in client.cookies


@pytest.mark.slow
def test_users_are_limited_apart_over_http(gunicorn_url: str) -> None:
    with httpx.Client(base_url=gunicorn_url, timeout=5) as alice, \
            httpx.Client(base_url=gunicorn_url, timeout=5) as bob, \
            httpx.Client(base_url=gunicorn_url, timeout=5) as anonymous:
        _login(alice, "alice")
        _login(bob, "bob")
        answers = [alice.get("/search") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].json() == {"user": "alice", "remaining": 2}
        denied = answers[3]
        assert denied.headers["content-type"] == "application/problem+json"
        assert int(denied.headers["retry-after"]) >= 1
        assert denied.headers["x-ratelimit-remaining"] == "0" and "ratelimit-policy" in denied.headers
        # bob and the anonymous client share alice's IP (loopback), and keep their own limits
        assert bob.get("/search").json() == {"user": "bob", "remaining": 2}
        assert anonymous.get("/search").json() == {"user": None, "remaining": 2}
        assert [alice.get("/health").status_code for _ in range(5)] == [200] * 5
