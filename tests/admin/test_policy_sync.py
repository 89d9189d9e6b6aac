"""Policy sync against a real Redis server: publish, subscribe, catch up, conflicts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from anyio.from_thread import start_blocking_portal
from structlog.testing import capture_logs

from ratelimit_mw import log
from ratelimit_mw.admin import AdminAPI, AdminRequest, admin_app
from ratelimit_mw.engine import Engine
from ratelimit_mw.limiter import Limiter
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.policy_sync import SOURCE, AsyncPolicySync, PolicyConflict, PolicySync
from ratelimit_mw.testing import FakeClock, FakeRequest

pytestmark = pytest.mark.redis

TOKEN = "t0ken-for-tests-0123456789"
HEADERS = {"authorization": f"Bearer {TOKEN}"}


def _document(rate: str) -> dict[str, Any]:
    return {
        "version": 1,
        "policies": {"free": {"limits": [rate]}},
        "routes": [{"match": "GET /resource", "policy": "free"}],
    }


def _engine(rate: str = "100/minute") -> Engine:
    return Engine(load_policies(_document(rate)), Limiter("memory://", clock=FakeClock(), prefix="t"))


def _limit(engine: Engine) -> int:
    verdict = engine.decide(FakeRequest("GET", "/resource"))
    assert verdict is not None
    return verdict.decision.limit


def _notify_on_change(engine: Engine) -> threading.Event:
    """An Event set whenever ``engine`` gets new policies: wait on it instead of sleeping."""
    changed = threading.Event()
    original = engine.set_policies

    def set_policies(policies: Any) -> None:
        original(policies)
        changed.set()

    engine.set_policies = set_policies  # type: ignore[method-assign]
    return changed


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_publish_stores_announces_and_applies_elsewhere(redis_url: str, client: redis.Redis) -> None:
    a, b = _engine(), _engine()
    node_a, node_b = PolicySync(a, redis_url), PolicySync(b, redis_url)
    assert node_a.key == "t:policies" and node_a.channel == "t:policies:changed"
    assert node_b.check_once() is False  # nothing published yet

    policies = load_policies(_document("2/minute"))
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(node_a.channel)
    assert node_a.publish(policies.document, policies) == 1
    assert _limit(a) == 2 and a.policies.source == SOURCE and node_a.version == 1
    message = None
    for _ in range(3):  # the first read may return the (ignored) subscribe confirmation
        message = message or pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == b"1"
    pubsub.close()

    assert json.loads(client.hget("t:policies", "document") or b"") == policies.document
    assert node_b.check_once() is True and _limit(b) == 2 and node_b.version == 1
    assert node_b.check_once() is False
    assert node_b.fetch() == (1, policies.document)


def test_expected_version_makes_publish_a_compare_and_set(redis_url: str) -> None:
    node = PolicySync(_engine(), redis_url)
    document = _document("3/minute")
    assert node.publish(document, expected_version=0) == 1
    with pytest.raises(PolicyConflict) as info:
        node.publish(document, expected_version=0)
    assert (info.value.expected, info.value.current) == (0, 1)
    assert node.publish(document, expected_version=1) == 2


def test_an_invalid_stored_revision_is_skipped_once(redis_url: str, client: redis.Redis) -> None:
    engine = _engine()
    node = PolicySync(engine, redis_url)
    before = engine.policies
    client.hset("t:policies", mapping={"version": 1, "document": json.dumps({"version": 9})})
    with capture_logs() as events:
        assert node.check_once() is False
        assert node.check_once() is False  # the same revision is not retried nor re-logged
    assert engine.policies is before
    assert [(e["event"], e["origin"], e["field"]) for e in events] == [(log.POLICIES_RELOAD_FAILED, "sync", "version")]
    client.hset("t:policies", mapping={"version": 2, "document": json.dumps(_document("4/minute"))})
    assert node.check_once() is True and _limit(engine) == 4


def test_the_subscriber_thread_applies_a_publish_at_once(redis_url: str) -> None:
    a, b = _engine(), _engine()
    node_a, node_b = PolicySync(a, redis_url), PolicySync(b, redis_url, interval=30.0)
    changed = _notify_on_change(b)
    node_b.start()
    try:
        assert node_b.running
        node_a.publish(_document("5/minute"))
        # interval is 30 s: only the pub/sub message can deliver this in time
        assert changed.wait(timeout=5), "node B did not apply the published revision"
        assert _limit(b) == 5
    finally:
        node_b.stop()
    assert not node_b.running


def test_a_missed_message_is_caught_up_by_the_periodic_check(redis_url: str, client: redis.Redis) -> None:
    engine = _engine()
    node = PolicySync(engine, redis_url, interval=0.05)
    changed = _notify_on_change(engine)
    node.start()
    try:
        # stored without PUBLISH, as if the message had been lost
        client.hset("t:policies", mapping={"version": 7, "document": json.dumps(_document("6/minute"))})
        assert changed.wait(timeout=5)
        assert _limit(engine) == 6 and node.version == 7
    finally:
        node.stop()


def test_start_catches_up_before_serving(redis_url: str, client: redis.Redis) -> None:
    client.hset("t:policies", mapping={"version": 3, "document": json.dumps(_document("7/minute"))})
    engine = _engine()
    app_calls: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        app_calls.append(_limit(engine))
        start_response("200 OK", [])
        return [b""]

    node = PolicySync(engine, redis_url)
    wrapped = node.wsgi(app)
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="http://n") as http:
            http.get("/")
        assert app_calls == [7] and node.running
    finally:
        node.stop()


def test_an_unreachable_redis_is_logged_once_and_retried() -> None:
    engine = _engine()
    node = PolicySync(engine, "redis://127.0.0.1:1/0", interval=0.02)
    with capture_logs() as events:
        node.start()
        node.stop()
    errors = [e for e in events if e["event"] == log.BACKEND_ERROR]
    assert len(errors) == 1 and errors[0]["component"] == "policy_sync"


def test_admin_put_with_sync_reaches_the_other_node(redis_url: str) -> None:
    a, b = _engine(), _engine()
    node_a, node_b = PolicySync(a, redis_url), PolicySync(b, redis_url)
    api = AdminAPI(a, token=TOKEN, sync=node_a)
    body = json.dumps(_document("8/minute")).encode()
    answer = api.handle(
        AdminRequest("PUT", "/policies", headers={**HEADERS, "content-type": "application/json"}, body=body)
    )
    assert answer.status == 200 and json.loads(answer.body)["revision"] == 1
    assert _limit(a) == 8
    assert node_b.check_once() and _limit(b) == 8

    # PATCH on node B merges onto Redis' latest document, then publishes revision 2
    patch = json.dumps({"policies": {"free": {"limits": ["9/minute"]}}}).encode()
    answer = AdminAPI(b, token=TOKEN, sync=node_b).handle(
        AdminRequest("PATCH", "/policies", headers={**HEADERS, "content-type": "application/json"}, body=patch)
    )
    assert answer.status == 200 and json.loads(answer.body)["revision"] == 2
    assert node_a.check_once() and _limit(a) == 9
    health = json.loads(api.handle(AdminRequest("GET", "/health", headers=HEADERS)).body)
    assert health["sync"]["revision"] == 2 and health["policies"]["source"] == SOURCE


def test_admin_answers_503_when_redis_is_down_and_changes_nothing() -> None:
    engine = _engine()
    before = engine.policies
    api = AdminAPI(engine, token=TOKEN, sync=PolicySync(engine, "redis://127.0.0.1:1/0"))
    body = json.dumps(_document("1/minute")).encode()
    answer = api.handle(
        AdminRequest("PUT", "/policies", headers={**HEADERS, "content-type": "application/json"}, body=body)
    )
    assert answer.status == 503 and engine.policies is before


def test_async_twin_through_the_asgi_admin(redis_url: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    a, b = _engine(), _engine()
    changed = _notify_on_change(b)
    node_b = PolicySync(b, redis_url, interval=30.0).start()

    async def scenario() -> tuple[int, dict[str, Any]]:
        node_a = AsyncPolicySync(a, redis_url)
        app = node_a.asgi(Starlette(routes=[Mount("/admin", app=admin_app(a, token=TOKEN, sync=node_a))]))
        transport = httpx.ASGITransport(app=app)  # no lifespan: the wrapper starts lazily
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as http:
            response = await http.patch(
                "/admin/policies",
                json={"policies": {"free": {"limits": ["11/minute"]}}},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            health = (await http.get("/admin/health", headers={"Authorization": f"Bearer {TOKEN}"})).json()
        assert node_a.running
        await node_a.stop()
        assert not node_a.running
        await node_a.client.aclose()
        return response.status_code, health

    try:
        with start_blocking_portal() as portal:
            status, health = portal.call(scenario)
        assert status == 200 and _limit(a) == 11
        assert health["sync"]["revision"] == 1 and health["sync"]["running"] is True
        assert changed.wait(timeout=5) and _limit(b) == 11
    finally:
        node_b.stop()


def test_async_twin_starts_and_stops_with_the_lifespan(redis_url: str, client: redis.Redis) -> None:
    client.hset("t:policies", mapping={"version": 1, "document": json.dumps(_document("12/minute"))})
    engine = _engine()
    node = AsyncPolicySync(engine, redis_url)
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(f"{message['type']}:{node.running}:{_limit(engine)}")
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    async def scenario() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> Any:
            return next(messages)

        async def send(message: Any) -> None:
            pass

        await node.asgi(inner)({"type": "lifespan"}, receive, send)
        await node.client.aclose()

    asyncio.run(scenario())
    assert seen == ["lifespan.startup:True:12", "lifespan.shutdown:False:12"]


def test_a_lost_compare_and_set_answers_409_and_changes_nothing(redis_url: str) -> None:
    class SlowReader(PolicySync):
        """Reads the document, then another node publishes before this one does."""

        def fetch(self) -> tuple[int, dict[str, Any] | None]:
            seen = super().fetch()
            PolicySync(_engine(), redis_url).publish(_document("13/minute"))
            return seen

    engine = _engine()
    before = engine.policies
    api = AdminAPI(engine, token=TOKEN, sync=SlowReader(engine, redis_url))
    patch = json.dumps({"policies": {"free": {"limits": ["14/minute"]}}}).encode()
    answer = api.handle(
        AdminRequest("PATCH", "/policies", headers={**HEADERS, "content-type": "application/json"}, body=patch)
    )
    assert answer.status == 409 and json.loads(answer.body)["revision"] == 1
    assert engine.policies is before


def test_patch_answers_503_when_redis_is_down() -> None:
    engine = _engine()
    api = AdminAPI(engine, token=TOKEN, sync=PolicySync(engine, "redis://127.0.0.1:1/0"))
    answer = api.handle(
        AdminRequest("PATCH", "/policies", headers={**HEADERS, "content-type": "application/json"}, body=b"{}")
    )
    assert answer.status == 503 and json.loads(answer.body)["error"] == "sync_unavailable"


def test_the_sync_and_async_twins_have_the_same_interface() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(PolicySync) - {"wsgi"} == public(AsyncPolicySync) - {"asgi"}
