"""Outbound: what ``RateLimitTransport`` adds to an httpx request against a local server.

Usage::

    .venv/bin/python -m benchmarks.outbound [--smoke] [--requests N] [--repeats R] [--json OUT.json]

One uvicorn server on loopback (this module's ``app``: a fixed 200 answer) and one
``httpx.Client`` per subject, each sending ``N`` sequential GETs per repeat:

* ``bare``: httpx's own ``HTTPTransport``;
* ``ratelimit_mw``: :class:`ratelimit_mw.httpx.RateLimitTransport` wrapping it, with a
  rule for the server's host that is never exhausted (in-process memory backend);
* ``pyrate-limiter``: PyrateLimiter's ``RateLimiterTransport`` with an in-memory
  limiter that is never exhausted, when ``pyrate-limiter`` is installed (``bench`` extra).

The subjects run interleaved (ABC, CBA, ...) after a warm-up, so drift on a shared
machine is spread over all of them. Reported: microseconds per request (median, min
and max over the repeats) and each limited transport's paired ratio to ``bare``;
the target is a ratio of at most 1.05 for ours. On a busy machine the loopback
figures vary more than the transport costs, so a second, in-process measurement
sends the same requests to an ``httpx.MockTransport`` (no network) bare and wrapped
in ours: the difference is what our transport adds to each request, in
microseconds, also shown as a share of the median bare loopback request. Run it
alone: it is not part of ``benchmarks.run``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.servers import PLAIN_UVICORN, Uvicorn
from benchmarks.stats import Sample, interleave, paired_ratio, timed

TARGET = 1.05
_BODY = b'{"ok":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: answers every HTTP request 200 with a small JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def _clients(base: str) -> list[tuple[str, Any]]:
    """(name, httpx.Client) per subject; a peer that is not installed is left out."""
    import httpx

    from ratelimit_mw.httpx import RateLimitTransport

    host = base.split("://", 1)[1]
    clients: list[tuple[str, Any]] = [
        ("bare", httpx.Client(transport=httpx.HTTPTransport())),
        ("ratelimit_mw", httpx.Client(transport=RateLimitTransport(
            {host: "1000000/second"}, transport=httpx.HTTPTransport()))),
    ]
    try:
        from pyrate_limiter import Duration, limiter_factory
        from pyrate_limiter.extras.httpx_limiter import RateLimiterTransport
    except ImportError as exc:
        print(f"pyrate-limiter: skipped ({exc}); pip install -e '.[bench]'", file=sys.stderr)
    else:
        limiter = limiter_factory.create_inmemory_limiter(rate_per_duration=1_000_000, duration=Duration.SECOND)
        clients.append(("pyrate-limiter", httpx.Client(transport=RateLimiterTransport(limiter=limiter))))
    return clients


def _measure(client: Any, url: str, requests: int) -> Callable[[], float]:
    def run() -> None:
        get = client.get
        for _ in range(requests):
            get(url)

    return lambda: timed(run) / requests * 1e6


def _added_in_process(requests: int, repeats: int) -> float:
    """Median over the repeats of (ours - bare) in microseconds per request, with no network."""
    import httpx

    from ratelimit_mw.httpx import RateLimitTransport

    response = httpx.Response(200, content=_BODY)
    inner = httpx.MockTransport(lambda request: response)
    bare = httpx.Client(transport=inner)
    ours = httpx.Client(transport=RateLimitTransport({"api.example.com": "1000000/second"}, transport=inner))
    url = "https://api.example.com/v1/items?page=1"
    pair = [(Sample("bare", "us/request"), _measure(bare, url, requests)),
            (Sample("ours", "us/request"), _measure(ours, url, requests))]
    for _, measure in pair:
        measure()
    interleave(pair, repeats)
    return statistics.median(o - b for o, b in zip(pair[1][0].values, pair[0][0].values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a few requests, to check that it runs")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per subject and repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    requests, repeats = (50, 2) if args.smoke else (args.requests, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        server = Uvicorn("benchmarks.outbound:app", {}, ready_path="/", log_dir=Path(tmp), name="outbound",
                         options=PLAIN_UVICORN).wait_ready()
        try:
            clients = _clients(server.url)
            url = server.url + "/v1/items?page=1"
            samples = [(Sample(name, "us/request"), _measure(client, url, requests)) for name, client in clients]
            for _, measure in samples:  # warm-up: connections, imports, caches
                measure()
            interleave(samples, repeats)
            for _, client in clients:
                client.close()
        finally:
            server.stop()
    added = _added_in_process(requests * 10, repeats)
    bare = samples[0][0]
    report: dict[str, Any] = {"requests": requests, "repeats": repeats, "subjects": {}}
    print(f"outbound: {requests} sequential httpx GETs per repeat, {repeats} repeats (us/request)")
    for sample, _ in samples:
        ratio = paired_ratio(sample.values, bare.values)
        report["subjects"][sample.subject] = {**sample.as_dict(), "ratio_to_bare": ratio}
        print(f"  {sample.subject:<15} median {sample.median:8.1f}  min {sample.min:8.1f}  max {sample.max:8.1f}"
              f"  ratio to bare {ratio[0]:.3f} (min {ratio[1]:.3f}, max {ratio[2]:.3f})")
    share = added / bare.median
    report["added_us_in_process"] = added
    print(f"  in process (MockTransport, no network): ratelimit_mw adds {added:.1f} us/request"
          f" = {share:.1%} of the median bare loopback request")
    ours = report["subjects"]["ratelimit_mw"]["ratio_to_bare"][0]
    verdict = "pass" if ours <= TARGET else "miss"
    print(f"target: ratelimit_mw adds at most {TARGET - 1:.0%} -> ratio {ours:.3f}: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
