"""Loading: sources, the example file, interpolation, inheritance, exports and helpers."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ratelimit_mw.core.rates import Rule, parse_rate
from ratelimit_mw.errors import PolicyError
from ratelimit_mw.policy import schema
from ratelimit_mw.policy.loader import PolicySet, default_policies, load_policies, policies_from_env
from ratelimit_mw.policy.policyset import rule_text
from ratelimit_mw.testing import FakeRequest

EXAMPLE = Path(__file__).resolve().parents[2] / "policies.example.yaml"


def load(text: str, env: Mapping[str, str] | None = None) -> PolicySet:
    return load_policies(textwrap.dedent(text), env={} if env is None else env)


# -- the example file --------------------------------------------------------------------


def test_example_loads_cleanly() -> None:
    policies = load_policies(EXAMPLE, env={})
    assert policies.source == str(EXAMPLE)
    assert [r.template for r in policies.routes] == [
        "/health",
        "GET /resource",
        "GET /reports/{id:int}",
        "POST,PUT /users/{id}",
        r"re:^/api/v\d+/search$",
        "GET /data",
    ]
    assert policies.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    assert policies.unmatched is not None and policies.unmatched.template == "<unmatched>"
    assert set(policies.policies) == {"free", "pro", "internal"}


def _used_fields(values: list[Any]) -> set[str]:
    return {key for value in values if isinstance(value, dict) for key in value}


def test_example_shows_every_field() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    levels: list[tuple[str, tuple[str, ...], set[str]]] = [
        ("top", schema.TOP_FIELDS, set(doc)),
        ("defaults", schema.DEFAULTS_FIELDS, set(doc["defaults"])),
        ("policy", schema.POLICY_FIELDS, _used_fields(list(doc["policies"].values()))),
        ("route", schema.ROUTE_FIELDS, _used_fields(doc["routes"])),
        ("unmatched", ("limits", "key", "scope", "description"), set(doc["unmatched"])),
        ("response", schema.RESPONSE_FIELDS, set(doc["response"])),
        ("headers_options", schema.HEADERS_OPTIONS_FIELDS, set(doc["headers_options"])),
        ("client_ip", schema.CLIENT_IP_FIELDS, set(doc["client_ip"])),
    ]
    for level, fields, used in levels:
        assert set(fields) <= used, f"{level}: {sorted(set(fields) - used)} not shown"
    words = ("`policy: free`", "`extra_limits`", "pass", "{rest:path}", "{id:int}", "**", "re:")
    for word in (*words, "$${", "${VAR:-default}", "HEAD", "epoch"):
        assert word in text, word


def test_example_settings_cascade() -> None:
    policies = load_policies(EXAMPLE, env={})
    reports = policies.routes[2]
    assert reports.policy == "pro"
    assert [r.name for r in reports.rules] == ["100-per-second", "100000-per-day", "reports"]
    assert {r.algorithm for r in reports.rules} == {"token_bucket"}
    assert reports.key_spec == "header:X-API-Key"
    assert reports.headers == ("ietf", "draft03")
    assert reports.on_backend_error == "memory"
    users = policies.routes[3]
    assert (users.scope, users.cost, users.shadow) == ("users-write", 2, False)
    assert users.on_backend_error == "deny"
    assert users.methods == frozenset({"POST", "PUT"})
    assert policies.routes[0].exempt and policies.routes[0].rules == ()


# -- sources -------------------------------------------------------------------------------

MINIMAL = "version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n"


@pytest.mark.parametrize(
    ("kind", "expected_source"),
    [
        pytest.param("text", "<string>", id="yaml-text"),
        pytest.param("json-text", "<string>", id="json-text"),
        pytest.param("mapping", "<mapping>", id="mapping"),
        pytest.param("path-str", "FILE", id="path-str"),
        pytest.param("pathlike", "FILE", id="pathlike"),
        pytest.param("json-file", "FILE", id="json-file"),
    ],
)
def test_sources(kind: str, expected_source: str, tmp_path: Path) -> None:
    data = {"version": 1, "routes": [{"match": "/x", "limits": ["1/second"]}]}
    file = tmp_path / ("p.json" if kind == "json-file" else "p.yaml")
    file.write_text(json.dumps(data) if kind == "json-file" else MINIMAL)
    source: Any = {
        "text": MINIMAL,
        "json-text": json.dumps(data),
        "mapping": data,
        "path-str": str(file),
        "pathlike": file,
        "json-file": file,
    }[kind]
    policies = load_policies(source, env={})
    assert policies.source == (str(file) if expected_source == "FILE" else expected_source)
    assert [r.template for r in policies.routes] == ["/x"]
    assert policies.routes[0].line == (None if kind == "mapping" else policies.routes[0].line)


def test_policy_set_is_returned_as_is() -> None:
    policies = load(MINIMAL)
    assert load_policies(policies) is policies


def test_yaml_lines_are_one_based() -> None:
    policies = load(MINIMAL)
    assert policies.routes[0].line == 3


def test_yaml_anchors_and_merge_keys() -> None:
    policies = load(
        """\
        version: 1
        routes:
          - &base
            match: /a
            limits: [1/second]
            cost: 1
          - <<: *base
            match: /b
        """
    )
    assert [(r.template, str(r.rules[0])) for r in policies.routes] == [
        ("/a", "1/second"),
        ("/b", "1/second"),
    ]


# -- interpolation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        pytest.param("header:${H}", {"H": "X-Key"}, "header:X-Key", id="set"),
        pytest.param("header:${H:-X-Default}", {}, "header:X-Default", id="default-when-unset"),
        pytest.param("header:${H:-X-Default}", {"H": ""}, "header:X-Default", id="default-when-empty"),
        pytest.param("header:${H:-X-Default}", {"H": "X-Set"}, "header:X-Set", id="set-beats-default"),
        pytest.param("header:${A}-${B}", {"A": "X", "B": "Y"}, "header:X-Y", id="two-references"),
    ],
)
def test_interpolation(value: str, env: dict[str, str], expected: str) -> None:
    policies = load(f"version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n    key: '{value}'\n", env)
    assert policies.routes[0].key_spec == expected


def test_interpolation_escape_and_single_pass() -> None:
    policies = load(
        """\
        version: 1
        response:
          body: 'retry in $${retry_after}s ${MSG}'
        """,
        {"MSG": "${NOT_EXPANDED}"},
    )
    assert policies.response_body == "retry in ${retry_after}s ${NOT_EXPANDED}"


def test_unquoted_interpolation_is_retyped_quoted_is_not() -> None:
    policies = load(
        """\
        version: 1
        count_preflight: ${PREFLIGHT:-true}
        routes:
          - match: /x
            limits: ["${RATE:-5/minute}"]
            cost: ${COST:-2}
            description: "${COST:-2}"
        """,
        {"RATE": "10/minute"},
    )
    assert policies.count_preflight is True
    assert policies.routes[0].cost == 2
    assert str(policies.routes[0].rules[0]) == "10/minute"
    assert policies.document["routes"][0]["description"] == "2"


def test_interpolation_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATELIMIT_TEST_HEADER", "X-From-Env")
    policies = load_policies(
        "version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n"
        "    key: header:${RATELIMIT_TEST_HEADER}\n"
    )
    assert policies.routes[0].key_spec == "header:X-From-Env"


def test_mapping_sources_are_interpolated() -> None:
    doc: dict[str, Any] = {"version": 1, "routes": [{"match": "/x", "limits": ["${RATE}"]}]}
    policies = load_policies(doc, env={"RATE": "3/second"})
    assert str(policies.routes[0].rules[0]) == "3/second"
    assert doc["routes"][0]["limits"] == ["${RATE}"]  # the caller's data is not modified


# -- inheritance ----------------------------------------------------------------------------

INHERITANCE = """\
version: 1
defaults:
  key: ip
  cost: 1
  headers: [x-ratelimit]
