"""The plan resolver and ``exempt_when`` predicate that ``policies.example.yaml`` names.

A real app looks the plan up in its own data (a user's subscription, an API key's
tier); these read headers set by a trusted gateway, to keep the example small.
"""

from __future__ import annotations

from typing import Any

#: API keys and their plans, standing in for the app's billing data.
PLANS = {"key-pro-1": "pro"}


def plan_of(request: Any) -> str | None:
    """The client's plan name, or ``None`` (the default plan applies)."""
    key = request.header("x-api-key")
    return PLANS.get(key) if key else None


def is_internal(request: Any) -> bool:
    """Requests from the internal network skip the limit (evaluated after the route matched)."""
    return bool((request.peer or "").startswith("10."))
