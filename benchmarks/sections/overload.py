"""Issue 17: what overload protection costs per request, and the simulator's figures.

The same raw ASGI app (one response start, one body) behind our middleware on the
memory backend, with a limit nobody reaches, once without and once with an
``overload:`` section (aimd, a limit nobody reaches either): the difference is the
gate (classify, acquire, release) and the release wrapper around ``send``. An info
row reads the class from a request header (``priority_from``) as well. The
simulator's step scenario (``benchmarks/overload_sim.py``, virtual time) adds its
measured goals as notes, with and without protection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.apps import ALLOW
from benchmarks.asgi_driver import check_status, http_scope, run_requests
from benchmarks.context import Context
from benchmarks.stats import SectionResult, Target, interleave

NAME = "overload"
TITLE = "Overload protection: in-process cost (us per request) and the simulator (issue 17)"

DOC = """
version: 1
%s
routes:
  - match: "GET /resource"
    limits: ["%s"]
"""
OVERLOAD = "overload: {initial: 1000, min: 1000, max: 1000}"
HEADER = "overload: {initial: 1000, min: 1000, max: 1000, priority_from: header:X-Priority}"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def run(ctx: Context) -> SectionResult:
    from ratelimit_mw import RateLimitMiddleware

    result = SectionResult(NAME, TITLE)
    count = ctx.n(5_000, 200)
    scopes = [http_scope(api_key="client-1")] * count
    loop = asyncio.new_event_loop()
    try:
        subjects = []
        variants = (("ours, allowed", "", "baseline"), ("ours + overload, allowed", OVERLOAD, "ours"),
                    ("ours + overload, class from a header", HEADER, "info"))
        for label, section, kind in variants:
            app = RateLimitMiddleware(_app, policies=DOC % (section, ALLOW), backend="memory://")
            if check_status(app, scopes[0], loop) != 200:
                raise RuntimeError(f"{label}: not allowed")
            run_requests(app, scopes[: max(count // 10, 10)], loop)
            sample = result.sample(label, "us/req", kind=kind)
            subjects.append((sample, lambda app=app: run_requests(app, scopes, loop) / len(scopes) * 1e6))
        interleave(subjects, ctx.repeats)
    finally:
        loop.close()
    without, with_ = result.get("ours, allowed").values, result.get("ours + overload, allowed").values
    diffs = sorted(b - a for a, b in zip(without, with_))
    result.targets.append(Target(17, "overload protection adds at most 3 us per request (a difference, in us)",
                                 diffs[len(diffs) // 2], 3.0, "<=", diffs[0], diffs[-1],
                                 detail="ours + overload, allowed - ours, allowed"))
    if not ctx.smoke:
        from benchmarks.overload_sim import default_gate, goals, simulate, step

        for label, factory in (("protected", default_gate()), ("unprotected", None)):
            g = goals(simulate(step(), factory), 60.0, 120.0)
            result.notes.append(
                f"simulator step 0.5x->3x->0.5x, {label}: critical p99 {g['critical_p99_ratio']:.2f}x unloaded, "
                f"critical availability {g['critical_availability']:.2%}, goodput {g['goodput_ratio']:.0%} "
                f"of capacity, limit CV {g['limit_cv']:.1%}")
    return result
