"""Admin HTTP API: read and replace policies, read and reset a client's usage.

**What must be trusted.** Whoever holds the bearer token can lift every limit,
reset any client's quota, and read which routes are limited how. So:

* The token is a secret: pass it as ``token=`` or ``RATELIMIT_ADMIN_TOKEN``, at
  least 16 characters (``python -c 'import secrets; print(secrets.token_urlsafe(32))'``).
  It is compared in constant time (``hmac.compare_digest``) and never logged.
  Without a token the app refuses to be built, unless ``allow_unauthenticated=True``,
  which is meant for a local shell, never for a reachable port.
* Bearer tokens travel in clear text over plain HTTP: serve the admin app on a
  private interface or port, or behind TLS, never on the public listener. Mount it
  outside the rate limiter so an attacker flooding the API cannot lock admins out.
* Submitted documents are validated with an **empty environment**: ``${VAR}`` in a
  request body never reads this server's environment variables (which hold the
  Redis password and this token), and a body is never taken for a file path.

Endpoints (JSON unless noted; every one requires the token):

==============================  ==========================================================
``GET /policies``               the active document (``?format=yaml`` for YAML); ``ETag``
``PUT /policies``               replace it: YAML (``application/yaml``) or JSON body
``PATCH /policies``             JSON merge patch (RFC 7386) onto the active document
``GET /usage?key=&method=&path=``   per-limit limit/remaining/reset for a client on a route
``DELETE /usage?key=&method=&path=``  reset that client's quota on that route
``GET /explain?method=&path=``  which route, policy, limits and key a request gets
``GET /health``                 backend, breaker state, policy source and revision
==============================  ==========================================================

``PUT``/``PATCH`` validate the whole document first: an invalid one changes
nothing and answers 400 with ``PolicyError.to_dict()`` (file, line, field,
reason). A valid one is swapped in atomically. ``If-Match`` with the ``ETag`` of
``GET /policies`` makes a change conditional (412 if the document changed). With
``sync=`` (:mod:`ratelimit_mw.policy_sync`) the change is stored in Redis and
reaches every node; a lost compare-and-set answers 409.

``key`` is the raw client identity exactly as the route's key function builds it
(see :mod:`ratelimit_mw.core.keys`): ``header:x-api-key:VALUE`` (header names
lower-case), ``ip:203.0.113.5``, ``ip:2001:db8:1:2::/64``, ``query:api_key:VALUE``,
``cookie:session:VALUE``, ``global``, ``anonymous``. Answers show only its hash.

Both adapters, :func:`admin_app` (Starlette, ASGI) and :func:`admin_wsgi_app`,
share one request handler, :class:`AdminAPI`, so they behave identically.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from ratelimit_mw import log
from ratelimit_mw.backends.base import AsyncBackend, Backend
from ratelimit_mw.errors import ConfigError, PolicyError
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.policy_sync import AsyncPolicySync, PolicyConflict, PolicySync
from ratelimit_mw.requestview import route_path

__all__ = [
    "MAX_BODY",
    "TOKEN_ENV",
    "AdminAPI",
    "AdminRequest",
    "AdminResponse",
    "admin_app",
    "admin_wsgi_app",
    "document_etag",
    "merge_patch",
]

#: Environment variable holding the bearer token when ``token=`` is not given.
TOKEN_ENV = "RATELIMIT_ADMIN_TOKEN"
#: Largest accepted request body (a policy document), in bytes.
MAX_BODY = 1 << 20
#: ``PolicySet.source`` of policies set through this API (without sync).
SOURCE = "<admin>"
MIN_TOKEN_LENGTH = 16

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_JSON_TYPES = ("application/json", "application/merge-patch+json")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_T = TypeVar("_T")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class AdminRequest:
    """An admin request, independent of ASGI/WSGI.

    Attributes:
        method: upper-case HTTP method.
        path: the path below the admin app's mount point (``/policies``).
        query: query parameters (first value of each).
        headers: header values by lower-case name.
        body: the raw body (at most :data:`MAX_BODY` bytes).
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class AdminResponse:
    """Status, headers (content type included) and body of an answer."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]


def _json(status: int, data: Any, *headers: tuple[str, str]) -> AdminResponse:
    body = json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n"
    return AdminResponse(status, body, [("Content-Type", "application/json"), *headers])


def _error(status: int, error: str, message: str, **extra: Any) -> AdminResponse:
    return _json(status, {"error": error, "message": message, **extra})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` deletes a member, objects merge, the rest replaces.

    Lists are replaced whole (RFC 7386 has no list edits): to change one route,
    send the whole ``routes`` list, or patch the named ``policies`` it uses.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def document_etag(document: Mapping[str, Any]) -> str:
    """A strong ETag for a policy document: a hash of its canonical JSON."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest() + '"'


