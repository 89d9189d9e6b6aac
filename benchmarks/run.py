"""Run the benchmark suite: ratelimit_mw and its peers, side by side, in one run.

Usage::

    .venv/bin/python -m benchmarks.run [--smoke] [--only SECTION[,SECTION]] [--json OUT.json]
                                       [--repeats N] [--list]

Prints one table per section (median, min and max over interleaved repeats, and
the ratio to the section's baseline), then the issue's targets with their
measured ratio and pass/miss, and the machine's load average. Starts its own
Redis and uvicorn servers on free loopback ports and stops them at the end.
Exit status: 0 when every section ran (whatever the figures), 1 when one failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from importlib import metadata
from types import ModuleType
from typing import Any

from benchmarks.context import Context
from benchmarks.servers import REPO
from benchmarks.stats import Sample, SectionResult, Target

SECTIONS = ("inmem", "asgi", "wsgi", "flask_ext", "redis_sync", "redis_async", "uvicorn", "seed", "memory", "matcher",
            "overlimit", "fastapi_dep", "overload", "overload_http", "django_dec")
_MODULES = {"uvicorn": "uvicorn_wrk"}
_PACKAGES = ("ratelimit_mw", "limits", "slowapi", "flask-limiter", "throttled-py", "redis", "hiredis", "starlette",
             "fastapi", "flask", "werkzeug", "uvicorn", "httpx", "pyinstrument")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.sections.{_MODULES.get(name, name)}")


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out["ratelimit_mw"] == "not installed":  # imported from the work tree (not pip-installed)
        import ratelimit_mw

        out["ratelimit_mw"] = f"{ratelimit_mw.__version__} (work tree)"
    return out


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _baseline_for(sample: Sample, samples: list[Sample]) -> Sample | None:
    """The baseline row a row compares to: same unit, and the same "(...)" tail or "x," head if any."""
    baselines = [s for s in samples if s.kind == "baseline" and s.unit == sample.unit]
    if not baselines or sample in baselines:
        return None
    tail = sample.subject[sample.subject.rfind("("):] if sample.subject.endswith(")") else None
    head = sample.subject.split(",", 1)[0] if "," in sample.subject else None
    for base in baselines:
        if tail and base.subject.endswith(tail):
            return base
        if head and base.subject.startswith(head + ","):
            return base
    return baselines[0]


def _section_table(result: SectionResult, seconds: float, load: tuple[float, float]) -> str:
    lines = [f"== {result.title}   [{seconds:.1f} s; load average {load[0]:.2f} -> {load[1]:.2f}]"]
    width = max([len(s.subject) for s in result.samples] + [20])
    lines.append(f"  {'subject':<{width}}  {'kind':<8} {'median':>10} {'min':>10} {'max':>10}  {'unit':<10} "
                 "vs baseline")
    for s in result.samples:
        base = _baseline_for(s, result.samples)
        ratio = f"{s.median / base.median:.2f}x" if base is not None and base.median else ""
        lines.append(f"  {s.subject:<{width}}  {s.kind:<8} {_fmt(s.median):>10} {_fmt(s.min):>10} {_fmt(s.max):>10}"
                     f"  {s.unit:<10} {ratio}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _verdict(target: Target) -> str:
    return {True: "pass", False: "MISS", None: "n/a"}[target.passed]


def _targets_table(targets: list[Target]) -> str:
    width = max([len(t.text) for t in targets] + [10])
    lines = ["== Targets (ratios from this run: median of paired per-repeat ratios [min - max])",
             f"  {'#':>2}  {'target':<{width}}  {'measured':>26}  {'bound':>9}  result"]
    for t in targets:
        spread = f" [{_fmt(t.low)} - {_fmt(t.high)}]" if t.low is not None and t.high is not None else ""
        measured = f"{_fmt(t.ratio)}{spread}"
        lines.append(f"  {t.number:>2}  {t.text:<{width}}  {measured:>26}  {t.op} {_fmt(t.bound):>6}  {_verdict(t)}")
        if t.detail:
            lines.append(f"  {'':>2}  {'':<{width}}    {t.detail}")
    return "\n".join(lines)


def _quiet_logs(ctx: Context) -> None:
    """The library logs through structlog (to stdout by default): send it to a file, keep the cost."""
    import structlog

    handle = (ctx.workdir / "ratelimit_mw.log").open("w")
    ctx.stack.callback(handle.close)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one repeat: every section runs once")
    parser.add_argument("--only", action="append", default=[], metavar="SECTION",
                        help=f"run only these sections (repeatable or comma-separated): {', '.join(SECTIONS)}")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--repeats", type=int, help="interleaved repeats per subject (default 7; smoke 1)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in SECTIONS:
            print(f"{name:<12} {_module(name).TITLE}")
        return 0
    chosen = [s.strip() for item in args.only for s in item.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop every server we started
    ctx = Context.create(smoke=args.smoke, repeats=args.repeats)
    _quiet_logs(ctx)
    started = time.monotonic()
    load_start = Context.loadavg()
    meta: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full", "repeats": ctx.repeats,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "git": _git(), "versions": _versions(), "load_average_start": load_start,
    }
    print(f"ratelimit_mw benchmarks ({meta['mode']}, {ctx.repeats} repeats), {meta['started']}, "
          f"{meta['cpus']} CPUs, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), flush=True)
    sections: dict[str, Any] = {}
    targets: list[Target] = []
    failed = False
    try:
        for name in chosen:
            module = _module(name)
            ctx.log(f"section {name}: {module.TITLE}")
            before = Context.loadavg()[0]
            t0 = time.monotonic()
            try:
                result: SectionResult = module.run(ctx)
            except Exception as exc:
                failed = True
                seconds = time.monotonic() - t0
                sections[name] = {"name": name, "title": module.TITLE, "status": "error", "seconds": seconds,
                                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(f"\n== {module.TITLE}: FAILED after {seconds:.1f} s\n{traceback.format_exc()}", flush=True)
                continue
            seconds = time.monotonic() - t0
            load = (before, Context.loadavg()[0])
            sections[name] = {**result.as_dict(), "status": "ok", "seconds": seconds, "load_average": load}
            targets.extend(result.targets)
            print("\n" + _section_table(result, seconds, load), flush=True)
    finally:
        if ctx._redis is not None:
            meta["redis"] = ctx._redis.description
        ctx.close()
    meta["seconds"] = time.monotonic() - started
    meta["load_average_end"] = Context.loadavg()
    targets.sort(key=lambda t: t.number)
    if targets:
        print("\n" + _targets_table(targets))
    passed = sum(1 for t in targets if t.passed)
    missed = sum(1 for t in targets if t.passed is False)
    end = meta["load_average_end"]
    print(f"\n{passed} targets met, {missed} missed; {len(chosen)} sections in {meta['seconds']:.0f} s; load average "
          f"at the end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} on {meta['cpus']} CPUs")
    if args.json:
        payload = {"meta": meta, "sections": sections, "targets": [t.as_dict() for t in targets]}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
