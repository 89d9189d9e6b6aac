"""Admin API hardening: tokens, body caps, atomic rejection, no secret in any answer.

The admin token lifts every limit, so the API is attacked directly here through both
adapters: wrong and near-miss tokens, tokens of other lengths (the comparison must not
depend on where or whether they differ), absurd and missing Content-Length, and
invalid documents that must leave the active policies untouched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from ratelimit_mw import admin
from ratelimit_mw.admin import MAX_BODY, AdminAPI, AdminRequest
from ratelimit_mw.engine import Engine
from tests.admin.test_admin_api import AUTH, NEW_YAML, TOKEN, Call

YAML = {**AUTH, "Content-Type": "application/yaml"}

WRONG_TOKENS = [
    pytest.param(None, id="missing"),
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="scheme-and-space"),
    pytest.param(f"Basic {TOKEN}", id="other-scheme"),
    pytest.param(f"Bearer {TOKEN[:-1]}", id="prefix"),
    pytest.param(f"Bearer {TOKEN}x", id="longer"),
    pytest.param(f"Bearer {TOKEN[:-1]}X", id="last-char"),
    pytest.param(f"Bearer {TOKEN.upper()}", id="other-case"),
    pytest.param("Bearer " + "A" * 10_000, id="huge"),
]


@pytest.mark.parametrize("authorization", WRONG_TOKENS)
def test_wrong_tokens_are_refused_without_echo(call: Call, engine: Engine, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    before = engine.policies
    with capture_logs() as logs:
        for method, path in (("GET", "/admin/health"), ("PUT", "/admin/policies"), ("DELETE", "/admin/usage")):
            response = call(method, path, headers={**headers, "Content-Type": "application/yaml"}, content=NEW_YAML)
            assert response.status_code == 401, response.text
            assert TOKEN not in response.text and TOKEN[:-1] not in response.text
            if authorization and len(authorization) > 8:
                assert authorization.split(" ", 1)[-1] not in response.text
    assert engine.policies is before
    assert TOKEN not in repr(logs) and TOKEN[:-1] not in repr(logs)


def test_token_comparison_is_constant_time(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison goes through compare_digest on inputs of one length, whatever was sent."""
    seen: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", spy)
    api = AdminAPI(engine, token=TOKEN)
    offered = ["x", TOKEN[:5], TOKEN[:-1], TOKEN + "x" * 50, "y" * len(TOKEN), TOKEN]
    results = [api.authorized(f"Bearer {token}") for token in offered]
    assert results == [False] * 5 + [True]
    assert len(seen) == len(offered)
    assert {pair for pair in seen} == {(hashlib.sha256().digest_size,) * 2}  # lengths never depend on the input


@pytest.mark.parametrize(
    "length",
    [
        pytest.param("9" * 5000, id="5000-digits"),  # int() refuses more than 4300 digits
        pytest.param("0" * 30 + "1", id="leading-zeros"),
        pytest.param(str(MAX_BODY + 1), id="just-over"),
        pytest.param(str(2**64), id="2^64"),
    ],
)
def test_absurd_content_length_is_413_not_500(call: Call, engine: Engine, length: str) -> None:
    before = engine.policies
    response = call("PUT", "/admin/policies", headers={**YAML, "Content-Length": length}, content=b"")
    if length.lstrip("0") == "1":
        assert response.status_code in (400, 413), response.text  # a declared 1-byte body that never came
    else:
        assert response.status_code == 413, response.text
    assert engine.policies is before


def test_streamed_body_without_length_is_capped(call: Call, engine: Engine, request: pytest.FixtureRequest) -> None:
    def chunks() -> Iterator[bytes]:
        yield NEW_YAML.encode()
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"#" * 65536

    async def achunks() -> AsyncIterator[bytes]:
        for chunk in chunks():
            yield chunk

    before = engine.policies
    body = achunks() if request.node.callspec.params["call"] == "asgi" else chunks()
    response = call("PUT", "/admin/policies", headers=YAML, content=body)
    assert response.status_code == 413
    assert engine.policies is before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(NEW_YAML + '  - match: "/b"\n    limits: ["ten per minute"]\n', id="bad-second-route"),
        pytest.param(NEW_YAML + '  - match: "re:^/(a+)+$"\n    limits: ["1/second"]\n', id="redos-route"),
        pytest.param(NEW_YAML + "  - !!python/object/apply:os.system ['true']\n", id="python-tag"),
        pytest.param(NEW_YAML + "policies: {a: {extends: b}, b: {extends: a}}\n", id="extends-cycle"),
        pytest.param(b"version: 1\nroutes: [\xff\xfe]\n", id="invalid-utf8"),
    ],
)
def test_invalid_documents_change_nothing(call: Call, engine: Engine, body: str | bytes) -> None:
    before = engine.policies
    etag = call("GET", "/admin/policies", headers=AUTH).headers["ETag"]
    response = call("PUT", "/admin/policies", headers=YAML, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_policies"
    assert engine.policies is before
    assert call("GET", "/admin/policies", headers=AUTH).headers["ETag"] == etag
    assert TOKEN not in response.text


def test_no_answer_echoes_the_token(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of answer, including errors, carries neither the token nor the server's env secrets."""
    monkeypatch.setenv("SERVER_SECRET", "hunter2-server-secret")
    answers = [
        call("GET", "/admin/health", headers=AUTH),
        call("GET", "/admin/nope", headers=AUTH),
        call("POST", "/admin/health", headers=AUTH),
        call("PUT", "/admin/policies", headers={**AUTH, "Content-Type": "text/html"}, content="x"),
        call("PUT", "/admin/policies", headers=YAML, content="version: 1\nroutes: [${SERVER_SECRET}]\n"),
        call("GET", "/admin/usage", headers=AUTH),
        call("GET", "/admin/usage?key=header:x-api-key:k&path=/resource", headers=AUTH),
        call("GET", "/admin/explain?method=GET&path=/resource", headers=AUTH),
    ]
    for response in answers:
        assert response.status_code < 500, response.text
        text = response.text + repr(response.headers)
        assert TOKEN not in text
        assert "hunter2" not in text


def test_handle_never_raises_on_odd_requests(engine: Engine) -> None:
    api = AdminAPI(engine, token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    odd = [
        AdminRequest("GET", "", headers=auth),
        AdminRequest("get", "/health", headers=auth),
        AdminRequest("PUT", "/policies", headers={**auth, "content-type": "application/json"}, body=b"[1,2"),
        AdminRequest("PUT", "/policies", headers={**auth, "content-type": "application/json"}, body=b"1e999"),
        AdminRequest("PATCH", "/policies", headers={**auth, "content-type": "application/json"}, body=b"null"),
        AdminRequest("GET", "/usage", query={"key": "\x00", "path": "/" + "a" * 100_000}, headers=auth),
        AdminRequest("GET", "/explain", query={"method": "G\u00c9T", "path": "/%ff\u00e9"}, headers=auth),
    ]
    for request in odd:
        answer = api.handle(request)
        assert answer.status < 500, (request, answer.body)