policies:
  base:
    key: header:X-Base
    algorithm: sliding_window
    headers: [ietf]
    limits: [100/minute]
  mid:
    extends: base
    cost: 2
    limits: [10/second, 1000/day]
  top:
    extends: mid
    algorithm: gcra
    extra_limits: ["2/second; name=top"]
  sibling:
    extends: base
    extra_limits: [5/hour]
routes:
  - match: /top
    policy: top
    key: header:X-Route
  - match: /mid
    policy: mid
  - match: /sibling
    policy: sibling
    extra_limits: [7/day]
"""


def test_inheritance_several_levels_and_override_order() -> None:
    policies = load(INHERITANCE)
    top, mid, sibling = policies.routes
    # limits: `limits` replaces the parent's, `extra_limits` adds to the result
    assert [str(r) for r in policies.policies["base"]] == ["100/minute"]
    assert [str(r) for r in policies.policies["mid"]] == ["10/second", "1000/day"]
    assert [r.name for r in policies.policies["top"]] == ["10-per-second", "1000-per-day", "top"]
    assert [str(r) for r in policies.policies["sibling"]] == ["100/minute", "5/hour"]
    # algorithm: the nearest definition wins, and applies to inherited limits
    assert {r.algorithm for r in policies.policies["mid"]} == {"sliding_window"}
    assert {r.algorithm for r in top.rules} == {"gcra"}
    # route > policy chain > defaults
    assert top.key_spec == "header:X-Route"
    assert mid.key_spec == "header:X-Base"
    assert (top.cost, mid.cost, sibling.cost) == (2, 2, 1)
    assert top.headers == ("ietf",)
    assert top.extra["policy_chain"] == ("top", "mid", "base")
    assert [str(r) for r in sibling.rules] == ["100/minute", "5/hour", "7/day"]


# -- limit names -----------------------------------------------------------------------------


def test_colliding_default_names_get_suffixes() -> None:
    policies = load(
        """\
        version: 1
        routes:
          - match: /x
            limits: ["10/second", "10/second; burst=20", "10/second; algorithm=fixed_window", "1/day; name=a"]
        """
    )
    rules = policies.routes[0].rules
    assert [r.name for r in rules] == ["10-per-second", "10-per-second-2", "10-per-second-3", "a"]
    assert rules[1] == dataclasses.replace(parse_rate("10/second; burst=20"), name="10-per-second-2")
    assert rules[1].signature == parse_rate("10/second; burst=20").signature


def test_default_name_yields_to_an_explicit_one() -> None:
    policies = load(
        'version: 1\nroutes:\n  - match: /x\n    limits: ["10/second", "20/second; name=10-per-second"]\n'
    )
    assert [r.name for r in policies.routes[0].rules] == ["10-per-second-2", "10-per-second"]


def test_limit_mapping_form() -> None:
    policies = load(
        "version: 1\nroutes:\n  - match: /x\n    limits: [{limit: 100, period: 60, burst: 150, name: m}]\n"
    )
    assert policies.routes[0].rules == (Rule(100, 60.0, burst=150, name="m"),)


# -- matching defaults, scopes, unmatched ----------------------------------------------------


def test_route_fields_and_defaults() -> None:
    policies = load(
        """\
        version: 1
        routes:
          - match: "GET, post /a/{id}"
            limits: [1/second]
          - match: /b
            methods: [put]
            scope: shared
            limits: [1/second]
          - match: /c
            methods: ["*"]
            limits: [1/second]
          - match: "* /d"
            limits: [1/second]
        """
    )
    a, b, c, d = policies.routes
    assert (d.template, d.methods) == ("/d", frozenset())
    assert (a.template, a.scope, a.methods) == ("GET,POST /a/{id}", "GET,POST /a/{id}",
                                                frozenset({"GET", "HEAD", "POST"}))
    assert (b.template, b.scope) == ("PUT /b", "shared")
    assert (c.template, c.methods) == ("/c", frozenset())
    assert (a.key_spec, a.cost, a.headers, a.on_backend_error, a.shadow) == (
        "ip", 1, ("x-ratelimit", "ietf"), "allow", False,
    )
    assert a.rules[0].algorithm == "gcra"
    assert a.key(FakeRequest(peer="203.0.113.9")) == a.key(FakeRequest(peer="203.0.113.9"))
    assert policies.unmatched is None
    assert (policies.response_status, policies.response_content_type, policies.response_body) == (
        429, "application/problem+json", None,
    )
    assert (policies.reset_format, dict(policies.header_names)) == ("delta", {})
    assert (policies.count_preflight, policies.limit_websockets) == (False, False)


def test_header_options_and_client_ip() -> None:
    policies = load(
        """\
        version: 1
        trusted_proxies: "10.0.0.0/8, 192.168.0.0/16"
        client_ip: {ipv6_prefix: 56, forwarded_header: Forwarded, max_hops: 4}
        headers_options:
          reset: epoch
          names: {X-RateLimit-Remaining: X-Left, retry_after: X-Retry}
        """
    )
    assert policies.trusted_proxies == ("10.0.0.0/8", "192.168.0.0/16")
    assert (policies.client_ip.ipv6_prefix, policies.client_ip.forwarded_header) == (56, "forwarded")
    assert policies.client_ip.max_hops == 4
    assert policies.reset_format == "epoch"
    assert dict(policies.header_names) == {"remaining": "X-Left", "retry_after": "X-Retry"}


def test_unmatched_route_with_policy() -> None:
    policies = load(
        """\
        version: 1
        policies:
          free: {limits: [5/minute]}
        unmatched:
          policy: free
          extra_limits: [100/day]
          key: global
        """
    )
    route = policies.unmatched
    assert route is not None
    assert (route.template, route.scope, route.policy, route.key_spec) == (
        "<unmatched>", "<unmatched>", "free", "global",
    )
    assert [str(r) for r in route.rules] == ["5/minute", "100/day"]
    found = policies.match("DELETE", "/anything")
    assert found is not None and found.route is route and found.params == {}


# -- exports -----------------------------------------------------------------------------------


def test_document_round_trips() -> None:
    policies = load(INHERITANCE + "response:\n  body: 'wait $${retry_after}s'\n")
    assert policies.response_body == "wait ${retry_after}s"
    document = policies.document
    assert document["response"]["body"] == "wait $${retry_after}s"
    again = load_policies(document, env={})
    assert again.response_body == policies.response_body
    assert [r.template for r in again.routes] == [r.template for r in policies.routes]
    assert [r.rules for r in again.routes] == [r.rules for r in policies.routes]
    from_yaml = load_policies(policies.to_yaml(), env={})
    assert from_yaml.document == document
    assert [r.rules for r in from_yaml.routes] == [r.rules for r in policies.routes]


def test_example_round_trips_through_yaml() -> None:
    policies = load_policies(EXAMPLE, env={})
    again = load_policies(policies.to_yaml(), env={})
    assert again.document == policies.document
    assert [dataclasses.replace(r, key=None, line=None) for r in again.routes] == [  # type: ignore[arg-type]
        dataclasses.replace(r, key=None, line=None) for r in policies.routes  # type: ignore[arg-type]
    ]


def test_policy_set_is_immutable() -> None:
    policies = load(INHERITANCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policies.routes = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        policies.policies["x"] = ()  # type: ignore[index]
    policies.document["version"] = 99
    assert policies.document["version"] == 1


def test_explain() -> None:
    policies = load(
        """\
        version: 1
        policies:
          free: {limits: ["10/second; burst=40"]}
        routes:
          - match: /health
            exempt: true
          - match: GET /users/{id:int}
            policy: free
            key: [header:X-API-Key, ip]
        """
    )
    assert policies.explain("get", "/users/7") == {
        "method": "GET",
        "path": "/users/7",
        "matched": True,
        "route": "GET /users/{id:int}",
        "line": 7,
        "params": {"id": "7"},
        "exempt": False,
        "action": "limit",
        "policy": "free",
        "source": "yaml",
        "limits": ["10/second; burst=40; algorithm=gcra; name=10-per-second"],
        "key": ["header:X-API-Key", "ip"],
        "scope": "GET /users/{id:int}",
        "cost": 1,
        "headers": ["x-ratelimit", "ietf"],
        "on_backend_error": "allow",
        "shadow": False,
    }
    assert policies.explain("GET", "/health") == {
        "method": "GET", "path": "/health", "matched": True, "route": "/health", "line": 5,
        "params": {}, "exempt": True, "action": "exempt",
    }
    assert policies.explain("GET", "/nope") == {
        "method": "GET", "path": "/nope", "matched": False, "route": None, "action": "pass",
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("10/second; burst=40", id="burst"),
        pytest.param("5/10s; algorithm=sliding_window; name=w", id="window"),
        pytest.param("3/second; algorithm=leaky_bucket; max_delay=500ms", id="leaky"),
        pytest.param("1/day; algorithm=fixed_window", id="fixed"),
    ],
)
def test_rule_text_parses_back(text: str) -> None:
    rule = parse_rate(text)
    assert parse_rate(rule_text(rule)) == rule


# -- env helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule", [pytest.param("100/minute", id="text"), pytest.param(Rule(100, 60.0, name="x"), id="rule")]
)
def test_default_policies_limit_every_request(rule: str | Rule) -> None:
    policies = default_policies(rule, key="header:X-Key")
    assert policies.routes == ()
    found = policies.match("POST", "/any/path")
    assert found is not None
    assert found.route.template == "<unmatched>"
    assert found.route.key_spec == "header:X-Key"
    assert (found.route.rules[0].limit, found.route.rules[0].period) == (100, 60.0)
    assert policies.source == "<default>"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({"DEFAULT_RATE_LIMIT": "100"}, (100, 60.0), id="limit-only"),
        pytest.param(
            {"DEFAULT_RATE_LIMIT": "5", "DEFAULT_WINDOW_SECONDS": "10"}, (5, 10.0), id="limit-window"
        ),
        pytest.param({"RATELIMIT_POLICIES": "FILE", "DEFAULT_RATE_LIMIT": "5"}, "file", id="file-wins"),
    ],
)
def test_policies_from_env(env: dict[str, str], expected: object, tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(MINIMAL)
    env = {k: (str(file) if v == "FILE" else v) for k, v in env.items()}
    policies = policies_from_env(env)
    if expected is None:
        assert policies is None
    elif expected == "file":
        assert policies is not None and policies.source == str(file)
    else:
        assert policies is not None and policies.unmatched is not None
        rule = policies.unmatched.rules[0]
        assert (rule.limit, rule.period) == expected
        assert policies.source == "<env>"
        assert policies.unmatched.key_spec == "ip"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        pytest.param({"DEFAULT_RATE_LIMIT": "ten"}, "DEFAULT_RATE_LIMIT", id="limit"),
        pytest.param({"DEFAULT_RATE_LIMIT": "10", "DEFAULT_WINDOW_SECONDS": "0"}, "DEFAULT_WINDOW_SECONDS",
                     id="window"),
    ],
)
def test_policies_from_env_errors(env: dict[str, str], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policies_from_env(env)
    assert (caught.value.file, caught.value.field) == ("<env>", field)


def test_policies_from_env_missing_file() -> None:
    with pytest.raises(PolicyError, match="file not found"):
        policies_from_env({"RATELIMIT_POLICIES": "/nonexistent/policies.yaml"})