def _resolve_token(token: str | None, allow_unauthenticated: bool) -> str | None:
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"the admin token must be at least {MIN_TOKEN_LENGTH} characters; generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return token
    if not allow_unauthenticated:
        raise ConfigError(
            f"the admin API needs a bearer token: pass token=... or set {TOKEN_ENV} "
            "(allow_unauthenticated=True serves it without one: local use only)"
        )
    return None


class AdminAPI:
    """The request handler both adapters share; synchronous, so WSGI calls it directly.

    The ASGI adapter runs it in a worker thread and passes ``run_async``, which runs
    a coroutine function on the event loop (``anyio.from_thread.run``): that is how
    it reaches an async-only backend or an :class:`AsyncPolicySync` from the thread.

    Args:
        target: an Engine, or a middleware with ``.engine``.
        token: see :func:`admin_app`.
        allow_unauthenticated: see :func:`admin_app`.
        sync: a :class:`PolicySync` or :class:`AsyncPolicySync`, or ``None``.
        run_async: runs ``fn(*args)`` (a coroutine function) to completion; ``None``
            for WSGI, where async-only backends and AsyncPolicySync are refused.
    """

    def __init__(
        self,
        target: Any,
        *,
        token: str | None = None,
        allow_unauthenticated: bool = False,
        sync: PolicySync | AsyncPolicySync | None = None,
        run_async: Callable[..., Any] | None = None,
    ) -> None:
        self.engine = getattr(target, "engine", target)
        if not hasattr(self.engine, "set_policies"):
            raise ConfigError(f"admin API needs an Engine or a middleware, got {type(target).__name__}")
        self._token = _resolve_token(token, allow_unauthenticated)
        self.sync = sync
        self._run_async = run_async
        if run_async is None and isinstance(sync, AsyncPolicySync):
            raise ConfigError("AsyncPolicySync needs the ASGI admin app; use PolicySync with WSGI")
        self._lock = threading.Lock()  # serialises read-modify-write changes in this process
        self._routes: dict[str, dict[str, Callable[[AdminRequest], AdminResponse]]] = {
            "/policies": {"GET": self.get_policies, "PUT": self.put_policies, "PATCH": self.patch_policies},
            "/usage": {"GET": self.get_usage, "DELETE": self.delete_usage},
            "/explain": {"GET": self.explain},
            "/health": {"GET": self.health},
        }

    # -- dispatch ----------------------------------------------------------------------

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        if self._token is None:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Digests of equal length: compare_digest's time then reveals neither the
        # token's content nor its length.
        offered = hashlib.sha256(credentials.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(offered, hashlib.sha256(self._token.encode()).digest())

    def unauthorized(self, authorization: str | None) -> AdminResponse:
        """The 401 answer (``invalid_token`` when a wrong token was sent)."""
        challenge = 'Bearer realm="ratelimit-admin"'
        if authorization:
            challenge += ', error="invalid_token"'
        return _json(
            401,
            {"error": "unauthorized", "message": "a valid bearer token is required"},
            ("WWW-Authenticate", challenge),
        )

    def handle(self, request: AdminRequest) -> AdminResponse:
        """Authenticate, route and answer one request; never raises."""
        authorization = request.headers.get("authorization")
        if not self.authorized(authorization):
            return self.unauthorized(authorization)
        methods = self._routes.get(request.path.rstrip("/") or "/")
        if methods is None:
            return _error(404, "not_found", f"no admin endpoint {request.path!r}", endpoints=sorted(self._routes))
        handler = methods.get(request.method)
        if handler is None:
            answer = _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
            answer.headers.append(("Allow", ", ".join(methods)))
            return answer
        try:
            return handler(request)
        except Exception as exc:  # an admin bug must answer, and must not leak details
            log.logger.exception(log.INTERNAL_ERROR, component="admin", error=type(exc).__name__)
            return _error(500, "internal_error", type(exc).__name__)

    def _await(self, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        if self._run_async is None:
            raise ConfigError("this operation needs the ASGI admin app (async backend or sync)")
        result: _T = self._run_async(lambda: fn(*args, **kwargs))
        return result

    # -- policies ----------------------------------------------------------------------

    def get_policies(self, request: AdminRequest) -> AdminResponse:
        """``GET /policies``: the active document as JSON, or YAML with ``?format=yaml``."""
        policies = self.engine.policies
        etag = ("ETag", document_etag(policies.document))
        fmt = request.query.get("format", "json")
        if fmt == "yaml":
            return AdminResponse(200, policies.to_yaml().encode(), [("Content-Type", "application/yaml"), etag])
        if fmt != "json":
            return _error(400, "bad_request", f"format must be 'json' or 'yaml', got {fmt!r}")
        return _json(200, policies.document, etag)

    def put_policies(self, request: AdminRequest) -> AdminResponse:
        """``PUT /policies``: validate and replace the whole document."""
        parsed = self._parse_document(request)
        if isinstance(parsed, AdminResponse):
            return parsed
        return self._change(request, lambda base: parsed, "PUT")

    def patch_policies(self, request: AdminRequest) -> AdminResponse:
        """``PATCH /policies``: merge-patch the active document, validate, replace."""
        content_type = _media_type(request.headers.get("content-type"))
        if content_type not in _JSON_TYPES:
            return _error(
                415, "unsupported_media_type", "PATCH takes a JSON merge patch (application/merge-patch+json)"
            )
        try:
            patch = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return self._invalid(PolicyError(f"invalid JSON: {exc}", file="<request>"))
        if not isinstance(patch, dict):
            return self._invalid(PolicyError("a merge patch must be a JSON object", file="<request>"))
        return self._change(request, lambda base: load_policies(merge_patch(base, patch), env={}), "PATCH")

    def _change(self, request: AdminRequest, build: Callable[[dict[str, Any]], Any], method: str) -> AdminResponse:
        """Read the latest document, check ``If-Match``, build the new set from it, commit.

        With sync, "latest" is Redis' revision, and the commit is a compare-and-set on
        it whenever the new document depends on the old one (PATCH, or a conditional
        PUT), so a concurrent change on another node answers 409 instead of being lost.
        """
        with self._lock:
            try:
                revision, base = self._latest()
            except Exception as exc:  # Redis unreachable
                return self._sync_unavailable(exc)
            stale = self._precondition(request, base)
            if stale is not None:
                return stale
            try:
                policies = build(base)
            except PolicyError as exc:
                return self._invalid(exc)
            conditional = method == "PATCH" or "if-match" in request.headers
            return self._commit(policies, revision if conditional else None, method)

    def _latest(self) -> tuple[int | None, dict[str, Any]]:
        """The current document: Redis' latest with sync (and its revision), else ours."""
        if self.sync is None:
            return None, self.engine.policies.document
        if isinstance(self.sync, AsyncPolicySync):
            revision, document = self._await(self.sync.fetch)
        else:
            revision, document = self.sync.fetch()
        return revision, document if document is not None else self.engine.policies.document

    def _sync_unavailable(self, exc: Exception) -> AdminResponse:
        log.logger.error(log.BACKEND_ERROR, component="admin", error=type(exc).__name__)
        return _error(503, "sync_unavailable", f"could not reach the policy store: {type(exc).__name__}")

    def _precondition(self, request: AdminRequest, document: Mapping[str, Any]) -> AdminResponse | None:
        expected = request.headers.get("if-match")
        if expected is None or expected.strip() == "*":
            return None
        current = document_etag(document)
        if current not in (tag.strip() for tag in expected.split(",")):
            return _error(412, "precondition_failed", "the policies changed since that ETag", etag=current)
        return None

    def _parse_document(self, request: AdminRequest) -> Any:
        content_type = _media_type(request.headers.get("content-type"))
        if content_type not in _JSON_TYPES and content_type not in _YAML_TYPES:
            return _error(415, "unsupported_media_type", "send the document as application/yaml or application/json")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._invalid(PolicyError(f"the body is not valid UTF-8: {exc}", file="<request>"))
        data: Any = None
        if content_type in _JSON_TYPES:
            try:
                data = json.loads(text)
            except ValueError as exc:
                line = getattr(exc, "lineno", None)
                return self._invalid(PolicyError(f"invalid JSON: {exc}", file="<request>", line=line))
        try:
            # A newline keeps the loader from ever reading the body as a file path.
            return load_policies(text if "\n" in text else text + "\n", env={})
        except PolicyError as exc:
            if data is not None and exc.reason.startswith("YAML syntax error"):
                try:  # valid JSON that YAML rejects (tab indentation): validate the data instead
                    return load_policies(data, env={})
                except PolicyError as again:
                    return self._invalid(again)
            return self._invalid(exc)

    def _invalid(self, exc: PolicyError) -> AdminResponse:
        if exc.file in (None, "<string>", "<mapping>"):
            exc = PolicyError(exc.reason, file="<request>", line=exc.line, field=exc.field)
        log.logger.warning(log.POLICIES_RELOAD_FAILED, origin="admin", error=str(exc), **exc.to_dict())
        return _json(400, {"error": "invalid_policies", "message": str(exc), **exc.to_dict()})

    def _commit(self, policies: Any, expected: int | None, method: str) -> AdminResponse:
        revision: int | None = None
        if self.sync is None:
            self.engine.set_policies(replace(policies, source=SOURCE))
        else:
            try:
                if isinstance(self.sync, AsyncPolicySync):
                    revision = self._await(self.sync.publish, policies.document, policies, expected_version=expected)
                else:
                    revision = self.sync.publish(policies.document, policies, expected_version=expected)
            except PolicyConflict as exc:
                return _error(409, "conflict", str(exc), revision=exc.current)
            except Exception as exc:  # Redis unreachable: nothing changed anywhere
                return self._sync_unavailable(exc)
        active = self.engine.policies
        etag = document_etag(active.document)
        log.logger.info(
            log.POLICIES_RELOADED, origin="admin", method=method, revision=revision, routes=len(active.routes)
        )
        return _json(
            200,
            {
                "status": "applied",
                "revision": revision,
                "etag": etag,
                "routes": [route.template for route in active.routes],
            },
            ("ETag", etag),
        )

    # -- usage -------------------------------------------------------------------------

    def _usage_target(self, request: AdminRequest) -> tuple[Any, str] | AdminResponse:
        key = request.query.get("key")
        name = request.query.get("route")
        if name is not None and key:  # a route declared in code (decorator, dependency)
            declared = self.engine.declared.get(name)
            if declared is None:
                return _error(404, "no_route", f"no route is declared as {name!r}")
            return declared, key
        path = request.query.get("path")
        if not key or not path or not path.startswith("/"):
            return _error(
                400,
                "bad_request",
                "give key=<raw client key>, path=/... and optionally method= (or route=<declared name>)",
                example="/usage?key=header:x-api-key:VALUE&method=GET&path=/resource",
            )
        method = request.query.get("method", "GET").upper()
        match = self.engine.policies.match(method, path)
        if match is None:
            return _error(404, "no_route", f"no route matches {method} {path}")
        route = match.route
        plan = request.query.get("plan")
        if route.plan is not None and plan is not None:  # the buckets of one plan (default: the default plan's)
            if plan not in route.plan.routes:
                return _error(404, "no_plan", f"no plan {plan!r}; plans: {', '.join(route.plan.routes)}")
            route = route.plan.routes[plan]
        return route, key

    def _backend_call(
        self, sync_fn: Callable[..., _T], async_fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """Call the backend the way the app does: async under ASGI, sync under WSGI.

        A backend with both faces (memory, Redis) then reuses the app's own
        connections instead of opening a second pool for the admin thread.
        """
        backend = self.engine.limiter.backend
        if isinstance(backend, AsyncBackend) and (self._run_async is not None or not isinstance(backend, Backend)):
            return self._await(async_fn, *args, **kwargs)
        if isinstance(backend, Backend):
            return sync_fn(*args, **kwargs)
        raise ConfigError(f"unsupported backend {type(backend).__name__}")

    def get_usage(self, request: AdminRequest) -> AdminResponse:
        """``GET /usage``: each limit's capacity, remaining requests and reset for the key."""
        target = self._usage_target(request)
        if isinstance(target, AdminResponse):
            return target
        route, key = target
        limiter = self.engine.limiter
        out: dict[str, Any] = {
            "route": route.template,
            "policy": route.policy,
            "scope": route.scope,
            "key_hash": limiter.hash_key(key),
            "exempt": route.exempt,
            "limits": [],
        }
        try:
            for rule in route.rules:  # one peek per limit: each has its own storage slot
                d = self._backend_call(limiter.peek, limiter.apeek, key, limiter.quota((rule,), route.scope))
                out["limits"].append(
                    {
                        "name": rule.name,
                        "rate": str(rule),
                        "limit": d.limit,
                        "remaining": d.remaining,
                        "reset_after": round(d.reset_after, 3),
                        "retry_after": round(d.retry_after, 3),
                        "allowed": d.allowed,
                    }
                )
        except ConfigError:
            raise
        except Exception as exc:
            return _error(503, "backend_unavailable", f"the backend did not answer: {type(exc).__name__}")
        out["allowed"] = all(limit["allowed"] for limit in out["limits"])
        return _json(200, out)

    def delete_usage(self, request: AdminRequest) -> AdminResponse:
        """``DELETE /usage``: make the key's quota on that route whole again."""
        target = self._usage_target(request)
        if isinstance(target, AdminResponse):
            return target
        route, key = target
        limiter = self.engine.limiter
        if route.rules:
            try:
                self._backend_call(limiter.reset, limiter.areset, key, limiter.quota(route.rules, route.scope))
            except ConfigError:
                raise
            except Exception as exc:
                return _error(503, "backend_unavailable", f"the backend did not answer: {type(exc).__name__}")
        return _json(200, {"status": "reset", "route": route.template, "key_hash": limiter.hash_key(key)})

    # -- introspection -----------------------------------------------------------------

    def explain(self, request: AdminRequest) -> AdminResponse:
        """``GET /explain?method=GET&path=/x``: what the policies do with such a request."""
        path = request.query.get("path")
        if not path or not path.startswith("/"):
            return _error(400, "bad_request", "give path=/... and optionally method=")
        return _json(200, self.engine.policies.explain(request.query.get("method", "GET"), path))

    def health(self, request: AdminRequest) -> AdminResponse:
        """``GET /health``: backend and breaker state, policy source and revision."""
        limiter = self.engine.limiter
        policies = self.engine.policies
        state = limiter.breaker.state
        sync = self.sync
        return _json(
            200,
            {
                "status": "ok" if state == "closed" else "degraded",
                "backend": type(limiter.backend).__name__,
                "breaker": state,
                "on_backend_error": limiter.on_backend_error,
                "policies": {
                    "source": policies.source,
                    "version": policies.version,
                    "routes": len(policies.routes),
                    "etag": document_etag(policies.document),
                },
                "sync": None
                if sync is None
                else {
                    "revision": sync.version,
                    "running": sync.running,
                    "key": sync.key,
                    "channel": sync.channel,
                },
            },
        )


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


# -- ASGI (Starlette) ----------------------------------------------------------------------


def admin_app(
    target: Any,
    *,
    token: str | None = None,
    allow_unauthenticated: bool = False,
    sync: PolicySync | AsyncPolicySync | None = None,
) -> Any:
    """The admin API as a Starlette app, to mount: ``Mount("/admin", app=admin_app(mw))``.

    Args:
        target: the :class:`~ratelimit_mw.asgi.RateLimitMiddleware` or its Engine.
        token: the bearer token (default: ``RATELIMIT_ADMIN_TOKEN``).
        allow_unauthenticated: serve without a token (local use only).
        sync: publish changes to every node through Redis.

    Raises:
        ConfigError: no token and not ``allow_unauthenticated``, or a short token.
    """
    import anyio.from_thread
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    api = AdminAPI(
        target,
        token=token,
        allow_unauthenticated=allow_unauthenticated,
        sync=sync,
        run_async=anyio.from_thread.run,
    )

    def respond(answer: AdminResponse) -> Response:
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    async def endpoint(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        if not api.authorized(authorization):  # before reading any body
            return respond(api.unauthorized(authorization))
        declared = request.headers.get("content-length")
        if declared is not None and _too_large(declared):
            return respond(_error(413, "too_large", f"the body exceeds {MAX_BODY} bytes"))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return respond(_error(413, "too_large", f"the body exceeds {MAX_BODY} bytes"))
        admin_request = AdminRequest(
            method=request.method,
            path=route_path(request.scope),
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=bytes(body),
        )
        return respond(await run_in_threadpool(api.handle, admin_request))

    # One catch-all route: AdminAPI routes, so 404/405 answers match the WSGI app's.
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=list(_METHODS))])
    app.state.admin = api
    return app


# -- WSGI -----------------------------------------------------------------------------------


def admin_wsgi_app(
    target: Any,
    *,
    token: str | None = None,
    allow_unauthenticated: bool = False,
    sync: PolicySync | None = None,
) -> WSGIApp:
    """The admin API as a plain WSGI app (mount with werkzeug's ``DispatcherMiddleware``).

    Arguments as for :func:`admin_app`; ``sync`` must be a :class:`PolicySync`.
    """
    api = AdminAPI(target, token=token, allow_unauthenticated=allow_unauthenticated, sync=sync)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        authorization = headers.get("authorization")
        if not api.authorized(authorization):
            answer = api.unauthorized(authorization)
        else:
            answer = _wsgi_dispatch(api, environ, headers)
        start_response(_status_line(answer.status), answer.headers)
        return [answer.body]

    return app


def _wsgi_dispatch(api: AdminAPI, environ: dict[str, Any], headers: dict[str, str]) -> AdminResponse:
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    if _too_large(length_text):
        return _error(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
    length = int(length_text) if length_text.isascii() and length_text.isdigit() else None
    stream = environ.get("wsgi.input")
    body = b""
    if stream is not None and (length is None or length > 0):
        body = stream.read(MAX_BODY + 1 if length is None else length)
        if len(body) > MAX_BODY:
            return _error(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
    path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
    query = dict(parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True))
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    return api.handle(AdminRequest(method, path, query, headers, body))


def _too_large(declared: str) -> bool:
    """Whether a Content-Length value announces more than MAX_BODY bytes.

    The digits are counted before ``int()``: Python refuses to convert more than
    4,300 digits, and an absurd header must answer 413, not 500.
    """
    digits = declared.strip()
    if not (digits.isascii() and digits.isdigit()):
        return False
    return len(digits.lstrip("0")) > len(str(MAX_BODY)) or int(digits) > MAX_BODY


def _status_line(status: int) -> str:
    from http import HTTPStatus

    return f"{status} {HTTPStatus(status).phrase}"
