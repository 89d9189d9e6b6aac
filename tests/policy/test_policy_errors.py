"""Every invalid document fails with a PolicyError naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit_mw.errors import ConfigError, PolicyError
from ratelimit_mw.policy.loader import load_policies

CASES = [
    # -- document level -----------------------------------------------------------------
    pytest.param("routes: []\n", 1, "version", "missing required field 'version'", id="missing-version"),
    pytest.param("version: 2\n", 1, "version", "unsupported version 2", id="bad-version"),
    pytest.param("version: 1.0\n", 1, "version", "unsupported version 1.0", id="float-version"),
    pytest.param("version: 1\npolicies:\n", 2, "policies", "policies must be a mapping, got nothing", id="null"),
    pytest.param(
        "version: 1\nroute:\n  - match: /x\n", 2, "route", "did you mean 'routes'?", id="unknown-top-field"
    ),
    pytest.param("- version: 1\n", 1, None, "must be a mapping", id="document-not-mapping"),
    pytest.param("version: 1\nroutes: [\n", 3, None, "YAML syntax error", id="yaml-syntax"),
    pytest.param(
        "version: 1\nroutes: []\nroutes: []\n", 3, "routes", "duplicate key 'routes' (first at line 2)",
        id="duplicate-key",
    ),
    pytest.param("version: 1\nroutes: /x\n", 2, "routes", "routes must be a list", id="routes-not-list"),
    # -- defaults -------------------------------------------------------------------------
    pytest.param(
        "version: 1\ndefaults:\n  algoritm: gcra\n", 3, "defaults.algoritm", "did you mean 'algorithm'?",
        id="unknown-defaults-field",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  algorithm: gcr\n", 3, "defaults.algorithm",
        "invalid algorithm 'gcr'; did you mean 'gcra'?", id="unknown-algorithm",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  on_backend_error: open\n", 3, "defaults.on_backend_error",
        "invalid on_backend_error 'open'", id="bad-failure-mode",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  headers: [x-ratelimit, ietff]\n", 3, "defaults.headers[1]",
        "invalid header style 'ietff'; did you mean 'ietf'?", id="bad-header-style",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  headers: [none, ietf]\n", 3, "defaults.headers",
        "'none' cannot be combined", id="header-style-none-combined",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  key: headr:X-API-Key\n", 3, "defaults.key", "did you mean 'header'?",
        id="bad-key-kind",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  key:\n    - header:X-API-Key\n    - bogus\n", 5, "defaults.key[1]",
        "invalid key", id="bad-key-in-chain",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  key: [ip, header:X-API-Key]\n", 3, "defaults.key", "never used",
        id="unreachable-key-part",
    ),
    pytest.param(
        'version: 1\ndefaults:\n  shadow: "yes"\n', 3, "defaults.shadow", "must be true or false",
        id="shadow-not-bool",
    ),
    # -- top-level options ----------------------------------------------------------------
    pytest.param(
        "version: 1\ntrusted_proxies:\n  - 127.0.0.1/32\n  - 10.0.0.0/33\n", 4, "trusted_proxies[1]",
        "invalid IP network '10.0.0.0/33'", id="bad-cidr",
    ),
    pytest.param(
        "version: 1\nclient_ip:\n  forwarded_header: x-forwarded-fro\n", 3, "client_ip.forwarded_header",
        "did you mean 'x-forwarded-for'?", id="bad-forwarded-header",
    ),
    pytest.param(
        "version: 1\nclient_ip:\n  ipv6_prefix: 129\n", 3, "client_ip.ipv6_prefix", "between 0 and 128",
        id="bad-ipv6-prefix",
    ),
    pytest.param(
        "version: 1\nresponse:\n  status: 200\n", 3, "response.status", "between 400 and 599",
        id="bad-status",
    ),
    pytest.param(
        "version: 1\nresponse:\n  stauts: 429\n", 3, "response.stauts", "did you mean 'status'?",
        id="unknown-response-field",
    ),
    pytest.param(
        "version: 1\nheaders_options:\n  reset: epoc\n", 3, "headers_options.reset", "did you mean 'epoch'?",
        id="bad-reset-format",
    ),
    pytest.param(
        "version: 1\nheaders_options:\n  names:\n    X-RateLimit-Limt: X-Limit\n", 4,
        "headers_options.names.X-RateLimit-Limt", "did you mean 'X-RateLimit-Limit'?",
        id="bad-header-name-key",
    ),
    pytest.param(
        "version: 1\ncount_preflight: 1\n", 2, "count_preflight", "must be true or false", id="flag-not-bool"
    ),
    # -- policies ---------------------------------------------------------------------------
    pytest.param(
        "version: 1\npolicies:\n  free:\n    limit: [1/second]\n", 4, "policies.free.limit",
        "did you mean 'limits'?", id="unknown-policy-field",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free: {limits: [1/second]}\n  pro:\n    extends: fre\n", 5,
        "policies.pro.extends", "unknown policy 'fre'; did you mean 'free'?", id="unknown-parent",
    ),
    pytest.param(
        "version: 1\npolicies:\n  a: {extends: b, limits: [1/second]}\n"
        "  b: {extends: c}\n  c: {extends: a}\n",
        5, "policies.c.extends", "extends cycle: a -> b -> c -> a", id="extends-cycle",
    ),
    pytest.param(
        "version: 1\npolicies:\n  a:\n    extends: a\n", 4, "policies.a.extends", "extends cycle: a -> a",
        id="extends-self",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free:\n    limits: [10/second]\n    cost: 11\n", 5, "policies.free.cost",
        "exceeds the capacity 10", id="policy-cost-over-capacity",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free:\n    limits:\n      - 1/second\n      - 0/second\n", 6,
        "policies.free.limits[1]", "the limit must be at least 1", id="policy-zero-rate",
    ),
    # -- routes ---------------------------------------------------------------------------
    pytest.param(
        "version: 1\nroutes:\n  - /x\n", 3, "routes[0]", "a route must be a mapping", id="route-not-mapping"
    ),
    pytest.param(
        "version: 1\nroutes:\n  - limits: [1/second]\n", 3, "routes[0]", "a route needs 'match'",
        id="route-without-match",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limts: [1/second]\n", 4, "routes[0].limts",
        "unknown field 'limts' in a route; did you mean 'limits'?", id="unknown-route-field",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits:\n      - 1/second\n      - 0/second\n", 6,
        "routes[0].limits[1]", "the limit must be at least 1 (in route '/x' at line 3)", id="zero-rate",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [ten per minute]\n", 4, "routes[0].limits[0]",
        "invalid rate 'ten per minute'", id="unparsable-rate",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: ['10/second; algorithm=magic']\n", 4,
        "routes[0].limits[0]", "unknown algorithm 'magic'", id="unknown-algorithm-in-rate",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits:\n      - {limit: 5, perod: 60}\n", 5,
        "routes[0].limits[0].perod", "unknown rate field 'perod'; did you mean 'period'? (in route '/x' at line 3)",
        id="unknown-rate-mapping-field",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [{period: 60}]\n", 4, "routes[0].limits[0]",
        "needs 'limit'", id="rate-mapping-without-limit",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: []\n", 4, "routes[0].limits", "non-empty list",
        id="empty-limits",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [5]\n", 4, "routes[0].limits[0]",
        "a limit must be a rate string or a mapping", id="limit-wrong-type",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free: {limits: [1/second]}\nroutes:\n  - match: /x\n    policy: fre\n",
        6, "routes[0].policy", "unknown policy 'fre'; did you mean 'free'?", id="unknown-policy",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    policy: free\n", 4, "routes[0].policy",
        "no policies are defined", id="policy-without-policies",
    ),
    pytest.param(
        "version: 1\npolicies:\n  base: {key: ip}\nroutes:\n  - match: /x\n    policy: base\n", 6,
        "routes[0].policy", "policy 'base' has no limits", id="policy-without-limits",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free: {limits: [1/second]}\nroutes:\n  - match: /x\n    policy: free\n"
        "    limits: [2/second]\n",
        7, "routes[0].limits", "'policy' or 'limits', not both", id="policy-and-limits",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    cost: 2\n", 3, "routes[0]", "needs 'policy' or 'limits'",
        id="neither-policy-nor-limits",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    extra_limits: [1/second]\n", 4, "routes[0].extra_limits",
        "use 'limits' when there is no 'policy'", id="extra-limits-without-policy",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    exempt: true\n    limits: [1/second]\n", 5,
        "routes[0].limits", "has no effect on an exempt route", id="exempt-with-limits",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [5/minute]\n    cost: 0\n", 5, "routes[0].cost",
        "cost must be >= 1", id="cost-zero",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [5/minute, 100/day]\n    cost: 6\n", 5,
        "routes[0].cost", "cost 6 exceeds the capacity 5 of limit '5/minute'", id="cost-over-capacity",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  cost: 3\nroutes:\n  - match: /x\n    limits: [2/second]\n", 3,
        "defaults.cost",
        "exceeds the capacity 2 of limit '2/second', so no request could ever pass (in route '/x' at line 5)",
        id="inherited-cost-over-capacity",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    methods: [GET, PUTT]\n", 4, "routes[0].methods[1]",
        "unknown HTTP method 'PUTT'; did you mean 'PUT'? (in route routes[0] at line 3)", id="bad-method",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: GETT /x\n    limits: [1/second]\n", 3, "routes[0].match",
        "unknown HTTP method 'GETT'; did you mean 'GET'?", id="bad-method-in-match",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: GET /x\n    methods: [POST]\n", 4, "routes[0].methods",
        "given both in 'match' and in 'methods'", id="methods-twice",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: x\n    limits: [1/second]\n", 3, "routes[0].match",
        "invalid match 'x'", id="match-not-a-path",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: 're:^/a(['\n    limits: [1/second]\n", 3, "routes[0].match",
        "invalid regular expression", id="bad-regex",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /u/{id:integer}\n    limits: [1/second]\n", 3, "routes[0].match",
        "unknown parameter type 'integer' in '/u/{id:integer}'; did you mean 'int'?", id="bad-convertor",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /u/{id\n    limits: [1/second]\n", 3, "routes[0].match",
        "malformed parameter", id="unclosed-brace",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /u/{id}/{id}\n    limits: [1/second]\n", 3, "routes[0].match",
        "duplicate parameter 'id'", id="duplicate-param",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: GET /x\n    limits: [1/second]\n"
        "  - match: /y\n    limits: [1/second]\n  - match: GET /x\n    limits: [2/second]\n",
        7, "routes[2].match", "unreachable route: routes[0] ('GET /x', line 3)", id="duplicate-route",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n  - match: POST /x\n"
        "    limits: [1/second]\n",
        5, "routes[1].match", "unreachable route: routes[0] ('/x', line 3)", id="route-covered-by-any-method",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: GET /x\n    limits: [1/second]\n  - match: HEAD /x\n"
        "    limits: [1/second]\n",
        5, "routes[1].match", "GET also covers HEAD", id="head-covered-by-get",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits:\n"
        "      - 1/second; name=a\n      - 2/second; name=a\n",
        6, "routes[0].limits[1]", "duplicate limit name 'a'", id="duplicate-limit-name",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits:\n      - 1/second\n      - 1 per second\n", 6,
        "routes[0].limits[1]", "duplicate limit '1/second': same as routes[0].limits[0]",
        id="duplicate-limit",
    ),
    pytest.param(
        "version: 1\npolicies:\n  free:\n    limits: ['10/second; burst=40']\nroutes:\n  - match: GET /x\n"
        "    policy: free\n    algorithm: fixed_window\n",
        4, "policies.free.limits[0]", "burst applies to bucket algorithms only, not fixed_window "
        "(in route 'GET /x' at line 6)", id="policy-limit-invalid-for-route-algorithm",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    scope: ''\n    limits: [1/second]\n", 4, "routes[0].scope",
        "must be a non-empty string", id="empty-scope",
    ),
    # -- unmatched ---------------------------------------------------------------------------
    pytest.param(
        "version: 1\nunmatched: passs\n", 2, "unmatched", "did you mean 'pass'?", id="unmatched-typo"
    ),
    pytest.param(
        "version: 1\nunmatched:\n  limits: [1/second]\n  match: /x\n", 4, "unmatched.match",
        "unknown field 'match' in unmatched", id="unmatched-with-match",
    ),
    pytest.param(
        "version: 1\nunmatched:\n  key: ip\n", 2, "unmatched", "unmatched needs 'policy' or 'limits'",
        id="unmatched-without-limits",
    ),
    # -- interpolation ---------------------------------------------------------------------
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n    key: header:${MISSING_HEADER}\n", 5,
        "routes[0].key", "environment variable MISSING_HEADER is not set", id="missing-env-var",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits:\n      - ${RATE}\n", 5, "routes[0].limits[0]",
        "environment variable RATE is not set (use ${RATE:-default} to give a default) "
        "(in route routes[0] at line 3)", id="missing-env-var-deep",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: ['${RATE']\n", 4, "routes[0].limits[0]",
        "unclosed '${'", id="unclosed-reference",
    ),
    pytest.param(
        "version: 1\nroutes:\n  - match: /x\n    limits: ['${1RATE}']\n", 4, "routes[0].limits[0]",
        "invalid variable reference", id="bad-variable-name",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), CASES)
def test_error_names_file_line_and_field(text: str, line: int, field: str | None, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policies(text, env={})
    error = caught.value
    assert (error.file, error.line, error.field) == ("<string>", line, field), str(error)
    assert message in error.reason, str(error)
    assert str(error).startswith(f"<string>:{line}: ")


def test_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("version: 1\nroutes:\n  - match: /x\n    limits: [0/second]\n")
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(path), 4, "routes[0].limits[0]")
    assert str(caught.value).startswith(f"{path}:4: routes[0].limits[0]: ")


def test_json_file_errors_have_lines(tmp_path: Path) -> None:
    path = tmp_path / "policies.json"
    doc = {"version": 1, "routes": [{"match": "/x", "limits": ["1/second"]}, {"match": "/y", "limts": []}]}
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(PolicyError) as caught:
        load_policies(str(path))
    assert caught.value.field == "routes[1].limts"
    assert caught.value.line == 12
    assert "did you mean 'limits'?" in caught.value.reason


def test_mapping_errors_have_a_field_but_no_line() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policies({"version": 1, "routes": [{"match": "/x", "limits": ["ten per minute"]}]})
    error = caught.value
    assert (error.file, error.line, error.field) == ("<mapping>", None, "routes[0].limits[0]")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("missing-policies.yaml", id="str"),
        pytest.param(Path("missing-policies.yaml"), id="pathlike"),
    ],
)
def test_missing_file(source: str | Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policies(source)
    assert caught.value.reason == "file not found"
    assert caught.value.file == "missing-policies.yaml"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("", "the document is empty", id="empty-string"),
        pytest.param("\n", "the document is empty", id="blank-text"),
        pytest.param(42, "cannot load policies from int", id="wrong-type"),
    ],
)
def test_other_bad_sources(source: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies(source)


def test_policy_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_policies("version: 3\n")


def test_recursive_alias_is_an_error() -> None:
    with pytest.raises(PolicyError, match="recursive alias"):
        load_policies("version: 1\nroutes: &r\n  - *r\n")


def test_unexpected_failures_are_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    import ratelimit_mw.policy.loader as loader

    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(loader, "compile_template", boom)
    with pytest.raises(PolicyError, match=r"unexpected error.*RuntimeError: bug") as caught:
        load_policies("version: 1\nroutes:\n  - match: /x\n    limits: [1/second]\n")
    assert isinstance(caught.value.__cause__, RuntimeError)
