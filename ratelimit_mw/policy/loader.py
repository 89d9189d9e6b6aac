"""Loading policy documents: YAML/JSON/mappings -> a validated, compiled ``PolicySet``.

``policies.example.yaml`` at the top of the repository shows and explains every
field. The decisions a reader of this module needs:

* **Every failure is a** :class:`~ratelimit_mw.errors.PolicyError` naming the file,
  the 1-based line and the field path (``routes[2].limits[0]``); when the field sits
  in a named policy or deep in a route, the route's label and line are added.
  Unexpected exceptions are wrapped too (with ``__cause__``), so start-up and the
  admin API never show a traceback for a bad document.
* **Cascade**: built-in defaults < ``defaults:`` < the ``extends`` chain of the
  route's policy (ancestor first) < the route's own fields.
* **Route label** (``Route.template``, the metrics/log label and default scope):
  the methods as written, upper-cased and comma-joined, a space, then the path as
  written: ``"GET /resource"``, ``"POST,PUT /users/{id}"``. A route for any method
  is labelled by its path alone (``"/health"``); the unmatched route is
  ``"<unmatched>"``.
* **Limit names** (the header policy names) are unique within a route: an explicit
  ``name=`` used twice is an error; when default names collide (``10/second`` with
  and without a burst), the later rules get ``-2``, ``-3``... in list order.
  Two limits with the same maths in one route are an error (they would share state).
* **Unreachable routes** are errors: a route whose path text equals an earlier
  route's and whose methods are all covered by it (``GET`` covers ``HEAD``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ratelimit_mw.core.clientip import FORWARDED_HEADERS, ClientIP
from ratelimit_mw.core.keyspec import compile_key
from ratelimit_mw.core.rates import (
    _MAPPING_ALIASES,  # the rate-mapping field names, for "did you mean" hints
    Rule,
    parse_rates,
    rule_from_mapping,
)
from ratelimit_mw.errors import ConfigError, PolicyError, did_you_mean
from ratelimit_mw.plans import compile_predicate, compile_resolver
from ratelimit_mw.policy.inherit import LimitEntry, PolicySpec, Setting, limit_entries, resolve_policies
from ratelimit_mw.policy.matcher import Matcher, effective_methods
from ratelimit_mw.policy.model import KeyFunc, PlanChoice, Route
from ratelimit_mw.policy.outbound import OutboundRule, parse_outbound_section
from ratelimit_mw.policy.overload import OverloadSpec, parse_overload_section
from ratelimit_mw.policy.paths import PathPattern, compile_template
from ratelimit_mw.policy.policyset import UNMATCHED_LABEL, PolicySet
from ratelimit_mw.policy.schema import (
    CLIENT_IP_FIELDS,
    DEFAULTS_FIELDS,
    EXEMPT_FIELDS,
    HEADERS_OPTIONS_FIELDS,
    RESET_FORMATS,
    RESPONSE_FIELDS,
    ROUTE_FIELDS,
    SETTINGS,
    TOP_FIELDS,
    UNMATCHED_FIELDS,
    Checker,
    RouteRef,
)
from ratelimit_mw.policy.source import FieldPath, Source, format_path, read_source

__all__ = ["PolicySet", "default_policies", "load_policies", "policies_from_env"]

BUILTIN_SETTINGS: Mapping[str, Setting] = MappingProxyType(
    {
        "key": ("ip", None),
        "algorithm": ("gcra", None),
        "on_backend_error": ("allow", None),
        "headers": (("x-ratelimit", "ietf"), None),
        "cost": (1, None),
        "shadow": (False, None),
    }
)
#: A matcher entry: the compiled path and the accepted methods (``None``: any).
_Entry = tuple[PathPattern, "frozenset[str] | None"]
_MATCH = re.compile(r"(?P<methods>[^\s/]+(?:\s*,\s*[^\s/,]+)*)\s+(?P<path>(?:/|re:).*)", re.DOTALL)


def load_policies(source: Any, *, env: Mapping[str, str] | None = None) -> PolicySet:
    """Load, validate and compile a policy document.

    Args:
        source: a path (``str``/``PathLike``) to a YAML or JSON file; YAML text (a
            ``str`` holding a newline or ``": "``, or starting with ``{``); an
            already-parsed ``Mapping`` (e.g. an admin API JSON body); or a
            ``PolicySet``, returned as is. A ``str`` naming an existing file is a file.
        env: variables for ``${VAR}`` interpolation (default ``os.environ``).

    Raises:
        PolicyError: for any problem, with file, line and field.
    """
    if isinstance(source, PolicySet):
        return source
    return _load(source, os.environ if env is None else env, None)


def _load(source: Any, env: Mapping[str, str], name: str | None) -> PolicySet:
    try:
        src = read_source(source, env)
        if name is not None:
            src = Source(name, src.data, src.lines)
        return _Builder(src).build()
    except PolicyError:
        raise
    except Exception as exc:  # the contract: a bad document never escapes as a traceback
        file = name or (str(source) if isinstance(source, (str, os.PathLike)) and "\n" not in str(source)
                        else "<policies>")
        raise PolicyError(
            f"unexpected error while loading policies: {type(exc).__name__}: {exc}", file=file
        ) from exc


def default_policies(rule: str | Rule, *, key: str | list[str] = "ip") -> PolicySet:
    """A policy set that applies one limit to every request, keyed by ``key``.

    Used when the middleware is configured only by ``DEFAULT_RATE_LIMIT`` /
    ``DEFAULT_WINDOW_SECONDS``. The limit sits on the unmatched route, labelled
    ``"<unmatched>"``.

    Args:
        rule: a rate (``"100/minute"``) or a :class:`Rule`.
        key: the client key spec (default: the client IP).
    """
    entry: Any = rule if isinstance(rule, str) else _rule_mapping(rule)
    document = {"version": 1, "defaults": {"key": key}, "unmatched": {"limits": [entry]}}
    return _load(document, {}, "<default>")


def policies_from_env(env: Mapping[str, str] | None = None) -> PolicySet | None:
    """Policies from the environment, or ``None`` when it configures none.

    ``RATELIMIT_POLICIES`` (a file path) wins; else ``DEFAULT_RATE_LIMIT`` requests
    per ``DEFAULT_WINDOW_SECONDS`` (default 60) seconds, per client IP, on every request.

    Raises:
        PolicyError: the file is invalid, or a variable is not a whole number >= 1
            (``file`` is ``"<env>"`` and ``field`` the variable's name).
    """
    environ = os.environ if env is None else env
    path = environ.get("RATELIMIT_POLICIES", "").strip()
    if path:
        return load_policies(path, env=environ)
    raw = environ.get("DEFAULT_RATE_LIMIT", "").strip()
    if not raw:
        return None
    limit = _env_int(environ, "DEFAULT_RATE_LIMIT", raw)
    window_raw = environ.get("DEFAULT_WINDOW_SECONDS", "").strip() or "60"
    window = _env_int(environ, "DEFAULT_WINDOW_SECONDS", window_raw)
    policies = default_policies(Rule(limit, float(window)))
    return replace(policies, source="<env>")


def _env_int(env: Mapping[str, str], name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PolicyError(f"must be a whole number >= 1, got {env.get(name)!r}", file="<env>", field=name)
    return value


def _rule_mapping(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"limit": rule.limit, "period": rule.period, "algorithm": rule.algorithm}
    if rule.burst != rule.limit:
        out["burst"] = rule.burst
    if rule.algorithm == "leaky_bucket" and rule.max_delay is not None:
        out["max_delay"] = rule.max_delay
    out["name"] = rule.name
    return out


def split_match(text: str) -> tuple[list[str], str]:
    """``"GET,POST /x"`` -> ``(["GET", "POST"], "/x")``; a bare path has no methods.

    Raises:
        ValueError: the text is neither a path nor methods followed by a path.
    """
    if text.startswith(("/", "re:")):
        return [], text
    found = _MATCH.fullmatch(text)
    if found is None:
        raise ValueError(
            f"invalid match {text!r}: write a path ('/users/{{id}}'), 're:<regex>', "
            "or methods then a path ('GET,POST /users')"
        )
    return [m.strip() for m in found.group("methods").split(",") if m.strip()], found.group("path")


class _Builder:
    """One load: validates the document top-down and assembles the PolicySet."""

    def __init__(self, source: Source) -> None:
        self.src = source
        self.check = Checker(source)
        self.keys: dict[str | tuple[str, ...], KeyFunc] = {}
        self.defaults: dict[str, Setting] = dict(BUILTIN_SETTINGS)
        self.specs: dict[str, PolicySpec] = {}
        self.client_ip: ClientIP | None = None
        self.overload: OverloadSpec | None = None
        #: ``plans:``: plan name -> policy name, and the default plan's name
        self.plans: dict[str, str] = {}
        self.default_plan: str | None = None

    def build(self) -> PolicySet:
        check = self.check
        data = check.fields(self.src.data, (), TOP_FIELDS, "the policy document")
        if "version" not in data:
            check.fail(("version",), "missing required field 'version' (write 'version: 1' first)")
        version = data["version"]
        if type(version) is not int or version != 1:
            check.fail(("version",), f"unsupported version {version!r}; this release reads version 1")
        if "defaults" in data:
            self.defaults.update(self._defaults_section(data["defaults"], ("defaults",)))
        trusted = self._trusted(data)
        self.client_ip = self._client_ip(data, trusted)
        default_key = self._key(*self.defaults["key"])
        status, content_type, body = self._response(data)
        reset, names = self._headers_options(data)
        flags = {
            name: check.boolean(data[name], (name,), name) if name in data else False
            for name in ("count_preflight", "limit_websockets")
        }
        priority_key = None
        if "overload" in data:  # before the routes, which name its classes and pools
            self.overload = parse_overload_section(check, data["overload"], ("overload",))
            if self.overload.priority_from is not None:
                priority_key = self._key(self.overload.priority_from, ("overload", "priority_from"))
        self.specs = resolve_policies(check, data.get("policies", {}))
        policies = {name: self._policy_rules(spec) for name, spec in self.specs.items()}
        if "plans" in data:
            self._plans(data["plans"])
        routes, entries = self._routes(data)
        unmatched = self._unmatched(data)
        outbound: tuple[OutboundRule, ...] = ()
        if "outbound" in data:  # limits on calls to other APIs (ratelimit_mw.outbound)
            mode, mode_path = self.defaults["on_backend_error"]
            outbound = parse_outbound_section(
                check, data["outbound"], ("outbound",), algorithm=self.defaults["algorithm"][0],
                on_backend_error=mode if mode_path is not None else None,
            )
        return PolicySet(
            routes=tuple(routes),
            unmatched=unmatched,
            policies=MappingProxyType(policies),
            trusted_proxies=tuple(trusted),
            client_ip=self.client_ip,
            matcher=Matcher(entries),
            response_status=status,
            response_content_type=content_type,
            response_body=body,
            reset_format=reset,
            header_names=MappingProxyType(names),
            count_preflight=flags["count_preflight"],
            limit_websockets=flags["limit_websockets"],
            source=self.src.file,
            version=version,
            raw_document=copy.deepcopy(dict(data)),
            outbound=outbound,
            overload=self.overload,
            priority_key=priority_key,
            defaults=MappingProxyType({name: value for name, (value, _) in self.defaults.items()}),
            default_key=default_key,
        )

    # -- top-level sections ---------------------------------------------------------

    def _defaults_section(self, value: Any, path: FieldPath) -> dict[str, Setting]:
        body = self.check.fields(value, path, DEFAULTS_FIELDS, "defaults")
        return {k: (self.check.setting(k, body[k], (*path, k)), (*path, k)) for k in SETTINGS if k in body}

    def _trusted(self, data: Mapping[str, Any]) -> list[str]:
        if "trusted_proxies" not in data:
            return []
        value = data["trusted_proxies"]
        if isinstance(value, list) and not value:
            return []
        items: list[tuple[str, FieldPath]]
        if isinstance(value, str):  # "127.0.0.1, 10.0.0.0/8", as from an env var
            items = [(p, ("trusted_proxies",)) for p in re.split(r"[\s,]+", value) if p]
        else:
            items = self.check.string_list(value, ("trusted_proxies",), "trusted_proxies")
        return [self.check.cidr(item, path) for item, path in items]

    def _client_ip(self, data: Mapping[str, Any], trusted: list[str]) -> ClientIP:
        check = self.check
        options: dict[str, Any] = {}
        if "client_ip" in data:
            body = check.fields(data["client_ip"], ("client_ip",), CLIENT_IP_FIELDS, "client_ip")
            if "ipv6_prefix" in body:
                options["ipv6_prefix"] = check.integer(
                    body["ipv6_prefix"], ("client_ip", "ipv6_prefix"), "ipv6_prefix", 0, 128
                )
            if "forwarded_header" in body:
                header = body["forwarded_header"]
                options["forwarded_header"] = check.choice(
                    header.strip().lower() if isinstance(header, str) else header,
                    ("client_ip", "forwarded_header"), "forwarded_header", FORWARDED_HEADERS,
                )
            if "max_hops" in body:
                options["max_hops"] = check.integer(
                    body["max_hops"], ("client_ip", "max_hops"), "max_hops", 1
                )
        try:
            return ClientIP(trusted, **options)
        except Exception as exc:
            where: FieldPath = ("client_ip",) if options else ("trusted_proxies",)
            check.fail(where, str(exc) if isinstance(exc, ConfigError) else f"invalid: {exc}")

    def _response(self, data: Mapping[str, Any]) -> tuple[int, str, str | None]:
        check = self.check
        body = check.fields(data.get("response", {}), ("response",), RESPONSE_FIELDS, "response")
        status = 429
        if "status" in body:
            status = check.integer(body["status"], ("response", "status"), "status", 400, 599)
        content_type = "application/problem+json"
        if "content_type" in body:
            content_type = check.string(body["content_type"], ("response", "content_type"), "content_type")
        template = body.get("body")
        if template is not None:
            template = check.string(template, ("response", "body"), "body", empty=True)
        return status, content_type, template

    def _headers_options(self, data: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        check = self.check
        body = check.fields(
            data.get("headers_options", {}), ("headers_options",), HEADERS_OPTIONS_FIELDS, "headers_options"
        )
        reset = "delta"
        if "reset" in body:
            reset = check.choice(body["reset"], ("headers_options", "reset"), "reset format", RESET_FORMATS)
        names: dict[str, str] = {}
        if "names" in body:
            path: FieldPath = ("headers_options", "names")
            for key, value in check.mapping(body["names"], path, "headers_options.names").items():
                canon = check.header_name_key(key, (*path, key))
                names[canon] = check.header_name(value, (*path, key))
        return reset, names

    def _plans(self, value: Any) -> None:
        """``plans:``: each plan names a policy with limits; ``default`` names a plan."""
        check = self.check
        path: FieldPath = ("plans",)
        body = check.mapping(value, path, "plans")
        for name, policy in body.items():
            if name == "default":
                continue
            where = (*path, name)
            policy = check.string(policy, where, f"plan {name!r}").strip()
            if policy not in self.specs:
                hint = did_you_mean(policy, self.specs) or (
                    f" (defined: {', '.join(self.specs)})" if self.specs else " (no policies are defined)")
                check.fail(where, f"plan {name!r} names unknown policy {policy!r}{hint}")
            if not self.specs[policy].limits:
                check.fail(where, f"plan {name!r}: policy {policy!r} has no limits")
            self.plans[name] = policy
        if not self.plans:
            check.fail(path, "plans needs at least one plan, e.g. plans: {default: free, free: free}")
        if "default" not in body:
            check.fail(path, "plans needs 'default: <plan>', the plan for missing or unknown values "
                             "(never unlimited)")
        default = check.string(body["default"], (*path, "default"), "default").strip()
        if default not in self.plans:
            hint = did_you_mean(default, self.plans) or f" (plans: {', '.join(self.plans)})"
            check.fail((*path, "default"), f"default plan {default!r} is not a plan{hint}")
        self.default_plan = default

    # -- keys and limits ------------------------------------------------------------

    def _key(self, spec: str | tuple[str, ...], path: FieldPath | None) -> KeyFunc:
        cached = self.keys.get(spec)
        if cached is not None:
            return cached
        where: FieldPath = path or ("defaults", "key")
        try:
            func = compile_key(list(spec) if isinstance(spec, tuple) else spec, client_ip=self.client_ip)
        except Exception as exc:
            if isinstance(spec, tuple) and path is not None:
                for i, item in enumerate(spec):  # point at the item that fails, if one does alone
                    try:
                        compile_key(item, client_ip=self.client_ip)
                    except Exception:
                        where = (*path, i)
                        break
            reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            self.check.fail(where, f"invalid key: {reason}")
        self.keys[spec] = func
        return func

    def _rule(self, entry: Any, path: FieldPath, algorithm: str, route: RouteRef | None) -> tuple[Rule, ...]:
        """One entry of ``limits``: a mapping, or a string of one or more limits
        (``"1/second;5/minute"``)."""
        try:
            if isinstance(entry, str):
                return parse_rates(entry, algorithm)
            for field in entry:
                if field not in _MAPPING_ALIASES:
                    hint = did_you_mean(str(field), _MAPPING_ALIASES) or f" (known: {', '.join(_MAPPING_ALIASES)})"
                    self.check.fail((*path, str(field)), f"unknown rate field {field!r}{hint}", route)
            return (rule_from_mapping(entry, algorithm),)
        except ConfigError as exc:
            if isinstance(exc, PolicyError):
                raise
            self.check.fail(path, str(exc), route)

    def _rules(self, entries: tuple[LimitEntry, ...] | list[LimitEntry], algorithm: str,
               route: RouteRef | None) -> tuple[Rule, ...]:
        parsed: list[tuple[Rule, FieldPath, bool]] = []
        signatures: dict[str, FieldPath] = {}
        for entry, path in entries:
            for rule in self._rule(entry, path, algorithm, route):
                if rule.signature in signatures:
                    self.check.fail(
                        path, f"duplicate limit {str(rule)!r}: same as {format_path(signatures[rule.signature])}",
                        route,
                    )
                signatures[rule.signature] = path
                parsed.append((rule, path, rule.name != replace(rule, name="").name))
        used: dict[str, FieldPath] = {}
        for rule, path, explicit in parsed:
            if explicit:
                if rule.name in used:
                    self.check.fail(
                        path,
                        f"duplicate limit name {rule.name!r} (also {format_path(used[rule.name])}); "
                        "names label the limits in RateLimit headers and must differ within a route",
                        route,
                    )
                used[rule.name] = path
        out: list[Rule] = []
        for rule, path, explicit in parsed:
            if not explicit:
                name, n = rule.name, 2
                while name in used:
                    name, n = f"{rule.name}-{n}", n + 1
                used[name] = path
                rule = rule if name == rule.name else replace(rule, name=name)
            out.append(rule)
        return tuple(out)

    def _check_cost(self, setting: Setting, rules: tuple[Rule, ...], route: RouteRef | None) -> None:
        cost, path = setting
        for rule in rules:
            if cost > rule.capacity and path is not None:
                self.check.fail(
                    path,
                    f"cost {cost} exceeds the capacity {rule.capacity} of limit {str(rule)!r}, "
                    "so no request could ever pass",
                    route,
                )

    def _policy_rules(self, spec: PolicySpec) -> tuple[Rule, ...]:
        settings = {**self.defaults, **spec.settings}
        self._key(*settings["key"])
        if not spec.limits:
            return ()
        rules = self._rules(spec.limits, settings["algorithm"][0], None)
        self._check_cost(settings["cost"], rules, None)
        return rules

    # -- routes -----------------------------------------------------------------------

    def _routes(self, data: Mapping[str, Any]) -> tuple[list[Route], list[_Entry]]:
        value = data.get("routes", [])
        if not isinstance(value, list):
            self.check.fail(("routes",), "routes must be a list of routes ('- match: ...')")
        routes: list[Route] = []
        entries: list[_Entry] = []
        seen: dict[str, list[tuple[frozenset[str] | None, int]]] = {}
        for i, item in enumerate(value):
            route, pattern, methods = self._route(item, i)
            for earlier_methods, j in seen.get(pattern.text, ()):
                if earlier_methods is None or (methods is not None and methods <= earlier_methods):
                    earlier = routes[j]
                    self.check.fail(
                        ("routes", i, "match"),
                        f"unreachable route: routes[{j}] ({earlier.template!r}, line {earlier.line}) "
                        "already matches this path for every method it lists (GET also covers HEAD)",
                    )
            seen.setdefault(pattern.text, []).append((methods, i))
            routes.append(route)
            entries.append((pattern, methods))
        return routes, entries

    def _route(self, item: Any, index: int) -> tuple[Route, PathPattern, frozenset[str] | None]:
        check = self.check
        path: FieldPath = ("routes", index)
        body = check.fields(item, path, ROUTE_FIELDS, "a route")
        match_path = (*path, "match")
        if "match" not in body:
            check.fail(path, "a route needs 'match', e.g. match: \"GET /users/{id}\"")
        text = check.string(body["match"], match_path, "match").strip()
        try:
            written, template = split_match(text)
        except ValueError as exc:
            check.fail(match_path, str(exc))
        located = [(m, match_path) for m in written]
        if "methods" in body:
            if written:
                check.fail(
                    (*path, "methods"), "methods are given both in 'match' and in 'methods'; give them once"
                )
            located = check.string_list(body["methods"], (*path, "methods"), "methods")
        methods = self._methods(located)
        try:
            pattern = compile_template(template)
        except ValueError as exc:
            check.fail(match_path, str(exc))
        label = f"{','.join(methods)} {template}" if methods else template
        check.labels[index] = label
        line = check.line(path)
        accepted = effective_methods(methods)
        if "description" in body:
            check.string(body["description"], (*path, "description"), "description", empty=True)
        exempt = check.boolean(body["exempt"], (*path, "exempt"), "exempt") if "exempt" in body else False
        if exempt:
            for key in body:
                if key not in EXEMPT_FIELDS:
                    check.fail(
                        (*path, key),
                        f"{key!r} has no effect on an exempt route (never limited); "
                        "remove it, or remove 'exempt: true'",
                    )
            key_spec = self.defaults["key"][0]
            route = Route(
                template=label, methods=accepted or frozenset(), rules=(), scope=label,
                key=self._key(*self.defaults["key"]), key_spec=_key_text(key_spec), exempt=True, line=line,
                extra=_extra(body, key_spec, None, pattern),
            )
            return route, pattern, accepted
        route = self._limited(body, path, label, RouteRef(label, line), accepted or frozenset(), pattern)
        return route, pattern, accepted

    def _methods(self, located: list[tuple[str, FieldPath]]) -> list[str]:
        methods: list[str] = []
        for value, where in located:
            if value.strip() == "*":
                if len(located) > 1:
                    self.check.fail(where, "'*' means any method and cannot be combined with others")
                return []
            method = self.check.method(value, where)
            if method not in methods:
                methods.append(method)
        return methods

    def _limited(
        self, body: Mapping[str, Any], path: FieldPath, label: str, ref: RouteRef,
        methods: frozenset[str], pattern: PathPattern | None,
    ) -> Route:
        """A limited route (or the unmatched route) from its fields."""
        check = self.check
        if "plan" in body:
            route = self._planned(body, path, label, ref, methods, pattern)
        else:
            route = self._limited_by(body, path, label, ref, methods, pattern)
        if "exempt_when" in body:
            where = (*path, "exempt_when")
            try:
                predicate, text = compile_predicate(body["exempt_when"])
            except ConfigError as exc:
                check.fail(where, str(exc))
            route = replace(route, exempt_when=predicate, exempt_when_spec=text)
        return route

    def _planned(
        self, body: Mapping[str, Any], path: FieldPath, label: str, ref: RouteRef,
        methods: frozenset[str], pattern: PathPattern | None,
    ) -> Route:
        """A route whose limits come from the client's plan: one route per plan's policy."""
        check = self.check
        where = (*path, "plan")
        for field in ("policy", "limits", "extra_limits"):
            if field in body:
                check.fail((*path, field), f"{field!r} cannot be combined with 'plan': the limits come from "
                                           "the plan's policy (see 'plans:')")
        if self.default_plan is None:
            check.fail(where, "'plan' needs a top-level 'plans:' section mapping plan names to policies")
        spec_text = body["plan"]
        try:
            resolver = compile_resolver(spec_text)
        except ConfigError as exc:
            check.fail(where, f"invalid plan resolver: {exc}")
        by_policy: dict[str, Route] = {}
        for policy in dict.fromkeys(self.plans.values()):
            variant = self._limited_by({**body, "policy": policy}, path, label, ref, methods, pattern)
            variant.extra["source"] = "plan"
            by_policy[policy] = variant
        routes = {name: by_policy[policy] for name, policy in self.plans.items()}
        default = routes[self.default_plan]
        choice = PlanChoice(resolver, resolver.text, MappingProxyType(routes), self.default_plan)
        return replace(default, plan=choice, extra={**default.extra, "plan": resolver.text})

    def _limited_by(
        self, body: Mapping[str, Any], path: FieldPath, label: str, ref: RouteRef,
        methods: frozenset[str], pattern: PathPattern | None,
    ) -> Route:
        check = self.check
        what = "a route" if pattern is not None else "unmatched"
        spec: PolicySpec | None = None
        entries: list[LimitEntry]
        if "policy" in body and "limits" in body:
            check.fail(
                (*path, "limits"),
                f"{what} takes 'policy' or 'limits', not both (use 'extra_limits' to add to a policy's)",
            )
        if "policy" in body:
            where = (*path, "policy")
            name = check.string(body["policy"], where, "policy")
            if name not in self.specs:
                hint = did_you_mean(name, self.specs) or (
                    f" (defined: {', '.join(self.specs)})" if self.specs else " (no policies are defined)"
                )
                check.fail(where, f"unknown policy {name!r}{hint}")
            spec = self.specs[name]
            if not spec.limits and "extra_limits" not in body:
                check.fail(
                    where, f"policy {name!r} has no limits (give it 'limits', or add 'extra_limits' here)"
                )
            entries = list(spec.limits)
            if "extra_limits" in body:
                entries += limit_entries(check, body["extra_limits"], (*path, "extra_limits"), "extra_limits")
        elif "limits" in body:
            if "extra_limits" in body:
                check.fail((*path, "extra_limits"), "'extra_limits' adds to a policy's limits; "
                           "put every limit in 'limits'")
            entries = limit_entries(check, body["limits"], (*path, "limits"), "limits")
        elif "extra_limits" in body:
            check.fail((*path, "extra_limits"), "'extra_limits' adds to a policy's limits; use 'limits' "
                       "when there is no 'policy'")
        elif "priority" in body or "pool" in body:
            self._overload_fields(body, path)  # refused without an overload: section
            entries = []  # overload protection only
        else:
            check.fail(path, f"{what} needs 'policy' or 'limits'"
                       + (" (or 'exempt: true')" if pattern is not None else " (or write 'unmatched: pass')"))
        priority, pool = self._overload_fields(body, path)
        own = {k: (check.setting(k, body[k], (*path, k)), (*path, k)) for k in SETTINGS if k in body}
        settings = {**self.defaults, **(spec.settings if spec else {}), **own}
        rules = self._rules(entries, settings["algorithm"][0], ref)
        self._check_cost(settings["cost"], rules, ref)
        key_spec, key_path = settings["key"]
        scope = check.string(body["scope"], (*path, "scope"), "scope").strip() if "scope" in body else label
        return Route(
            template=label,
            methods=methods,
            rules=rules,
            scope=scope,
            key=self._key(key_spec, key_path),
            key_spec=_key_text(key_spec),
            cost=settings["cost"][0],
            exempt=False,
            policy=spec.name if spec else None,
            headers=settings["headers"][0],
            on_backend_error=settings["on_backend_error"][0],
            shadow=settings["shadow"][0],
            line=ref.line,
            priority=priority,
            pool=pool,
            extra=_extra(body, key_spec, spec, pattern),
        )

    def _overload_fields(self, body: Mapping[str, Any], path: FieldPath) -> tuple[str | None, str | None]:
        """A route's ``priority:`` and ``pool:``, checked against the ``overload:`` section."""
        found: list[str | None] = []
        for name in ("priority", "pool"):
            if name not in body:
                found.append(None)
                continue
            where = (*path, name)
            if self.overload is None:
                self.check.fail(where, f"'{name}' needs an 'overload:' section")
            choices = self.overload.priorities if name == "priority" else tuple(self.overload.pools)
            found.append(self.check.choice(body[name], where, name, choices))
        return found[0], found[1]

    def _unmatched(self, data: Mapping[str, Any]) -> Route | None:
        value = data.get("unmatched", "pass")
        if value is None or value == "pass":
            return None
        path: FieldPath = ("unmatched",)
        if not isinstance(value, Mapping):
            hint = did_you_mean(value, ["pass"]) if isinstance(value, str) else ""
            self.check.fail(path, f"unmatched must be 'pass' or a mapping with 'limits' or 'policy'{hint}")
        body = self.check.fields(value, path, UNMATCHED_FIELDS, "unmatched")
        if "description" in body:
            self.check.string(body["description"], (*path, "description"), "description", empty=True)
        ref = RouteRef(UNMATCHED_LABEL, self.check.line(path))
        return self._limited(body, path, UNMATCHED_LABEL, ref, frozenset(), None)


def _key_text(spec: str | tuple[str, ...]) -> str:
    """``Route.key_spec``: the spec as written; a chain in YAML flow style."""
    return spec if isinstance(spec, str) else "[" + ", ".join(spec) + "]"


def _extra(
    body: Mapping[str, Any], key: str | tuple[str, ...], spec: PolicySpec | None, pattern: PathPattern | None
) -> dict[str, object]:
    extra: dict[str, object] = {"key": key if isinstance(key, str) else list(key)}
    if pattern is not None:
        extra["path"] = pattern.text
        extra["params"] = pattern.params
    if spec is not None:
        extra["policy_chain"] = spec.chain
    if isinstance(body.get("description"), str):
        extra["description"] = body["description"]
    return extra
