"""FastAPI in-process, memory backend: the RateLimit dependency vs the YAML route vs
slowapi's decorator, against bare FastAPI (issue 16's speed goal).

The same one-route app driven through its ASGI callable, one request after another on
one event loop, as the ``asgi`` section does for Starlette. The dependency row pays
FastAPI's dependency resolution plus one check; the YAML row one check before routing.
"""

from __future__ import annotations

import asyncio

from benchmarks.apps import fastapi_app
from benchmarks.asgi_driver import check_status, http_scope, run_requests
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult, interleave

NAME = "fastapi_dep"
TITLE = "FastAPI in-process (memory backend): dependency vs YAML route vs slowapi, requests/s"


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(3_000, 100)
    scopes = [http_scope(api_key="client-1")] * count
    variants: list[tuple[str, str, str, bool, int]] = [
        ("bare FastAPI", "baseline", "bare", False, 200),
        ("bare + a no-op dependency (request, response)", "info", "bare-dependency", False, 200),
        ("ours, YAML route, allowed", "ours", "ours-yaml", False, 200),
        ("ours, RateLimit dependency, allowed", "ours", "ours-dependency", False, 200),
        ("ours, RateLimit dependency, 429", "ours", "ours-dependency", True, 429),
        ("slowapi decorator, allowed", "peer", "slowapi", False, 200),
    ]
    loop = asyncio.new_event_loop()
    try:
        subjects = []
        for label, kind, variant, deny, status in variants:
            if variant == "slowapi" and (reason := missing_peer("slowapi")):
                result.notes.append(f"{label}: skipped, {reason}")
                continue
            app = fastapi_app(variant, deny=deny)
            check_status(app, scopes[0], loop)  # the 429 variant spends its one request here
            got = check_status(app, scopes[0], loop)
            if got != status:
                raise RuntimeError(f"{label}: expected status {status}, got {got}")
            run_requests(app, scopes[: max(len(scopes) // 10, 10)], loop)  # warm-up
            sample = result.sample(label, "req/s", kind=kind)
            subjects.append((sample, lambda app=app: len(scopes) / run_requests(app, scopes, loop)))
        interleave(subjects, ctx.repeats)
    finally:
        loop.close()
    result.notes.append("the dependency row is FastAPI's dependency resolution (the no-op row) plus the check "
                        "the YAML row runs")
    return result
