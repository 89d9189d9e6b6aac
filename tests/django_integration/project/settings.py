"""Settings of the test project under a real server process (uvicorn, gunicorn).

The database is the SQLite file the test process migrated and filled with users
(``DJANGO_TEST_DB``); the backend is in-memory (one worker).
"""

from __future__ import annotations

import os

from tests.django_integration.project.limits import POLICIES
from tests.support.django_setup import INSTALLED_APPS

SECRET_KEY = "test-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.django_integration.project.urls"
INSTALLED_APPS = list(INSTALLED_APPS)
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ratelimit_mw.django.RateLimitMiddleware",
]
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_TEST_DB"]}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": [],
}
RATELIMIT_POLICIES = POLICIES
RATELIMIT_BACKEND = "memory://"
RATELIMIT_VIEW = "tests.django_integration.project.views.too_many"
