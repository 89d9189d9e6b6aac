"""Outbound rules: both written forms, the policy file's ``outbound:`` section, and matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit_mw.errors import ConfigError, PolicyError
from ratelimit_mw.policy.loader import load_policies
from ratelimit_mw.policy.outbound import OutboundIndex, outbound_rules

RULES = {
    "api.openai.com/v1/images/**": "50/minute",
    "api.openai.com": "3000/minute",
    "twilio": {"limit": 100, "window": 1, "host": "api.twilio.com"},  # the seeds' mapping form
    "https://pay.example.com:8443/charges/{id}": {"limits": ["5/second", "100/hour"], "methods": ["POST"]},
    "*.cdn.example.com": "1000/second",
    "github": {"limits": "5000/hour", "host": "api.github.com", "port": 443, "scheme": "https"},
    "openai": {"limit": 3000, "window": 60},  # name only: for the decorator
    "http://[::1]:8080": "10/second",
}

MATCHES = [
    pytest.param("GET", "https", "api.openai.com", None, "/v1/chat/completions", "api.openai.com", id="host-rule"),
    pytest.param("GET", "https", "api.openai.com", None, "/v1/images/generate", "api.openai.com/v1/images/**",
                 id="first-match-wins-path-rule-first"),
    pytest.param("GET", "http", "api.openai.com", 8080, "/x", "api.openai.com", id="any-port-when-none-named"),
    pytest.param("GET", "https", "api.twilio.com", None, "/2010-04-01/Messages", "twilio", id="seed-form-host"),
    pytest.param("POST", "https", "pay.example.com", 8443, "/charges/42", "https://pay.example.com:8443/charges/{id}",
                 id="scheme-port-path-method"),
    pytest.param("GET", "https", "pay.example.com", 8443, "/charges/42", None, id="method-not-listed"),
    pytest.param("POST", "https", "pay.example.com", 443, "/charges/42", None, id="other-port"),
    pytest.param("POST", "http", "pay.example.com", 8443, "/charges/42", None, id="other-scheme"),
    pytest.param("POST", "https", "pay.example.com", 8443, "/charges/42/refund", None, id="path-param-one-segment"),
    pytest.param("GET", "https", "img.cdn.example.com", None, "/a.png", "*.cdn.example.com", id="wildcard-host"),
    pytest.param("GET", "https", "cdn.example.com", None, "/a.png", None, id="wildcard-needs-subdomain"),
    pytest.param("GET", "https", "api.github.com", None, "/user", "github", id="default-port-443-named"),
    pytest.param("GET", "http", "api.github.com", None, "/user", None, id="default-port-80-differs"),
    pytest.param("GET", "https", "example.org", None, "/", None, id="no-rule"),
    pytest.param("GET", "http", "::1", 8080, "/x", "http://[::1]:8080", id="ipv6-as-httpx-gives-it"),
]


@pytest.mark.parametrize(("method", "scheme", "host", "port", "path", "expected"), MATCHES)
def test_matching(method: str, scheme: str, host: str, port: int | None, path: str, expected: str | None) -> None:
    index = OutboundIndex(outbound_rules(RULES))
    found = index.match(method, scheme, host, port, path)
    assert (found.name if found else None) == expected


def test_rule_forms_build_the_same_limits() -> None:
    rules = {r.name: r for r in outbound_rules(RULES)}
    assert str(rules["twilio"].rules[0]) == "100/second" and rules["twilio"].host == "api.twilio.com"
    assert rules["openai"].host is None and str(rules["openai"].rules[0]) == "3000/minute"
    pay = rules["https://pay.example.com:8443/charges/{id}"]
    assert (pay.scheme, pay.host, pay.port, pay.path.text) == ("https", "pay.example.com", 8443, "/charges/{id}")
    assert [str(r) for r in pay.rules] == ["5/second", "100/hour"]
    assert pay.target == "https://pay.example.com:8443/charges/{id}"
    assert rules["http://[::1]:8080"].target == "http://[::1]:8080"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"api.x.com": "ten/minute"}, "outbound rule 'api.x.com': invalid rate", id="bad-rate"),
        pytest.param({"x": {"limit": 5, "windw": 60}}, "did you mean 'window'?", id="unknown-field"),
        pytest.param({"x": {"host": "a.com"}}, "needs a limit", id="no-limit"),
        pytest.param({"ftp://a.com": "1/second"}, "unsupported scheme 'ftp'", id="bad-scheme"),
        pytest.param({"a.com:99999": "1/second"}, "invalid port", id="bad-port"),
        pytest.param({"a.com/{id:nope}": "1/second"}, "unknown parameter type 'nope'", id="bad-path"),
        pytest.param({"x": {"limit": 5, "on_backend_error": "open"}}, "on_backend_error", id="bad-mode"),
        pytest.param({"x": {"limits": "5/second", "cost": 9}}, "exceeds the capacity", id="cost-over-capacity"),
        pytest.param({"x": {"limit": 5, "path": "/v1/**"}}, "need a host", id="path-without-host"),
    ],
)
def test_bad_rules_from_code_raise_config_error(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        outbound_rules(spec)
    assert message in str(info.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="named 'x'"):
        OutboundIndex(outbound_rules({"x": "1/second"}) + outbound_rules({"x": "2/second"}))


POLICY = """\
version: 1
defaults:
  on_backend_error: deny
