"""Outbound rules: limits on calls *to* other APIs, and the index that finds one per request.

A rule is written in one of two forms, in code or under ``outbound:`` in a policy file:

* ``"api.openai.com": "3000/minute"``: the key is a target,
  ``[scheme://]host[:port][/path-template]``, and names the rule; the value is a
  rate, a list of rates, or a mapping with ``limits`` and the options below.
* ``openai: {limit: 3000, window: 60, host: api.openai.com}``: the seed documents'
  mapping form. The key is a name; rate fields (``limit``, ``window``/``period``,
  ``burst``...) or ``limits`` give the limit, and ``host`` (optionally ``scheme``,
  ``port``, ``path``, ``methods``) what it applies to. Without a host, the rule is
  only used by name (``@outbound.limit("openai")``, ``outbound.acquire("openai")``).

A key holding ``.``, ``:`` or ``/`` is a target; any other key is a name.

Matching: the first rule in written order whose scheme, host, port, methods and
path fit the request wins, as for inbound routes, and with the same path syntax
(:mod:`ratelimit_mw.policy.paths`). A rule naming no port matches every port of
its host; ``*.example.com`` matches subdomains of ``example.com``; host ``*`` any
host. Rules are grouped by (host, port, scheme), and each group keeps a
:class:`~ratelimit_mw.policy.matcher.Matcher`, so a request only tries rules that
could fit it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ratelimit_mw.core.rates import _MAPPING_ALIASES, Rule, parse_rates, rule_from_mapping
from ratelimit_mw.errors import ConfigError, PolicyError, did_you_mean
from ratelimit_mw.policy.matcher import Matcher, effective_methods
from ratelimit_mw.policy.model import FAILURE_MODES
from ratelimit_mw.policy.paths import PathPattern, compile_template

if TYPE_CHECKING:
    from ratelimit_mw.policy.schema import Checker
    from ratelimit_mw.policy.source import FieldPath

__all__ = ["OUTBOUND_FIELDS", "OutboundIndex", "OutboundRule", "outbound_rules", "parse_outbound_section"]

#: Fields of a rule's mapping besides the rate fields (``limit``, ``window``, ...).
OUTBOUND_FIELDS = (
    "limits", "host", "scheme", "port", "path", "methods", "on_backend_error", "cost", "description",
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(?:\*|(?:\*\.)?[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])$")
_ANY_PATH = compile_template("/**")


@dataclass(frozen=True, slots=True)
class OutboundRule:
    """One outbound limit and the requests it applies to.

    Attributes:
        name: the rule's name: its key in the mapping (a target or a plain name).
            It names the shared quota (storage key), and labels metrics and logs.
        rules: the limits, checked together.
        host: lower-case host, ``*.domain`` or ``*``; ``None`` for a name-only rule.
        scheme: ``http``/``https``, or ``None`` for either.
        port: the port, or ``None`` for any port of the host.
        path: the path template (``/**``, every path, unless given).
        methods: accepted methods (``None``: any).
        on_backend_error: failure mode, or ``None`` for the limiter's.
        cost: units one request consumes.
        line: line in the policy file, when read from one.
    """

    name: str
    rules: tuple[Rule, ...]
    host: str | None = None
    scheme: str | None = None
    port: int | None = None
    path: PathPattern = field(default=_ANY_PATH)
    methods: frozenset[str] | None = None
    on_backend_error: str | None = None
    cost: int = 1
    line: int | None = None

    @property
    def target(self) -> str:
        """What the rule applies to, as written back (``https://api.x.com:8443/v1/**``)."""
        if self.host is None:
            return ""
        text = f"{self.scheme}://" if self.scheme else ""
        text += f"[{self.host}]" if ":" in self.host else self.host
        text += f":{self.port}" if self.port is not None else ""
        return text if self.path is _ANY_PATH else text + self.path.text


def _is_target(key: str) -> bool:
    return any(ch in key for ch in ".:/") or key == "*"


def _parse_target(text: str) -> tuple[str | None, str, int | None, str | None]:
    """``[scheme://]host[:port][/path]`` -> (scheme, host, port, path).

    Raises:
        ValueError: with the reason.
    """
    scheme: str | None = None
    rest = text.strip()
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme {scheme!r} (use http or https)")
    slash = rest.find("/")
    hostport, path = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    port: int | None = None
    if hostport.startswith("["):  # [::1]:8080
        close = hostport.find("]")
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"invalid host {hostport!r}")
            port = _port(tail[1:])
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
        port = _port(port_text)
    else:
        host = hostport
    return scheme, _host(host), port, path


def _host(text: str) -> str:
    """Lower-case, without a trailing dot; an IPv6 address without brackets, as httpx gives it."""
    host = text.strip().lower().rstrip(".")
    if not host or not _HOST.match(host):
        raise ValueError(f"invalid host {text!r}; expected e.g. 'api.example.com', '*.example.com' or '*'")
    return host[1:-1] if host.startswith("[") else host


def _port(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"invalid port {value!r}; expected a number from 1 to 65535")
    return value


Fail = Callable[["FieldPath", str], NoReturn]


def _parse_rule(
    key: str, value: Any, fail: Fail, *, algorithm: str | None, on_backend_error: str | None,
    line: int | None = None,
) -> OutboundRule:
    """One rule from its key and value; ``fail(subpath, reason)`` raises where it should."""
    if not isinstance(key, str) or not key.strip():
        fail((), f"a rule name must be a non-empty string, got {key!r}")
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path_text: str | None = None
    if _is_target(key):
        try:
            scheme, host, port, path_text = _parse_target(key)
        except ValueError as exc:
            fail((), str(exc))
    options: Mapping[str, Any] = {}
    rate_fields: dict[str, Any] = {}
    limit_items: list[tuple[Any, FieldPath]]
    if isinstance(value, (str, Rule)):
        limit_items = [(value, ())]
    elif isinstance(value, list):
        if not value:
            fail((), "give at least one limit")
        limit_items = [(item, (i,)) for i, item in enumerate(value)]
    elif isinstance(value, Mapping):
        options = value
        rate_fields = {k: v for k, v in value.items() if k in _MAPPING_ALIASES}
        for field_name in value:
            if field_name not in _MAPPING_ALIASES and field_name not in OUTBOUND_FIELDS:
                known = (*OUTBOUND_FIELDS, *_MAPPING_ALIASES)
                hint = did_you_mean(str(field_name), known)
                fail((str(field_name),), f"unknown field {field_name!r} in an outbound rule{hint}")
        if "limits" in value:
            if rate_fields:
                fail((next(iter(rate_fields)),), "give 'limits' or rate fields (limit, window...), not both")
            raw = value["limits"]
            if isinstance(raw, (str, Rule, Mapping)):
                limit_items = [(raw, ("limits",))]
            elif isinstance(raw, list) and raw:
                limit_items = [(item, ("limits", i)) for i, item in enumerate(raw)]
            else:
                fail(("limits",), f"limits must be a rate or a non-empty list of rates, got {raw!r}")
        elif rate_fields:
            limit_items = [(rate_fields, ())]
        else:
            fail((), "an outbound rule needs a limit: a rate ('3000/minute'), 'limits', or 'limit' and 'window'")
    else:
        fail((), f"expected a rate ('3000/minute'), a list of rates or a mapping, got {value!r}")
    rules: list[Rule] = []
    for item, where in limit_items:
        try:
            if isinstance(item, Rule):
                found: tuple[Rule, ...] = (item,)
            elif isinstance(item, str):  # "1/second;5/minute" is two limits
                found = parse_rates(item, algorithm)
            elif isinstance(item, Mapping):
                found = (rule_from_mapping(item, algorithm),)
            else:
                fail(where, f"expected a rate such as '3000/minute', got {item!r}")
        except ConfigError as exc:
            if isinstance(exc, PolicyError):
                raise
            if item is rate_fields:  # the seeds' form: point at the field (window...) at fault
                where = _rate_field_at_fault(options, str(exc))
            fail(where, str(exc))
        for rule in found:
            if any(r.signature == rule.signature for r in rules):
                fail(where, f"duplicate limit {str(rule)!r}")
            rules.append(rule)
    if "host" in options:
        if host is not None:
            fail(("host",), "the rule's key already names a host; give it once")
        try:
            if not isinstance(options["host"], str):
                raise ValueError(f"host must be a string, got {options['host']!r}")
            scheme, host, port, path_text = _parse_target(options["host"])
        except ValueError as exc:
            fail(("host",), str(exc))
    if "scheme" in options:
        raw_scheme = options["scheme"]
        if not isinstance(raw_scheme, str) or raw_scheme.lower() not in _DEFAULT_PORTS:
            fail(("scheme",), f"scheme must be 'http' or 'https', got {raw_scheme!r}")
        scheme = raw_scheme.lower()
    if "port" in options:
        try:
            port = _port(options["port"])
        except ValueError as exc:
            fail(("port",), str(exc))
    if "path" in options:
        if path_text is not None:
            fail(("path",), "the rule's target already has a path; give it once")
        if not isinstance(options["path"], str):
            fail(("path",), f"path must be a string, got {options['path']!r}")
        path_text = options["path"]
    pattern = _ANY_PATH
    if path_text is not None:
        try:
            pattern = compile_template(path_text)
        except ValueError as exc:
            fail(("path",) if "path" in options else (), str(exc))
    methods: frozenset[str] | None = None
    if "methods" in options:
        raw_methods = options["methods"]
        items = [raw_methods] if isinstance(raw_methods, str) else raw_methods
        if not isinstance(items, list) or not all(isinstance(m, str) and m.strip() for m in items):
            fail(("methods",), f"methods must be a method or a list of methods, got {raw_methods!r}")
        methods = effective_methods([m.strip() for m in items])
    if host is None and (scheme is not None or port is not None or path_text is not None or methods):
        fail((), "scheme, port, path and methods need a host (add 'host: api.example.com')")
    mode = on_backend_error
    if "on_backend_error" in options:
        mode = options["on_backend_error"]
        if mode not in FAILURE_MODES:
            fail(("on_backend_error",), f"on_backend_error must be one of allow, deny, memory, got {mode!r}")
    cost = 1
    if "cost" in options:
        cost = options["cost"]
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            fail(("cost",), f"cost must be a whole number >= 1, got {cost!r}")
        for rule in rules:
            if cost > rule.capacity:
                fail(("cost",), f"cost {cost} exceeds the capacity {rule.capacity} of {str(rule)!r}")
    return OutboundRule(
        name=key.strip(), rules=tuple(rules), host=host, scheme=scheme, port=port, path=pattern,
        methods=methods, on_backend_error=mode, cost=cost, line=line,
    )


def _rate_field_at_fault(options: Mapping[str, Any], message: str) -> FieldPath:
    """The rate field a rate-mapping error is about (``window`` for "invalid period"), for its line."""
    fields = [k for k in options if k in _MAPPING_ALIASES]
    for key in fields:
        canon = _MAPPING_ALIASES[key]
        if canon in message or key in message:
            return (key,)
    return (fields[0],) if fields else ()



def outbound_rules(
    spec: Mapping[str, Any] | Sequence[OutboundRule] | None, *, algorithm: str | None = None
) -> tuple[OutboundRule, ...]:
    """Rules from code: ``{"api.openai.com": "3000/minute", "openai": {"limit": 3000, ...}}``.

    Args:
        spec: the mapping (see the module docstring), or rules already built.
        algorithm: the algorithm for rates that name none (default gcra).

    Raises:
        ConfigError: naming the rule and the field at fault.
    """
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        rules = tuple(spec)
        for item in rules:
            if not isinstance(item, OutboundRule):
                raise ConfigError(f"expected a mapping of outbound rules, got {item!r}")
        return rules
    out: list[OutboundRule] = []
    for key, value in spec.items():

        def fail(sub: FieldPath, reason: str, key: Any = key) -> NoReturn:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in sub)
            raise ConfigError(f"outbound rule {key!r}{where}: {reason}")

        out.append(_parse_rule(key, value, fail, algorithm=algorithm, on_backend_error=None))
    return tuple(out)


def parse_outbound_section(
    check: Checker, value: Any, path: FieldPath, *, algorithm: str | None, on_backend_error: str | None
) -> tuple[OutboundRule, ...]:
    """The ``outbound:`` section of a policy document (called by the loader).

    Args:
        check: the loader's checker: failures become PolicyErrors with file, line and field.
        value: the section's value, a mapping of rules.
        path: the section's field path, ``("outbound",)``.
        algorithm: the document's default algorithm.
        on_backend_error: the document's default failure mode, if it sets one.
    """
    section = check.mapping(value, path, "outbound")
    out: list[OutboundRule] = []
    for key, item in section.items():

        def fail(sub: FieldPath, reason: str, key: str = key) -> NoReturn:
            check.fail((*path, key, *sub), reason)

        out.append(_parse_rule(key, item, fail, algorithm=algorithm, on_backend_error=on_backend_error,
                               line=check.line((*path, key))))
    return tuple(out)


class OutboundIndex:
    """The first rule, in order, that applies to a request; and every rule by name.

    Args:
        rules: the rules in match order; names must be unique.

    Raises:
        ConfigError: two rules share a name.
    """

    __slots__ = ("_by_name", "_candidates", "_groups", "_wildcards", "rules")

    def __init__(self, rules: Sequence[OutboundRule]) -> None:
        self.rules = tuple(rules)
        self._by_name: dict[str, OutboundRule] = {}
        grouped: dict[tuple[str, int | None, str | None], list[int]] = {}
        for index, rule in enumerate(self.rules):
            if rule.name in self._by_name:
                raise ConfigError(f"two outbound rules are named {rule.name!r}")
            self._by_name[rule.name] = rule
            if rule.host is not None:
                grouped.setdefault((rule.host, rule.port, rule.scheme), []).append(index)
        #: per (host, port, scheme): the global indices and a matcher over their paths
        self._groups: dict[tuple[str, int | None, str | None], tuple[list[int], Matcher]] = {
            group: (indices, Matcher([(self.rules[i].path, self.rules[i].methods) for i in indices]))
            for group, indices in grouped.items()
        }
        self._wildcards = sorted({g[0][2:] for g in grouped if g[0].startswith("*.")}, key=len, reverse=True)
        #: (scheme, host, port) -> the groups that may hold its rule; a client talks to a
        #: few hosts, so this stays small (and is cleared if it ever grows past 4096)
        self._candidates: dict[tuple[str, str, int | None], tuple[tuple[list[int], Matcher], ...]] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name: str) -> OutboundRule | None:
        """The rule named ``name``, or ``None``."""
        return self._by_name.get(name)

    def match(self, method: str, scheme: str, host: str, port: int | None, path: str) -> OutboundRule | None:
        """The first rule for a request, or ``None`` (the request is not limited).

        Args:
            method: upper-case method.
            scheme: ``http`` or ``https``.
            host: lower-case host (httpx gives it so).
            port: the port, or ``None`` for the scheme's default.
            path: the URL path, without the query string.
        """
        candidates = self._candidates.get((scheme, host, port))
        if candidates is None:
            candidates = self._candidates_for(scheme, host, port)
        best: int | None = None
        for indices, matcher in candidates:
            hit = matcher.match(method, path or "/")
            if hit is not None:
                index = indices[hit[0]]
                if best is None or index < best:
                    best = index
        return None if best is None else self.rules[best]

    def _candidates_for(self, scheme: str, host: str, port: int | None) -> tuple[tuple[list[int], Matcher], ...]:
        effective = port if port is not None else _DEFAULT_PORTS.get(scheme)
        hosts = [host]
        for suffix in self._wildcards:
            if host.endswith("." + suffix):
                hosts.append("*." + suffix)
        hosts.append("*")
        found = tuple(
            self._groups[group]
            for name in hosts
            for group in ((name, effective, scheme), (name, effective, None), (name, None, scheme), (name, None, None))
            if group in self._groups
        )
        if len(self._candidates) >= 4096:
            self._candidates.clear()
        self._candidates[(scheme, host, port)] = found
        return found
