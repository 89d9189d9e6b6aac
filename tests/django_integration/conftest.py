"""The Django test project in-process: shared settings (tests/support/django_setup.py),
this project's URLs, middleware and ``RATELIMIT_*`` settings per test, real users in
the SQLite test database, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ratelimit_mw.testing import FakeClock
from tests.django_integration.project.limits import POLICIES
from tests.support.django_setup import configure

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ratelimit_mw.django.RateLimitMiddleware",
]
PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob", "carol")


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    """Real users (and DRF tokens) in the test database: name -> token key."""
    configure()
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    found = {}
    for name in USERS:
        user = User.objects.filter(username=name).first() or User.objects.create_user(name, password=PASSWORD)
        found[name] = Token.objects.get_or_create(user=user)[0].key
    return found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def project_settings(clock: FakeClock, **overrides: Any) -> Any:
    from django.test import override_settings

    values: dict[str, Any] = {
        "ROOT_URLCONF": "tests.django_integration.project.urls",
        "MIDDLEWARE": MIDDLEWARE,
        "RATELIMIT_POLICIES": POLICIES,
        "RATELIMIT_BACKEND": "memory://",
        "RATELIMIT_LIMITER_OPTIONS": {"clock": clock},
    }
    values.update(overrides)
    return override_settings(**values)


@pytest.fixture
def project(tokens: dict[str, str], clock: FakeClock) -> Iterator[None]:
    """The project with its default settings (a fresh engine: buckets start full)."""
    with project_settings(clock):
        yield


def client_for(user: str | None = None, ip: str = "127.0.0.1") -> Any:
    """A test client, logged in as ``user`` through the auth backend (password checked)."""
    from django.test import Client

    client = Client(REMOTE_ADDR=ip)
    if user is not None:
        assert client.login(username=user, password=PASSWORD)
    return client


def statuses(client: Any, path: str, n: int, **extra: Any) -> list[int]:
    return [client.get(path, **extra).status_code for _ in range(n)]