routes:
  - match: /health
    exempt: true
outbound:
  api.openai.com: 3000/minute
  twilio:
    limit: 100
    window: 1
    host: api.twilio.com
    on_backend_error: memory
"""


def test_the_outbound_section_loads_with_lines_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICY)
    policies = load_policies(str(path))
    openai, twilio = policies.outbound
    assert (openai.name, openai.host, openai.line) == ("api.openai.com", "api.openai.com", 8)
    assert openai.on_backend_error == "deny"  # from defaults
    assert (twilio.name, twilio.host, twilio.line, twilio.on_backend_error) == ("twilio", "api.twilio.com", 9, "memory")
    assert str(twilio.rules[0]) == "100/second"
    assert load_policies("version: 1\n").outbound == ()


BAD_DOCUMENTS = [
    pytest.param("outbound:\n  api.x.com: ten per minute\n", 3, "outbound['api.x.com']", "invalid rate",
                 id="unparsable-rate"),
    pytest.param("outbound:\n  openai:\n    limit: 3000\n    window: sixty\n", 5, "outbound.openai.window",
                 "invalid period 'sixty'", id="unparsable-window"),
    pytest.param("outbound:\n  openai:\n    limit: 30\n    windoww: 60\n", 5, "outbound.openai.windoww",
                 "did you mean 'window'?", id="unknown-field"),
    pytest.param("outbound:\n  openai:\n    limits: [5/second]\n    host: 'ex ample.com'\n", 5,
                 "outbound.openai.host", "invalid host", id="bad-host"),
    pytest.param("outbound:\n  openai:\n    limits: [5/second, 5/sec]\n", 4, "outbound.openai.limits[1]",
                 "duplicate limit", id="duplicate-limit"),
    pytest.param("outbound:\n  - api.x.com: 5/second\n", 2, "outbound", "outbound must be a mapping",
                 id="not-a-mapping"),
]


@pytest.mark.parametrize(("body", "line", "field", "message"), BAD_DOCUMENTS)
def test_an_unparsable_outbound_rule_is_a_policy_error_with_file_line_field(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\n" + body)
    with pytest.raises(PolicyError) as info:
        load_policies(str(path))
    error = info.value
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert message in error.reason
    assert str(error).startswith(f"{path}:{line}: {field}: ")


def test_the_example_in_policies_example_yaml_loads() -> None:
    from tests.support.http_servers import ROOT

    policies = load_policies(str(ROOT / "policies.example.yaml"), env={})
    assert [r.name for r in policies.outbound] == ["api.openai.com/v1/images/**", "api.openai.com", "twilio"]
    assert policies.outbound[2].on_backend_error == "memory"
