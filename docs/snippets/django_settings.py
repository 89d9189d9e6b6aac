# mysite/settings.py
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "ratelimit_mw.django",  # system checks: `manage.py check` validates the policies
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ratelimit_mw.django.RateLimitMiddleware",  # after authentication: `key: user` works
]

RATELIMIT_POLICIES = "policies.yaml"  # a path, YAML text or a dict
RATELIMIT_BACKEND = "redis://localhost:6379/0"  # memory:// counts per process
RATELIMIT_VIEW = "mysite.views.too_many_requests"  # optional: the site's own 429 page
