"""Target 2: ASGI in-process, memory backend: ours and slowapi vs bare Starlette.

The same Starlette app (one ``GET /resource`` route answering ``ok``), driven
directly through its ASGI callable, one request after another on one event loop.
"Allowed" variants carry a limit nobody reaches; "429" variants carry ``1/hour``
and a key the warm-up already spent, so every timed request is rejected. An info
row adds our five headers with fixed values and no limiting: what the headers
alone cost.
"""

from __future__ import annotations

import asyncio

from benchmarks.apps import starlette_app
from benchmarks.asgi_driver import check_status, http_scope, run_requests
from benchmarks.context import Context, missing_peer
from benchmarks.stats import SectionResult, interleave

NAME = "asgi"
TITLE = "ASGI in-process (Starlette, memory backend), requests/s (target 2)"


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    count = ctx.n(5_000, 200)
    scopes = [http_scope(api_key="client-1")] * count
    variants: list[tuple[str, str, str, bool, int]] = [
        ("bare Starlette", "baseline", "bare", False, 200),
        ("bare + our 5 headers, fixed", "info", "bare-headers", False, 200),
        ("ours, allowed", "ours", "ours", False, 200),
        ("ours, 429", "ours", "ours", True, 429),
        ("slowapi, allowed", "peer", "slowapi", False, 200),
        ("slowapi, 429", "peer", "slowapi", True, 429),
    ]
    loop = asyncio.new_event_loop()
    try:
        subjects = []
        for label, kind, variant, deny, status in variants:
            if variant == "slowapi" and (reason := missing_peer("slowapi")):
                result.notes.append(f"{label}: skipped, {reason}")
                continue
            app = starlette_app(variant, deny=deny)
            check_status(app, scopes[0], loop)  # the 429 variants spend their one request here
            got = check_status(app, scopes[0], loop)
            if got != status:
                raise RuntimeError(f"{label}: expected status {status}, got {got}")
            run_requests(app, scopes[: max(len(scopes) // 10, 10)], loop)  # warm-up
            sample = result.sample(label, "req/s", kind=kind)
            subjects.append((sample, lambda app=app: len(scopes) / run_requests(app, scopes, loop)))
        interleave(subjects, ctx.repeats)
    finally:
        loop.close()
    result.add_ratio_target(2, "ASGI allowed path throughput vs bare Starlette", "ours, allowed",
                            "bare Starlette", 0.80, ">=")
    result.add_ratio_target(2, "ASGI 429 path throughput vs allowed path (no slower)", "ours, 429",
                            "ours, allowed", 1.0, ">=")
    if result.has("slowapi, allowed"):
        result.notes.append("slowapi sends no rate-limit headers by default; ours sends 5 (x-ratelimit + ietf)")
    return result
