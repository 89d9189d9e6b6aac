"""The Flask extension with a real Redis shared by two apps (two "nodes"), and with metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ratelimit_mw.metrics import RateLimitMetrics
from tests.flask_integration.flask_apps import create_app
from tests.flask_integration.test_flask_extension import client_for, statuses


@pytest.mark.redis
def test_two_apps_on_one_redis_share_a_users_limit(redis_url: str) -> None:
    node_a = create_app(RATELIMIT_BACKEND=redis_url, RATELIMIT_PREFIX="flask-test")
    node_b = create_app(RATELIMIT_BACKEND=redis_url, RATELIMIT_PREFIX="flask-test")
    alice_a, alice_b = client_for(node_a, "alice"), client_for(node_b, "alice")
    assert statuses(alice_a, "/search", 2) == [200, 200]
    assert statuses(alice_b, "/search", 2) == [200, 429]  # 3/minute over both nodes
    assert client_for(node_b, "bob").get("/search").status_code == 200
    denied = alice_a.get("/search")
    assert denied.status_code == 429 and int(denied.headers["Retry-After"]) >= 1


def test_metrics_count_the_decorated_views_by_route_name() -> None:
    registry = CollectorRegistry()
    app = create_app(RATELIMIT_METRICS=RateLimitMetrics(registry))
    alice = client_for(app, "alice")
    statuses(alice, "/search", 4)
    text = generate_latest(registry).decode()
    route = 'route="view:tests.flask_integration.flask_apps.search"'
    limited = [line for line in text.splitlines() if route in line and 'outcome="limited"' in line
               and line.startswith("ratelimit_decisions_total")]
    assert limited and float(limited[0].rsplit(" ", 1)[1]) == 1.0
