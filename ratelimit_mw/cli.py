"""``ratelimit-mw``: check a policy file, explain a request, read a client's usage.

::

    ratelimit-mw check policies.yaml
    ratelimit-mw explain policies.yaml GET /users/42 -H 'X-API-Key: abc' --peer 203.0.113.5
    ratelimit-mw usage 'header:x-api-key:abc' --route 'GET /resource' \\
        --policies policies.yaml --backend redis://localhost:6379/0

Exit codes: 0 ok; 1 usage error or nothing found (no such route, no match);
2 invalid input or configuration (the policy file, a backend URL); 3 backend
unreachable. ``--json`` prints machine-readable output.

Raw client keys are never printed: ``explain`` shows the key's source and its
keyed hash (the name it has in Redis and in logs; set ``RATELIMIT_KEY_SECRET`` as
the servers do, or the hash will not match theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ratelimit_mw.errors import BackendError, ConfigError, PolicyError

__all__ = ["EXIT_BACKEND", "EXIT_INVALID", "EXIT_NOT_FOUND", "EXIT_OK", "main"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # also command-line usage errors
EXIT_INVALID = 2
EXIT_BACKEND = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 1: 2 is reserved for invalid input files."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_NOT_FOUND, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from ratelimit_mw import __version__

    parser = _Parser(prog="ratelimit-mw", description="Inspect ratelimit_mw policies and usage.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--app-dir", default=".", metavar="DIR",
                        help="directory the policies' call: specs and --app import from (default: the current one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a policy file and print its route table")
    check.add_argument("file", help="policy file (YAML or JSON)")
    check.add_argument("--json", action="store_true", help="print JSON")

    explain = commands.add_parser("explain", help="show which route, limits and key a request gets")
    explain.add_argument("file", help="policy file (YAML or JSON)")
    explain.add_argument("method", help="HTTP method, e.g. GET")
    explain.add_argument("path", help="request path, optionally with ?query")
    explain.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header (repeatable)"
    )
    explain.add_argument("--peer", help="the client address the server sees (default: none)")
    explain.add_argument(
        "--app", metavar="MODULE:ATTR",
        help="also list the limits declared in code (decorators, dependencies) of this app or engine",
    )
    explain.add_argument("--json", action="store_true", help="print JSON")

    usage = commands.add_parser("usage", help="remaining quota of one client on one route")
    usage.add_argument("key", help="raw client key as the route builds it, e.g. 'header:x-api-key:VALUE', 'ip:1.2.3.4'")
    usage.add_argument("--route", required=True, help="route label as 'check' prints it, e.g. 'GET /resource'")
    usage.add_argument("--policies", required=True, metavar="FILE", help="policy file the servers use")
    usage.add_argument("--backend", required=True, metavar="URL", help="backend URL, e.g. redis://host:6379/0")
    usage.add_argument("--prefix", help="storage key prefix (default: REDIS_PREFIX or 'rl')")
    usage.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _load(path: str) -> Any:
    from ratelimit_mw.policy.loader import load_policies

    return load_policies(Path(path))  # a Path is always a file, never YAML text


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _route_rows(policies: Any) -> list[dict[str, Any]]:
    routes = list(policies.routes)
    if policies.unmatched is not None:
        routes.append(policies.unmatched)
    out = []
    for index, route in enumerate(routes, 1):
        out.append(
            {
                "order": index if route is not policies.unmatched else None,
                "route": route.template,
                "methods": sorted(route.methods) or ["*"],
                "limits": [str(rule) for rule in route.rules],
                "key": route.key_spec,
                "scope": route.scope,
                "exempt": route.exempt,
                "shadow": route.shadow,
                "line": route.line,
            }
        )
    return out


def _cmd_check(args: argparse.Namespace) -> int:
    policies = _load(args.file)
    rows = _route_rows(policies)
    if args.json:
        print(json.dumps({"file": args.file, "routes": rows}, indent=2))
        return EXIT_OK
    table = [["#", "ROUTE", "METHODS", "LIMITS", "KEY", "SCOPE", "EXEMPT"]]
    for row in rows:
        limits = ", ".join(row["limits"]) or "-"
        if row["shadow"]:
            limits += " (shadow)"
        table.append(
            [
                "*" if row["order"] is None else str(row["order"]),
                row["route"],
                ",".join(row["methods"]),
                "-" if row["exempt"] else limits,
                "-" if row["exempt"] else row["key"],
                "-" if row["exempt"] else row["scope"],
                "yes" if row["exempt"] else "no",
            ]
        )
    print(_table(table))
    unmatched = "limited (row *)" if policies.unmatched is not None else "pass through unlimited"
    print(f"\n{args.file}: OK, {len(policies.routes)} routes; unmatched requests {unmatched}")
    return EXIT_OK


def _key_source(key: str) -> str:
    """The part of a raw key that says where it came from, without the value."""
    kind, _, rest = key.partition(":")
    if kind in ("header", "query", "cookie"):
        return f"{kind}:{rest.partition(':')[0]}"
    return kind  # ip, call, global, anonymous


def _cmd_explain(args: argparse.Namespace) -> int:
    from ratelimit_mw.core.hashing import KeyHasher
    from ratelimit_mw.testing import FakeRequest

    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise _UsageError(f"invalid header {header!r}: write 'Name: value'")
        headers.append((name.strip(), value.strip()))
    policies = _load(args.file)
    path, _, query = args.path.partition("?")
    if not path.startswith("/"):
        raise _UsageError(f"the path must start with '/', got {args.path!r}")
    from ratelimit_mw.policy.policyset import rule_text

    report = policies.explain(args.method, path)
    match = policies.match(args.method.upper(), path)
    route = None if match is None else match.route
    request = FakeRequest(args.method, path, headers, peer=args.peer, query_string=query)
    if route is not None and not route.exempt:
        if route.plan is not None:  # the limits of this client's plan
            plan_name, route = resolve_plan(route, request)
            report.update(policy=route.policy, source="plan", resolved_plan=plan_name,
                          limits=[rule_text(rule) for rule in route.rules])
        key = route.key(request)
        report["resolved_key"] = {"source": _key_source(key), "hash": KeyHasher()(key)}
    declared = declared_report(args.app) if args.app else []
    if args.app:
        report["declared"] = declared
    if args.json:
        print(json.dumps(report, indent=2))
    elif match is None or route is None:
        print(f"{report['method']} {path}: no route matches; the request passes through unlimited")
        print("\n".join(_declared_lines(declared)))
    else:
        lines = [
            f"{report['method']} {path}",
            f"  route:   {report['route']}" + (f" (line {report['line']})" if report.get("line") else ""),
        ]
        if report["exempt"]:
            lines.append("  action:  exempt (never limited)")
        else:
            plan = f"   plan: {report['resolved_plan']} (from {report['plan']['resolver']})" if "plan" in report else ""
            lines += [
                f"  action:  {report['action']}",
                f"  policy:  {report.get('policy') or '-'}{plan}",
                "  limits:  " + ", ".join(str(rule) for rule in route.rules) + f"   (source: {report['source']})",
                f"  key:     {route.key_spec}",
                f"  scope:   {report['scope']}   cost: {report['cost']}",
                f"  client:  {report['resolved_key']['source']} -> hash {report['resolved_key']['hash']}",
            ]
            if report.get("exempt_when"):
                lines.append(f"  exempt when: {report['exempt_when']}")
        print("\n".join(lines + _declared_lines(declared)))
    return EXIT_OK if match is not None else EXIT_NOT_FOUND


def resolve_plan(route: Any, request: Any) -> tuple[str, Any]:
    """The plan ``route``'s resolver picks for ``request`` and its route (the default
    plan when the value is missing or unknown, or the resolver raises)."""
    from ratelimit_mw.core.keys import VIEW_ACCESS

    choice = route.plan
    try:
        value = choice.resolver.bind(VIEW_ACCESS)(request)
    except Exception:
        value = None
    name = str(value).strip() if value is not None else ""
    if name not in choice.routes:
        name = choice.default
    return name, choice.routes[name]


def declared_report(target: str) -> list[dict[str, Any]]:
    """The limits an app declares in code: import ``module:attr`` (an app or an Engine)."""
    from ratelimit_mw.engine import Engine

    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in (attr or "app").split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise _UsageError(f"--app {target!r}: cannot import it: {type(exc).__name__}: {exc}") from None
    from ratelimit_mw.discover import engine_of

    engine = engine_of(obj)
    if engine is not None and type(obj).__module__.startswith("fastapi"):
        from ratelimit_mw.fastapi import declare_routes

        declare_routes(obj, engine)  # dependencies declare themselves on first use: do it now
    if not isinstance(engine, Engine):
        raise _UsageError(f"--app {target!r}: found no rate-limit engine in it (an Engine, app.state.ratelimit_engine, "
                          "a RateLimitMiddleware, or an 'engine' attribute)")
    from ratelimit_mw.policy.policyset import rule_text

    return [
        {"name": name, "source": route.extra.get("source", "decorator"), "key": route.key_spec,
         "limits": [rule_text(rule) for rule in route.rules]}
        for name, route in engine.declared.items()
    ]


def _declared_lines(declared: list[dict[str, Any]]) -> list[str]:
    if not declared:
        return []
    lines = ["  declared in code (each checked at its own view, after any YAML route):"]
    for entry in declared:
        limits = ", ".join(text.split(";")[0] for text in entry["limits"])
        lines.append(f"    {entry['name']}: {limits}   key: {entry['key']}   (source: {entry['source']})")
    return lines


def _cmd_usage(args: argparse.Namespace) -> int:
    from ratelimit_mw.backends.base import Backend
    from ratelimit_mw.limiter import Limiter

    policies = _load(args.policies)
    routes = list(policies.routes) + ([policies.unmatched] if policies.unmatched is not None else [])
    route = next((r for r in routes if r.template == args.route), None)
    if route is None:
        labels = ", ".join(repr(r.template) for r in routes)
        print(f"error: no route {args.route!r} in {args.policies}; routes: {labels}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if route.exempt:
        print(f"{route.template}: exempt, never limited")
        return EXIT_OK
    limiter = Limiter(args.backend, prefix=args.prefix)
    results = []
    try:
        for rule in route.rules:
            quota = limiter.quota((rule,), route.scope)
            if isinstance(limiter.backend, Backend):
                decision = limiter.peek(args.key, quota)
            else:
                decision = asyncio.run(limiter.apeek(args.key, quota))
            results.append(
                {
                    "name": rule.name,
                    "rate": str(rule),
                    "limit": decision.limit,
                    "remaining": decision.remaining,
                    "reset_after": round(decision.reset_after, 3),
                    "retry_after": round(decision.retry_after, 3),
                }
            )
    finally:
        with contextlib.suppress(Exception):  # closing a dead connection must not hide the answer
            limiter.close()
    if args.json:
        print(
            json.dumps({"route": route.template, "key_hash": limiter.hash_key(args.key), "limits": results}, indent=2)
        )
        return EXIT_OK
    table = [["LIMIT", "RATE", "CAPACITY", "REMAINING", "RESET(s)", "RETRY(s)"]]
    for r in results:
        table.append(
            [
                r["name"],
                r["rate"],
                str(r["limit"]),
                str(r["remaining"]),
                f"{r['reset_after']:g}",
                f"{r['retry_after']:g}",
            ]
        )
    print(f"{route.template}  key hash {limiter.hash_key(args.key)}")
    print(_table(table))
    return EXIT_OK


class _UsageError(Exception):
    """A command-line argument is malformed (exit 1)."""


def _is_unreachable(exc: BaseException) -> bool:
    """Connection-level failures, from our wrapper or from the driver."""
    if isinstance(exc, (BackendError, ConnectionError, TimeoutError, OSError)):
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover - depends on the install
        return False
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it).

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    # As uvicorn's --app-dir: a console script's sys.path lacks the current directory,
    # and the project's own modules (call: specs, --app) must import as they do in the app.
    app_dir = os.path.abspath(args.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    handler = {"check": _cmd_check, "explain": _cmd_explain, "usage": _cmd_usage}[args.command]
    try:
        return handler(args)
    except _UsageError as exc:
        print(f"ratelimit-mw: error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except PolicyError as exc:
        print(f"{exc}", file=sys.stderr)  # file:line: field: reason
        return EXIT_INVALID
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:
        if _is_unreachable(exc):
            print(f"backend unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_BACKEND
        raise


if __name__ == "__main__":
    sys.exit(main())
