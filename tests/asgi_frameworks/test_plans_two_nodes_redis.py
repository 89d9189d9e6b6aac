"""A plan change through one node's admin API takes effect at once on every node: two
FastAPI apps (nodes) on one real Redis, with policy sync."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import pytest

from ratelimit_mw.admin import AdminAPI, AdminRequest
from ratelimit_mw.engine import Engine
from ratelimit_mw.policy_sync import PolicySync
from tests.asgi_frameworks.apps import make_fastapi_app
from tests.asgi_frameworks.client import ADMIN, Client

pytestmark = pytest.mark.redis


def _notify_on_change(engine: Engine) -> threading.Event:
    """An Event set when ``engine`` gets new policies: wait on it instead of sleeping."""
    changed = threading.Event()
    original = engine.set_policies

    def set_policies(policies: Any) -> None:
        original(policies)
        changed.set()

    engine.set_policies = set_policies  # type: ignore[method-assign]
    return changed


def test_plan_change_on_node_a_moves_the_user_on_node_b(redis_url: str) -> None:
    prefix = f"plans-{uuid.uuid4().hex[:8]}"
    app_a = make_fastapi_app(backend=redis_url, prefix=prefix)
    app_b = make_fastapi_app(backend=redis_url, prefix=prefix)
    engine_a: Engine = app_a.state.ratelimit_engine
    engine_b: Engine = app_b.state.ratelimit_engine
    node_a, node_b = PolicySync(engine_a, redis_url), PolicySync(engine_b, redis_url, interval=30.0)
    changed = _notify_on_change(engine_b)
    loop = asyncio.new_event_loop()
    node_b.start()
    try:
        a, b = Client(app_a, loop=loop), Client(app_b, loop=loop)
        # both nodes count in one Redis: alice's team plan (free, 2/minute) spans them
        assert a.statuses("/reports", 1, token="token-alice") + b.statuses("/reports", 2, token="token-alice") \
            == [200, 200, 429]
        body = json.dumps({"plans": {"team": "pro"}}).encode()
        headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/merge-patch+json"}
        answer = AdminAPI(engine_a, token=ADMIN, sync=node_a).handle(AdminRequest("PATCH", "/policies", {}, headers,
                                                                                    body))
        assert answer.status == 200, answer.body
        assert changed.wait(timeout=5), "node B did not apply the plan change"  # pub/sub, not the 30 s poll
        assert b.statuses("/reports", 3, token="token-alice") + a.statuses("/reports", 2, token="token-alice") \
            == [200, 200, 200, 200, 429]  # pro: 4/minute, on both nodes
        assert b.statuses("/reports", 3, token="token-bob") == [200, 200, 429]  # bob's plan is still free
    finally:
        node_b.stop()
        for engine in (engine_a, engine_b):
            loop.run_until_complete(engine.limiter.aclose())
            engine.limiter.close()
        loop.close()
