"""Secrets never leave the request: not in logs, metrics, Redis or admin answers.

API keys, bearer tokens and the admin token are credentials. Traffic carrying known
ones (allowed, denied, through a backend outage and the admin API) is driven through
the real middleware on Redis, and then every log event, every metric sample (labels
and values), every Redis key and value, and every admin answer is searched for them.
"""

from __future__ import annotations

import httpx
import pytest
import redis
from anyio.from_thread import start_blocking_portal
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from ratelimit_mw import RateLimitMiddleware
from ratelimit_mw.admin import admin_app
from ratelimit_mw.metrics import RateLimitMetrics

pytestmark = [pytest.mark.redis]

API_KEYS = ["sk_live_SECRETAPIKEY0001", "sk_live_SECRETAPIKEY0002"]
BEARERS = ["eyJSECRETBEARERTOKEN.payload.sig"]
ADMIN_TOKEN = "adm1n-SECRET-token-0123456789"
SECRETS = [*API_KEYS, *BEARERS, ADMIN_TOKEN]

POLICIES = """
version: 1
routes:
  - match: "/by-key"
    key: [header:X-API-Key, ip]
    limits: ["2/minute"]
  - match: "/by-bearer"
    key: header:Authorization
    limits: ["2/minute"]
  - match: "/by-query"
    key: [query:api_key, ip]
    limits: ["2/minute"]
"""


def test_no_secret_reaches_logs_metrics_redis_or_admin(redis_url: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    registry = CollectorRegistry()
    metrics = RateLimitMetrics(registry=registry)
    inner = Starlette(routes=[Route("/by-key", ok), Route("/by-bearer", ok), Route("/by-query", ok)])
    limited = RateLimitMiddleware(inner, policies=POLICIES, backend=redis_url, metrics=metrics,
                                  socket_timeout=1.0, socket_connect_timeout=1.0)
    app = Starlette(routes=[Mount("/admin", app=admin_app(limited, token=ADMIN_TOKEN)), Mount("/", app=limited)])
    answers: list[str] = []
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    with capture_logs() as logs, start_blocking_portal() as portal:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

        def get(url: str, **kwargs: object) -> httpx.Response:
            response: httpx.Response = portal.call(lambda: client.request("GET", url, **kwargs))  # type: ignore[arg-type]
            answers.append(response.text + repr(response.headers))
            return response

        for _ in range(4):  # two allowed, two denied: denials log and count
            for key in API_KEYS:
                get("/by-key", headers={"X-API-Key": key})
                get(f"/by-query?api_key={key}")
            for token in BEARERS:
                get("/by-bearer", headers={"Authorization": f"Bearer {token}"})
        assert get("/by-key", headers={"X-API-Key": API_KEYS[0]}).status_code == 429
        for key in API_KEYS:
            usage = get(f"/admin/usage?key=header:x-api-key:{key}&path=/by-key", headers=auth)
            assert usage.status_code == 200, usage.text
        get("/admin/health", headers=auth)
        get("/admin/policies", headers=auth)
        get(f"/admin/explain?method=GET&path=/by-key&api_key={API_KEYS[0]}", headers=auth)
        get("/admin/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})  # a refused near miss
        portal.call(client.aclose)
        portal.call(limited.limiter.aclose)

    assert any(event["event"] == "rate_limited" for event in logs)  # the search below saw denials
    places = {
        "logs": repr(logs),
        "metrics": generate_latest(registry).decode(),
        "admin answers": "\n".join(answers),
    }
    store = redis.Redis.from_url(redis_url)
    try:
        dump: list[str] = []
        for key in store.scan_iter(count=1000):
            dump.append(key.decode("latin-1"))
            kind = store.type(key).decode()
            if kind == "string":
                dump.append(repr(store.get(key)))
            elif kind == "hash":
                dump.append(repr(store.hgetall(key)))
            elif kind == "zset":
                dump.append(repr(store.zrange(key, 0, -1, withscores=True)))
            elif kind == "list":
                dump.append(repr(store.lrange(key, 0, -1)))
            elif kind == "set":
                dump.append(repr(store.smembers(key)))
    finally:
        store.close()
    assert len(dump) >= 2, "no state reached Redis: the search would prove nothing"
    places["redis"] = "\n".join(dump)
    assert "rate_limited" in places["metrics"] or "ratelimit" in places["metrics"]
    for where, text in places.items():
        for secret in SECRETS:
            for probe in (secret, secret[4:20]):  # the whole secret, and a slice of it
                assert probe not in text, f"{probe!r} found in {where}"
