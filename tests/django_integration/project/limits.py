"""The project's policies and billing data (no Django import: the settings read it)."""

from __future__ import annotations

from typing import Any

POLICIES = """
version: 1
defaults:
  key: [user, ip]
policies:
  free: {limits: ["2/minute"]}
  pro: {limits: ["5/minute"]}
routes:
  - match: "GET /reports"
    limits: ["3/minute"]
  - match: "GET /plan-data"
    plan: call:tests.django_integration.project.limits:plan_of
  - match: "GET /api/plan"
    plan: call:tests.django_integration.project.limits:plan_of
  - match: "/api/**"
    limits: ["3/minute"]
  - match: "/missing/**"
    limits: ["1/minute"]
  - match: "GET /both"
    limits: ["4/minute"]
plans: {default: free, free: free, pro: pro}
"""

#: The project's billing data: which plan each user pays for.
PLANS = {"alice": "free", "bob": "pro", "carol": "free"}


def plan_of(request: Any) -> str | None:
    """The logged-in user's plan; anonymous: the default plan."""
    user = request.native.user
    return PLANS.get(user.username) if user.is_authenticated else None


def failing_key(request: Any) -> str:
    raise RuntimeError("the app's key function is broken")
