"""The policy document's fields, and validators that fail with a location.

Each level of the document has a closed set of fields; an unknown one is an error
with a "did you mean" hint, because a misspelt ``limts:`` silently ignored would
leave a route unlimited. Validators here check one value each and return its
normal form; the loader assembles them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ratelimit_mw.core.headers import DEFAULT_HEADER_NAMES
from ratelimit_mw.core.rates import ALGORITHMS
from ratelimit_mw.errors import PolicyError, did_you_mean
from ratelimit_mw.policy.model import FAILURE_MODES, HEADER_STYLES
from ratelimit_mw.policy.source import FieldPath, Source, format_path

__all__ = [
    "CLIENT_IP_FIELDS",
    "DEFAULTS_FIELDS",
    "HEADERS_OPTIONS_FIELDS",
    "HTTP_METHODS",
    "POLICY_FIELDS",
    "RESPONSE_FIELDS",
    "ROUTE_FIELDS",
    "SETTINGS",
    "TOP_FIELDS",
    "UNMATCHED_FIELDS",
    "EXEMPT_FIELDS",
    "RESET_FORMATS",
    "Checker",
    "RouteRef",
]

#: Settings that cascade: built-in default < ``defaults`` < policy chain < route.
SETTINGS = ("key", "algorithm", "on_backend_error", "headers", "cost", "shadow")

TOP_FIELDS = (
    "version",
    "defaults",
    "trusted_proxies",
    "client_ip",
    "response",
    "headers_options",
    "count_preflight",
    "limit_websockets",
    "policies",
    "plans",
    "routes",
    "unmatched",
    "outbound",
    "overload",
)
DEFAULTS_FIELDS = SETTINGS
POLICY_FIELDS = (*SETTINGS, "limits", "extra_limits", "extends", "description")
ROUTE_FIELDS = (
    "match", "methods", "policy", "limits", "extra_limits", "plan", *SETTINGS, "scope", "exempt", "exempt_when",
    "description", "priority", "pool",
)
#: Fields that mean something on an exempt route.
EXEMPT_FIELDS = ("match", "methods", "exempt", "description")
UNMATCHED_FIELDS = (
    "policy", "limits", "extra_limits", "plan", *SETTINGS, "scope", "exempt_when", "description", "priority", "pool",
)
RESPONSE_FIELDS = ("status", "content_type", "body")
HEADERS_OPTIONS_FIELDS = ("reset", "names")
CLIENT_IP_FIELDS = ("ipv6_prefix", "forwarded_header", "max_hops")
RESET_FORMATS = ("delta", "epoch")
HTTP_METHODS = (
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    # WebDAV and the QUERY draft, which some APIs use.
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "QUERY",
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")



@dataclass(frozen=True, slots=True)
class RouteRef:
    """The route an error belongs to, for the "(route ... at line N)" hint."""

    label: str
    line: int | None

    def __str__(self) -> str:
        # A known label is quoted ('GET /x'); a bare field path (routes[2]) is not.
        return self.label if self.label.startswith("routes[") else repr(self.label)


class Checker:
    """Raises located :class:`PolicyError` s for one :class:`Source`.

    Args:
        source: the document being validated (its file name and line map).
    """

    def __init__(self, source: Source) -> None:
        self.file = source.file
        self._lines = source.lines
        #: Route labels by index, filled in by the loader as routes are compiled.
        self.labels: dict[int, str] = {}

    def line(self, path: FieldPath) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        while True:
            line = self._lines.get(path)
            if line is not None or not path:
                return line
            path = path[:-1]

    def fail(self, path: FieldPath, reason: str, route: RouteRef | None = None) -> NoReturn:
        """Raise a :class:`PolicyError` at ``path``.

        The route's label and line are added when the field is not on the route's own
        line: inside a route (``routes[2].limits[0]``), or elsewhere but found while
        building a route (a policy limit the route's ``algorithm`` cannot use).
        """
        line = self.line(path)
        if route is None:
            route = self._enclosing_route(path)
        if route is not None and route.line is not None and route.line != line:
            reason = f"{reason} (in route {route} at line {route.line})"
        raise PolicyError(reason, file=self.file, line=line, field=format_path(path) or None)

    def _enclosing_route(self, path: FieldPath) -> RouteRef | None:
        if len(path) < 3 or path[0] != "routes" or not isinstance(path[1], int):
            return None
        label = self.labels.get(path[1], format_path(path[:2]))
        return RouteRef(label, self._lines.get(path[:2]))

    # -- structure -------------------------------------------------------------------

    def mapping(self, value: Any, path: FieldPath, what: str) -> Mapping[str, Any]:
        """``value`` must be a mapping with string keys."""
        if not isinstance(value, Mapping):
            self.fail(path, f"{what} must be a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys of {what} must be strings, got {key!r}")
        return value

    def fields(
        self, value: Any, path: FieldPath, allowed: Iterable[str], what: str
    ) -> Mapping[str, Any]:
        """``value`` must be a mapping whose keys are all in ``allowed``."""
        data = self.mapping(value, path, what)
        known = tuple(allowed)
        for key in data:
            if key not in known:
                hint = did_you_mean(key, known) or f" (known fields: {', '.join(known)})"
                self.fail((*path, key), f"unknown field {key!r} in {what}{hint}")
        return data

    def string(self, value: Any, path: FieldPath, what: str, *, empty: bool = False) -> str:
        """A string; blank only if ``empty`` (YAML turns ``x:`` into null, not "")."""
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.fail(path, f"{what} must be a non-empty string, got {_kind(value)}")
        return value

    def boolean(self, value: Any, path: FieldPath, what: str) -> bool:
        """A real boolean: ``"false"`` in quotes is a string, and truthy, so it is refused."""
        if not isinstance(value, bool):
            self.fail(path, f"{what} must be true or false, got {value!r}")
        return value

    def integer(self, value: Any, path: FieldPath, what: str, low: int, high: int | None = None) -> int:
        """A whole number in ``[low, high]``; ``true`` is not 1 here."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"{what} must be a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            self.fail(path, f"{what} must be {bound}, got {value}")
        return value

    def choice(self, value: Any, path: FieldPath, what: str, choices: Iterable[str]) -> str:
        """One of ``choices``, with the closest one suggested when it is not."""
        options = tuple(choices)
        if not isinstance(value, str) or value not in options:
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            self.fail(path, f"invalid {what} {value!r}{hint} (expected one of: {', '.join(options)})")
        return value

    def string_list(self, value: Any, path: FieldPath, what: str) -> list[tuple[str, FieldPath]]:
        """A string or a list of strings -> ``[(item, path of item)]``."""
        if isinstance(value, str):
            return [(value, path)]
        if not isinstance(value, list):
            self.fail(path, f"{what} must be a string or a list of strings, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            out.append((self.string(item, (*path, i), f"each item of {what}"), (*path, i)))
        return out

    # -- settings ----------------------------------------------------------------------

    def setting(self, name: str, value: Any, path: FieldPath) -> Any:
        """Validate one cascading setting (see :data:`SETTINGS`); returns its normal form."""
        if name == "key":
            return self.key_spec(value, path)
        if name == "algorithm":
            return self.choice(value, path, "algorithm", ALGORITHMS)
        if name == "on_backend_error":
            return self.choice(value, path, "on_backend_error", FAILURE_MODES)
        if name == "headers":
            return self.header_styles(value, path)
        if name == "cost":
            return self.integer(value, path, "cost", 1)
        if name == "shadow":
            return self.boolean(value, path, "shadow")
        raise AssertionError(f"not a setting: {name}")  # pragma: no cover - programming error

    def key_spec(self, value: Any, path: FieldPath) -> str | tuple[str, ...]:
        """A key spec: one string, or a non-empty list of strings tried in order."""
        if isinstance(value, str):
            return self.string(value, path, "key")
        if isinstance(value, list) and value:
            return tuple(item for item, _ in self.string_list(value, path, "key"))
        self.fail(path, f"key must be a string or a non-empty list of strings, got {_kind(value)}")

    def header_styles(self, value: Any, path: FieldPath) -> tuple[str, ...]:
        if isinstance(value, list) and not value:
            return ("none",)
        styles: list[str] = []
        for item, item_path in self.string_list(value, path, "headers"):
            style = self.choice(item.lower(), item_path, "header style", HEADER_STYLES)
            if style not in styles:
                styles.append(style)
        if "none" in styles and len(styles) > 1:
            self.fail(path, "header style 'none' cannot be combined with other styles")
        return tuple(styles)

    # -- other values --------------------------------------------------------------------

    def method(self, value: str, path: FieldPath) -> str:
        """An HTTP method, upper-cased; unknown ones are refused as likely typos (``GETT``)."""
        method = value.strip().upper()
        if method not in HTTP_METHODS:
            hint = did_you_mean(method, HTTP_METHODS)
            self.fail(path, f"unknown HTTP method {value!r}{hint}")
        return method

    def cidr(self, value: Any, path: FieldPath) -> str:
        """An address or network; checked here so the error points at the list item."""
        text = self.string(value, path, "a trusted proxy")
        if text.strip() == "*":
            self.fail(path, "'*' is not supported: trusting every peer lets any client choose its "
                      "address; list your proxies' networks (e.g. 10.0.0.0/8)")
        try:
            ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            self.fail(path, f"invalid IP network {text!r}; expected e.g. '10.0.0.0/8' or '::1/128'")
        return text.strip()

    def header_name(self, value: Any, path: FieldPath) -> str:
        """An HTTP header name (RFC 9110 token), so a rename cannot break the response."""
        text = self.string(value, path, "a header name")
        if any(ch not in _TOKEN_CHARS for ch in text):
            self.fail(path, f"invalid header name {text!r}")
        return text

    def header_name_key(self, key: str, path: FieldPath) -> str:
        """A key of ``headers_options.names``: ``limit`` or a default name like ``X-RateLimit-Limit``."""
        if key in DEFAULT_HEADER_NAMES:
            return key
        by_name = {v.lower(): k for k, v in DEFAULT_HEADER_NAMES.items()}
        canon = by_name.get(key.lower())
        if canon is None:
            choices = [*DEFAULT_HEADER_NAMES, *DEFAULT_HEADER_NAMES.values()]
            self.fail(path, f"unknown header {key!r}{did_you_mean(key, choices)}")
        return canon


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"{type(value).__name__} {value!r}"
    return {dict: "a mapping", list: "a list", bool: f"{value!r}"}.get(type(value), type(value).__name__)
