"""One Django configuration for the whole test process.

Django settings are process-global, so every in-process Django test goes through
:func:`configure`: the superset of what they need (auth, sessions, DRF with tokens,
a SQLite file database, migrated once). ``ROOT_URLCONF`` is the adapter tests' URL
module; other tests set their own with ``override_settings`` (as they do
``MIDDLEWARE`` and ``RATELIMIT_*``), so the order tests run in does not matter.
Server processes (uvicorn, gunicorn) use ``tests/django_integration/project/settings.py``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

__all__ = ["ADAPTERS_URLCONF", "DATABASE_PATH", "INSTALLED_APPS", "configure"]

#: The URL module tests/adapters installs (its WSGI apps route through it).
ADAPTERS_URLCONF = "ratelimit_mw_adapters_urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "ratelimit_mw.django",
]

DATABASE_PATH = Path(tempfile.mkdtemp(prefix="ratelimit-django-")) / "db.sqlite3"
_lock = threading.Lock()
_migrated = False


def configure() -> None:
    """Configure Django once (no-op afterwards) and migrate the test database."""
    global _migrated
    import django
    from django.conf import settings

    with _lock:
        if not settings.configured:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
            settings.configure(
                SECRET_KEY="test-secret-key-not-for-production-0123456789",
                DEBUG=False,
                ALLOWED_HOSTS=["*"],
                ROOT_URLCONF=ADAPTERS_URLCONF,
                INSTALLED_APPS=INSTALLED_APPS,
                MIDDLEWARE=[],
                USE_TZ=True,
                DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATABASE_PATH)}},
                PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
                DEFAULT_AUTO_FIELD="django.db.models.AutoField",
                REST_FRAMEWORK={
                    "DEFAULT_AUTHENTICATION_CLASSES": [
                        "rest_framework.authentication.TokenAuthentication",
                        "rest_framework.authentication.SessionAuthentication",
                    ],
                    "DEFAULT_THROTTLE_CLASSES": [],
                    "DEFAULT_THROTTLE_RATES": {"user": "3/minute"},
                    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
                },
            )
            django.setup()
        if not _migrated:
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            _migrated = True
