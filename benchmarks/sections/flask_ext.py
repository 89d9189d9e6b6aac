"""Flask extension (memory backend): ``@limiter.limit`` and a YAML route vs flask-limiter.

Direct WSGI calls of a Flask app (as in the ``wsgi`` section), one ``GET /resource``
keyed by ``X-API-Key``: bare Flask; our extension with the limit in the policy
document (a YAML route, decided in the ``before_request`` hook); our extension
with the limit declared by ``@limiter.limit`` on the view; flask-limiter's
``@limiter.limit``. An info row adds two no-op hooks to bare Flask: what Flask's
own hook dispatch costs. The issue's bound: the decorator path costs at most what
a YAML route costs plus the framework's dispatch (no numbered target here).
"""

from __future__ import annotations

from typing import Any

from benchmarks.apps import ALLOW, DENY, PEER_ALLOW, policies
from benchmarks.context import Context, missing_peer
from benchmarks.sections.wsgi import _call, _environ, _requests
from benchmarks.stats import SectionResult, interleave

NAME = "flask_ext"
TITLE = "Flask extension (memory backend): decorator and YAML route vs flask-limiter, requests/s"


def flask_ext_app(variant: str, *, deny: bool = False) -> Any:
    """``bare``, ``hooks`` (bare with no-op hooks), ``yaml`` (our extension, a YAML route), ``decorator`` (our
    ``@limiter.limit``) or ``flask-limiter`` (its ``@limiter.limit``)."""
    from flask import Flask, request

    app = Flask("bench_ext")
    ours = DENY if deny else ALLOW
    if variant == "flask-limiter":
        from flask_limiter import Limiter

        peer = Limiter(lambda: request.headers.get("X-API-Key", "anonymous"), app=app, storage_uri="memory://")

        @app.get("/resource")
        @peer.limit(DENY if deny else PEER_ALLOW)
        def limited() -> str:
            return "ok"

        return app
    if variant in ("bare", "hooks"):
        app.add_url_rule("/resource", "resource", lambda: "ok")
        if variant == "hooks":  # Flask's own cost of one before_request and one after_request hook
            app.before_request(lambda: None)
            app.after_request(lambda response: response)
        return app
    from ratelimit_mw.flask import RateLimiter

    if variant == "yaml":
        app.config["RATELIMIT_POLICIES"] = policies(ours)
        RateLimiter(app)
        app.add_url_rule("/resource", "resource", lambda: "ok")
        return app
    if variant != "decorator":
        raise ValueError(f"unknown variant {variant!r}")
    app.config["RATELIMIT_POLICIES"] = {"version": 1, "defaults": {"headers": ["x-ratelimit", "ietf"]}}
    limiter = RateLimiter(app)

    @app.get("/resource")
    @limiter.limit(ours, key="header:X-API-Key")
    def resource() -> str:
        return "ok"

    return app


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(5_000, 200)
    template = _environ()
    variants = [
        ("bare Flask", "baseline", "bare", False, "200"),
        ("bare + 2 no-op hooks (before/after_request)", "info", "hooks", False, "200"),
        ("ours, YAML route, allowed", "ours", "yaml", False, "200"),
        ("ours, @limiter.limit, allowed", "ours", "decorator", False, "200"),
        ("ours, @limiter.limit, 429", "ours", "decorator", True, "429"),
        ("flask-limiter, @limiter.limit, allowed", "peer", "flask-limiter", False, "200"),
        ("flask-limiter, @limiter.limit, 429", "peer", "flask-limiter", True, "429"),
    ]
    subjects = []
    for label, kind, variant, deny, status in variants:
        if variant == "flask-limiter" and (reason := missing_peer("flask-limiter")):
            result.notes.append(f"{label}: skipped, {reason}")
            continue
        app = flask_ext_app(variant, deny=deny)
        _call(app, template)
        got = _call(app, template)
        if not got.startswith(status):
            raise RuntimeError(f"{label}: expected status {status}, got {got}")
        _requests(app, template, max(count // 10, 10))  # warm-up
        sample = result.sample(label, "req/s", kind=kind)
        subjects.append((sample, lambda app=app: count / _requests(app, template, count)))
    interleave(subjects, ctx.repeats)
    result.notes.append("flask-limiter sends no rate-limit headers by default; ours sends 5 (x-ratelimit + ietf)")
    return result
