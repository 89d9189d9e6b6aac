"""Client keys: spec kinds, chains, and the security-sensitive client address walk."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.core.clientip import ClientIP
from ratelimit_mw.core.keyspec import KEY_KINDS, compile_key
from ratelimit_mw.errors import ConfigError
from ratelimit_mw.testing import FakeRequest
from ratelimit_mw.types import RequestView

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


# -- callables the ``call:`` specs import (this very module, under whatever name pytest gave it) --


def tenant_of(request: RequestView) -> str | None:
    """Tenant from a header; absent when the header is missing."""
    return request.header("x-tenant")


def numeric_user(request: RequestView) -> int | None:
    """Returns a non-str (an int user id): the key must still be a str."""
    value = request.header("x-user-id")
    return int(value) if value else None


class Resolvers:
    @staticmethod
    def path_tenant(request: RequestView) -> str | None:
        return request.path.split("/")[1] or None


NOT_CALLABLE = "just a string"
HERE = __name__


def req(
    headers: Headers = (),
    *,
    peer: str | None = "203.0.113.5",
    query: str = "",
    path: str = "/",
) -> FakeRequest:
    return FakeRequest(path=path, headers=headers, peer=peer, query_string=query)


# -- spec kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "request_", "expected"),
    [
        pytest.param("ip", req(), "ip:203.0.113.5", id="ip"),
        pytest.param("IP", req(), "ip:203.0.113.5", id="kind-case-insensitive"),
        pytest.param(" ip ", req(), "ip:203.0.113.5", id="spec-whitespace"),
        pytest.param("ip", req(peer=None), "ip:unknown", id="ip-no-peer"),
        pytest.param("ip", req(peer="testclient"), "ip:peer:testclient", id="ip-opaque-peer"),
        pytest.param("global", req(), "global", id="global"),
        pytest.param("global", req(peer=None), "global", id="global-no-peer"),
        pytest.param(
            "header:X-API-Key", req({"X-API-Key": "SECRET"}), "header:x-api-key:SECRET", id="header"
        ),
        pytest.param(
            "header:x-api-key", req({"X-Api-KEY": "SECRET"}), "header:x-api-key:SECRET", id="header-name-case"
        ),
        pytest.param(
            "header: X-API-Key ", req({"x-api-key": " S "}), "header:x-api-key:S", id="header-strip"
        ),
        pytest.param("header:X-API-Key", req(), "anonymous", id="header-missing"),
        pytest.param("header:X-API-Key", req({"x-api-key": ""}), "anonymous", id="header-empty"),
        pytest.param("header:X-API-Key", req({"x-api-key": " \t "}), "anonymous", id="header-blank"),
        pytest.param("query:api_key", req(query="api_key=Q1&x=2"), "query:api_key:Q1", id="query"),
        pytest.param("query:api_key", req(query="api_key="), "anonymous", id="query-empty"),
        pytest.param("query:api_key", req(query="other=1"), "anonymous", id="query-missing"),
        pytest.param("cookie:session", req({"cookie": "a=1; session=C1"}), "cookie:session:C1", id="cookie"),
        pytest.param("cookie:session", req({"cookie": "a=1"}), "anonymous", id="cookie-missing"),
        pytest.param("cookie:session", req(), "anonymous", id="cookie-no-header"),
        pytest.param(
            f"call:{HERE}:tenant_of", req({"x-tenant": "acme"}), f"call:{HERE}:tenant_of:acme", id="call"
        ),
        pytest.param(f"call:{HERE}:tenant_of", req(), "anonymous", id="call-returns-none"),
        pytest.param(f"call:{HERE}:tenant_of", req({"x-tenant": ""}), "anonymous", id="call-returns-empty"),
        pytest.param(
            f"call:{HERE}.tenant_of",
            req({"x-tenant": "acme"}),
            f"call:{HERE}:tenant_of:acme",
            id="call-dotted",
        ),
        pytest.param(
            f"call:{HERE}:Resolvers.path_tenant",
            req(path="/acme/items"),
            f"call:{HERE}:Resolvers.path_tenant:acme",
            id="call-nested-attribute",
        ),
        pytest.param(
            f"call:{HERE}:numeric_user",
            req({"x-user-id": "42"}),
            f"call:{HERE}:numeric_user:42",
            id="call-non-str",
        ),
    ],
)
def test_spec_kinds(spec: str, request_: FakeRequest, expected: str) -> None:
    assert compile_key(spec)(request_) == expected


def test_key_kinds_constant() -> None:
    assert KEY_KINDS == ("ip", "global", "header", "query", "cookie", "call", "user")


def test_direct_callables() -> None:
    assert compile_key(tenant_of)(req({"x-tenant": "t1"})) == f"call:{HERE}:tenant_of:t1"
    assert compile_key(tenant_of)(req()) == "anonymous"
    by_lambda = compile_key(lambda r: r.path)
    assert by_lambda(req(path="/x")).startswith(f"call:{HERE}:")
    assert by_lambda(req(path="/x")).endswith(":/x")
    # A direct callable and its `call:` spelling share buckets.
    assert compile_key(tenant_of)(req({"x-tenant": "t1"})) == compile_key(f"call:{HERE}:tenant_of")(
        req({"x-tenant": "t1"})
    )


def _broken(request: RequestView) -> str | None:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param([_broken, "ip"], "ip:203.0.113.5", id="next-part-decides"),
        pytest.param([_broken, "header:X-API-Key"], "unidentified", id="next-part-absent"),
        pytest.param([_broken], "unidentified", id="alone"),
        pytest.param(["header:X-API-Key", _broken, "ip"], "header:x-api-key:k", id="earlier-part-present"),
    ],
)
def test_a_raising_key_function_is_reported_once_and_still_limits(spec: list[Any], expected: str) -> None:
    """A broken key function is the app's bug: the request falls to the next part of the
    chain or to the shared 'unidentified' bucket, never to no limit; each failure is
    reported once."""
    from ratelimit_mw.core.keys import VIEW_ACCESS

    errors: list[tuple[str, str]] = []
    key = compile_key(spec).bind(VIEW_ACCESS, lambda label, exc: errors.append((label, str(exc))))
    headers = {"x-api-key": "k"} if spec[0] == "header:X-API-Key" else {}
    assert key(req(headers)) == expected
    assert errors == ([] if expected.startswith("header:") else [(f"{HERE}:_broken", "boom")])


def test_client_ip_instance_as_part() -> None:
    resolver = ClientIP(["10.0.0.0/8"])
    request = req({"x-forwarded-for": "198.51.100.9"}, peer="10.0.0.1")
    assert compile_key(["header:X-API-Key", resolver])(request) == "ip:198.51.100.9"
    assert compile_key("ip", client_ip=resolver)(request) == "ip:198.51.100.9"
    assert compile_key("ip")(request) == "ip:10.0.0.1"  # default: nothing trusted


# -- chains -------------------------------------------------------------------------------

CHAIN = ["header:X-API-Key", "query:api_key", "cookie:session", "ip"]


@pytest.mark.parametrize(
    ("spec", "request_", "expected"),
    [
        pytest.param(
            CHAIN,
            req({"x-api-key": "K", "cookie": "session=C"}, query="api_key=Q"),
            "header:x-api-key:K",
            id="first-wins",
        ),
        pytest.param(
            CHAIN, req({"x-api-key": "  "}, query="api_key=Q"), "query:api_key:Q", id="blank-header-skipped"
        ),
        pytest.param(
            CHAIN, req({"cookie": "session=C"}, query="api_key="), "cookie:session:C", id="to-cookie"
        ),
        pytest.param(CHAIN, req(), "ip:203.0.113.5", id="to-ip"),
        pytest.param(CHAIN, req(peer=None), "ip:unknown", id="ip-always-present"),
        pytest.param(tuple(CHAIN), req(), "ip:203.0.113.5", id="tuple-chain"),
        pytest.param(["header:X-API-Key", "query:api_key"], req(), "anonymous", id="all-absent-anonymous"),
        pytest.param(["header:X-API-Key", "global"], req(), "global", id="global-fallback"),
        pytest.param(
            [f"call:{HERE}:tenant_of", "header:X-API-Key"],
            req({"x-api-key": "K"}),
            "header:x-api-key:K",
            id="call-absent",
        ),
        pytest.param(
            [lambda r: "", lambda r: None, "query:k"], req(query="k=v"), "query:k:v", id="callables-absent"
        ),
        pytest.param([lambda r: "  ", "query:k"], req(query="k=v"), "query:k:v", id="callable-blank-absent"),
        pytest.param(
            ["header:X-API-Key"], req({"x-api-key": "K"}), "header:x-api-key:K", id="one-element-chain"
        ),
    ],
)
def test_chains(spec: Any, request_: FakeRequest, expected: str) -> None:
    assert compile_key(spec)(request_) == expected


def test_kind_prefixes_never_collide() -> None:
    """The same raw value from different sources lands in different buckets."""
    value = "203.0.113.5"
    request = req(
        {"x-a": value, "x-b": value, "cookie": f"a={value}", "x-tenant": value},
        peer=value,
        query=f"a={value}",
    )
    specs: list[Any] = [
        "ip",
        "header:x-a",
        "header:x-b",
        "query:a",
        "cookie:a",
        f"call:{HERE}:tenant_of",
        lambda r: value,
    ]
    keys = [compile_key(spec)(request) for spec in specs]
    assert len(set(keys)) == len(keys), keys
    assert all(value in key for key in keys)
    # Nothing a client sends can spell the fixed keys of another kind.
    assert compile_key("header:x")(req({"x": "anonymous"})) != "anonymous"
    assert compile_key("header:x")(req({"x": "global"})) != "global"


def test_long_values_are_bounded_and_distinct() -> None:
    spec = compile_key("header:X-API-Key")
    common = "k" * 1024
    one = spec(req({"x-api-key": common + "A" * 5000}))
    two = spec(req({"x-api-key": common + "B" * 5000}))
    short = spec(req({"x-api-key": common}))
    assert one != two
    assert short == "header:x-api-key:" + common
    assert len(one) < len("header:x-api-key:") + 1024 + 64
    assert one.startswith("header:x-api-key:" + common + "#")
    assert len(one) > len(short)  # a capped value can never equal an uncapped one
    assert spec(req({"x-api-key": common + "A" * 5000})) == one  # stable


# -- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("hedaer:X-API-Key", "did you mean 'header'", id="unknown-kind-suggestion"),
        pytest.param("cokie:session", "did you mean 'cookie'", id="unknown-kind-cookie"),
        pytest.param("frobnicate", "expected one of: ip, global", id="unknown-kind"),
        pytest.param("", "unknown key kind ''", id="empty-spec"),
        pytest.param("ip:1.2.3.4", "takes no argument", id="ip-argument"),
        pytest.param("global:x", "takes no argument", id="global-argument"),
        pytest.param("header:", "needs a name", id="header-empty-name"),
        pytest.param("header:  ", "needs a name", id="header-blank-name"),
        pytest.param("query:", "needs a name", id="query-empty-name"),
        pytest.param("cookie:", "needs a name", id="cookie-empty-name"),
        pytest.param("call:", "needs a name", id="call-empty"),
        pytest.param("header:X API Key", "not a valid header name", id="header-bad-name"),
        pytest.param("header:X-API-Key,ip", "not a valid header name", id="comma-list-as-string"),
        pytest.param("cookie:a;b", "not a valid cookie name", id="cookie-bad-name"),
        pytest.param("call:nodots", "expected 'call:package.module:function'", id="call-no-module"),
        pytest.param("call:no_such_module_for_keys_test:f", "cannot import module", id="call-import-error"),
        pytest.param("call:math:no_such_function", "has no attribute", id="call-missing-attribute"),
        pytest.param("call:math:pi", "is not callable", id="call-not-callable"),
        pytest.param(f"call:{HERE}:NOT_CALLABLE", "is not callable", id="call-not-callable-local"),
        pytest.param([], "key chain is empty", id="empty-chain"),
        pytest.param([["ip"]], "cannot be nested", id="nested-chain"),
        pytest.param(["ip", "header:X-API-Key"], "never used", id="unreachable-after-ip"),
        pytest.param(["global", "ip"], "never used", id="unreachable-after-global"),
        pytest.param(["header:X", "hedaer:Y"], "did you mean 'header'", id="bad-part-in-chain"),
        pytest.param(42, "must be a spec string", id="not-a-spec"),
        pytest.param(None, "must be a spec string", id="none-spec"),
        pytest.param(["ip", 3], "must be a spec string", id="bad-chain-part"),
    ],
)
def test_bad_specs(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        compile_key(spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"trusted_proxies": ["10.0.0.0/33"]}, r"trusted_proxies\[0\]: '10.0.0.0/33'", id="bad-prefix"
        ),
        pytest.param(
            {"trusted_proxies": ["10.0.0.0/8", "proxy.internal"]},
            r"trusted_proxies\[1\]: 'proxy.internal' is not an IP address or network",
            id="hostname",
        ),
        pytest.param({"trusted_proxies": ["300.1.2.3"]}, r"trusted_proxies\[0\]", id="bad-octet"),
        pytest.param({"trusted_proxies": [""]}, r"trusted_proxies\[0\]", id="empty-entry"),
        pytest.param({"trusted_proxies": ["*"]}, "not supported", id="wildcard"),
        pytest.param({"trusted_proxies": [167772160]}, "expected an IP address or network", id="int-entry"),
        pytest.param({"ipv6_prefix": 129}, "ipv6_prefix must be an integer from 0 to 128", id="prefix-high"),
        pytest.param({"ipv6_prefix": -1}, "ipv6_prefix", id="prefix-negative"),
        pytest.param({"ipv6_prefix": True}, "ipv6_prefix", id="prefix-bool"),
        pytest.param({"ipv6_prefix": "64"}, "ipv6_prefix", id="prefix-str"),
        pytest.param(
            {"forwarded_header": "x-forwarded-fro"}, "did you mean 'x-forwarded-for'", id="header-typo"
        ),
        pytest.param(
            {"forwarded_header": "x-my-ip"}, "unknown forwarded_header 'x-my-ip'", id="header-unknown"
        ),
        pytest.param({"max_hops": 0}, "max_hops must be a positive integer", id="max-hops-zero"),
    ],
)
def test_bad_client_ip_config(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClientIP(**kwargs)


def test_config_accepts_common_forms() -> None:
    resolver = ClientIP("10.0.0.0/8, 127.0.0.1  fd00::/8", forwarded_header=" X-Forwarded-For ")
    assert [str(n) for n in resolver.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
    assert resolver.forwarded_header == "x-forwarded-for"
    assert "10.0.0.0/8" in repr(resolver)
    assert [str(n) for n in ClientIP(["10.1.2.3/8"]).trusted_proxies] == ["10.0.0.0/8"]  # host bits dropped
    assert [str(n) for n in ClientIP(["::ffff:10.0.0.0/104"]).trusted_proxies] == ["10.0.0.0/8"]


# -- client address -----------------------------------------------------------------------

TRUSTED = ["10.0.0.0/8"]
MIXED = ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "2001:db8:ffff::/48"]
XFF = "x-forwarded-for"


@pytest.mark.parametrize(
    ("trusted", "peer", "headers", "expected"),
    [
        # Nothing trusted, or an untrusted peer: the header is a client's say-so.
        pytest.param([], "203.0.113.5", {XFF: "198.51.100.1"}, "203.0.113.5", id="default-trusts-nobody"),
        pytest.param(TRUSTED, "203.0.113.5", {XFF: "10.0.0.1"}, "203.0.113.5", id="spoof-from-untrusted"),
        pytest.param(
            TRUSTED, "203.0.113.5", {XFF: "198.51.100.1, 10.0.0.2"}, "203.0.113.5", id="spoof-chain"
        ),
        # Trusted peer: walk from the right.
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "198.51.100.1"}, "198.51.100.1", id="one-hop"),
        pytest.param(
            TRUSTED,
            "10.0.0.1",
            {XFF: "192.0.2.66, 198.51.100.1, 10.0.0.3, 10.0.0.2"},
            "198.51.100.1",
            id="skip-trusted-hops",
        ),
        pytest.param(
            TRUSTED,
            "10.0.0.1",
            [(XFF, "192.0.2.66, 198.51.100.1"), (XFF, "10.0.0.3"), (XFF, "10.0.0.2")],
            "198.51.100.1",
            id="several-lines",
        ),
        pytest.param(
            TRUSTED,
            "10.0.0.1",
            [(XFF, "198.51.100.1"), (XFF, "192.0.2.66")],
            "192.0.2.66",
            id="lines-in-order",
        ),
        pytest.param(
            TRUSTED,
            "10.0.0.1",
            [(XFF, "198.51.100.1"), (XFF, ""), (XFF, "  ")],
            "198.51.100.1",
            id="blank-lines",
        ),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "10.1.2.3, 10.0.0.2"}, "10.1.2.3", id="all-trusted-leftmost"),
        pytest.param(TRUSTED, "10.0.0.1", {}, "10.0.0.1", id="no-header"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: ""}, "10.0.0.1", id="empty-header"),
        # Unparsable entries stop the walk at the nearest trusted hop.
        pytest.param(
            TRUSTED, "10.0.0.1", {XFF: "198.51.100.1, garbage, 10.0.0.2"}, "10.0.0.2", id="garbage-stops"
        ),
        pytest.param(
            TRUSTED, "10.0.0.1", {XFF: "198.51.100.1, garbage"}, "10.0.0.1", id="garbage-next-to-peer"
        ),
        pytest.param(
            TRUSTED, "10.0.0.1", {XFF: "198.51.100.1,,10.0.0.2"}, "10.0.0.2", id="empty-entry-stops"
        ),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "198.51.100.1,"}, "10.0.0.1", id="trailing-comma"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "unknown"}, "10.0.0.1", id="unknown-token"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "198.51.100.1, 1.2.3"}, "10.0.0.1", id="short-ipv4"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "010.0.0.2"}, "10.0.0.1", id="leading-zero-ambiguous"),
        pytest.param(
            TRUSTED,
            "10.0.0.1",
            {XFF: "198.51.100.1, \uff12\uff10\uff13.\uff10.\uff11\uff11\uff13.\uff15"},
            "10.0.0.1",
            id="fullwidth-digits",
        ),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "198.51.100.1, ünïcødé☃"}, "10.0.0.1", id="non-ascii"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "\x00\udcff, \r\n"}, "10.0.0.1", id="control-and-surrogates"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: '"198.51.100.1"'}, "10.0.0.1", id="quoted-xff-entry"),
        # Entry forms.
        pytest.param(TRUSTED, "10.0.0.1", {XFF: " 198.51.100.1:4711 "}, "198.51.100.1", id="ipv4-port"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "198.51.100.1:http"}, "10.0.0.1", id="ipv4-bad-port"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64", id="ipv6-bare"),
        pytest.param(
            TRUSTED, "10.0.0.1", {XFF: "[2001:db8::1]:4711"}, "2001:db8::/64", id="ipv6-bracket-port"
        ),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "[2001:db8::1"}, "10.0.0.1", id="ipv6-unclosed-bracket"),
        pytest.param(TRUSTED, "10.0.0.1", {XFF: "::ffff:198.51.100.1"}, "198.51.100.1", id="mapped-entry"),
        pytest.param(
            TRUSTED, "10.0.0.1", {XFF: "198.51.100.1, ::ffff:10.0.0.2"}, "198.51.100.1", id="mapped-proxy"
        ),
        # Mixed IPv4 + IPv6 trusted networks.
        pytest.param(
            MIXED,
            "fd00::1",
            {XFF: "203.0.113.9, 192.168.1.1, 2001:db8:ffff::9, 10.2.3.4"},
            "203.0.113.9",
            id="mixed-networks",
        ),
        pytest.param(
            MIXED,
            "fd00::1",
            {XFF: "2001:db8:fffe::9, 2001:db8:ffff::9"},
            "2001:db8:fffe::/64",
            id="mixed-v6-client",
        ),
        pytest.param(MIXED, "192.168.3.3", {XFF: "172.16.0.1"}, "172.16.0.1", id="second-v4-network"),
        pytest.param(MIXED, "172.16.0.1", {XFF: "198.51.100.1"}, "172.16.0.1", id="outside-all-networks"),
        pytest.param(
            ["::ffff:10.0.0.0/104"], "10.0.0.1", {XFF: "198.51.100.1"}, "198.51.100.1", id="mapped-network"
        ),
        pytest.param(
            TRUSTED, "::ffff:10.0.0.1", {XFF: "198.51.100.1"}, "198.51.100.1", id="mapped-peer-trusted"
        ),
        pytest.param(["127.0.0.1"], "127.0.0.1", {XFF: "198.51.100.1"}, "198.51.100.1", id="bare-address"),
        pytest.param(["127.0.0.1"], "127.0.0.2", {XFF: "198.51.100.1"}, "127.0.0.2", id="bare-address-exact"),
        # Peers.
        pytest.param(TRUSTED, None, {XFF: "198.51.100.1"}, "unknown", id="no-peer"),
        pytest.param(TRUSTED, "", {XFF: "198.51.100.1"}, "unknown", id="empty-peer"),
        pytest.param(TRUSTED, "testclient", {XFF: "198.51.100.1"}, "peer:testclient", id="opaque-peer"),
        pytest.param([], "/run/app.sock", {}, "peer:/run/app.sock", id="unix-socket-peer"),
        pytest.param([], "203.0.113.5:5555", {}, "203.0.113.5", id="peer-with-port"),
        pytest.param([], "fe80::1%eth0", {}, "fe80::/64", id="zone-id"),
        pytest.param(
            ["fe80::/10"], "fe80::1%eth0", {XFF: "198.51.100.1"}, "198.51.100.1", id="zone-id-trusted"
        ),
        pytest.param([], "::ffff:1.2.3.4", {}, "1.2.3.4", id="mapped-peer"),
    ],
)
def test_client_ip(trusted: list[str], peer: str | None, headers: Headers, expected: str) -> None:
    assert ClientIP(trusted)(req(headers, peer=peer)) == expected


@pytest.mark.parametrize(
    ("prefix", "address", "expected"),
    [
        pytest.param(64, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64", id="default-64"),
        pytest.param(
            128, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2:aaaa:bbbb:cccc:dddd/128", id="128"
        ),
        pytest.param(48, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1::/48", id="48"),
        pytest.param(56, "2001:db8:1:2ff::1", "2001:db8:1:200::/56", id="56"),
        pytest.param(0, "2001:db8::1", "::/0", id="0"),
        pytest.param(48, "203.0.113.5", "203.0.113.5", id="ipv4-unaffected"),
        pytest.param(48, "::ffff:203.0.113.5", "203.0.113.5", id="mapped-unaffected"),
    ],
)
def test_ipv6_prefix(prefix: int, address: str, expected: str) -> None:
    assert ClientIP(ipv6_prefix=prefix)(req(peer=address)) == expected
    # The same grouping applies to addresses read from a trusted header.
    resolver = ClientIP(TRUSTED, ipv6_prefix=prefix)
    assert resolver(req({XFF: address}, peer="10.0.0.1")) == expected


def test_same_ipv6_64_shares_a_bucket() -> None:
    key = compile_key("ip")
    assert key(req(peer="2001:db8:1:2::1")) == key(req(peer="2001:db8:1:2:ffff::9")) == "ip:2001:db8:1:2::/64"
    assert key(req(peer="2001:db8:1:3::1")) != key(req(peer="2001:db8:1:2::1"))


FWD = "forwarded"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({FWD: "for=198.51.100.1"}, "198.51.100.1", id="plain"),
        pytest.param({FWD: 'for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::/64", id="quoted-ipv6-port"),
        pytest.param({FWD: 'for="[2001:db8:cafe::17]"'}, "2001:db8:cafe::/64", id="quoted-ipv6"),
        pytest.param({FWD: 'for="198.51.100.1:8080"'}, "198.51.100.1", id="quoted-ipv4-port"),
        pytest.param({FWD: "for=198.51.100.1:8080"}, "198.51.100.1", id="unquoted-ipv4-port"),
        pytest.param({FWD: 'for="198.51.100.1:_port1"'}, "198.51.100.1", id="obfuscated-port"),
        pytest.param({FWD: "For=198.51.100.1"}, "198.51.100.1", id="param-name-case"),
        pytest.param({FWD: "for=198.51.100.1;proto=http;by=203.0.113.43"}, "198.51.100.1", id="params-after"),
        pytest.param({FWD: "proto=https;for=198.51.100.1"}, "198.51.100.1", id="params-before"),
        pytest.param({FWD: "proto=https ; for = 198.51.100.1 ;"}, "198.51.100.1", id="loose-whitespace"),
        pytest.param({FWD: "for=192.0.2.43, for=198.51.100.1, for=10.0.0.7"}, "198.51.100.1", id="elements"),
        pytest.param(
            [(FWD, "for=192.0.2.43;proto=https"), (FWD, "for=198.51.100.1, for=10.0.0.7;by=10.0.0.1")],
            "198.51.100.1",
            id="several-lines",
        ),
        pytest.param({FWD: "for=10.0.0.9, for=10.0.0.7"}, "10.0.0.9", id="all-trusted"),
        pytest.param({FWD: "for=198.51.100.1, for=unknown"}, "10.0.0.1", id="unknown"),
        pytest.param({FWD: "for=198.51.100.1, for=_hidden, for=10.0.0.7"}, "10.0.0.7", id="obfuscated-node"),
        pytest.param({FWD: 'for="_gazonk"'}, "10.0.0.1", id="quoted-obfuscated"),
        pytest.param({FWD: "for=198.51.100.1, proto=https"}, "10.0.0.1", id="element-without-for"),
        pytest.param({FWD: "for=198.51.100.1;for=192.0.2.1"}, "10.0.0.1", id="duplicate-for"),
        pytest.param({FWD: 'for="198.51.100.1'}, "10.0.0.1", id="unbalanced-quote"),
        pytest.param({FWD: 'for=198.51.100.1"'}, "10.0.0.1", id="stray-quote"),
        pytest.param({FWD: "for=198.51.100.1;garbage"}, "10.0.0.1", id="pair-without-equals"),
        pytest.param({FWD: 'for="192.0.2.1,for=10.0.0.7"'}, "10.0.0.1", id="quoted-comma-fails-safe"),
        pytest.param({FWD: 'for="19\\8.51.100.1"'}, "198.51.100.1", id="quoted-pair"),
        pytest.param({FWD: "for=2001:db8::1"}, "2001:db8::/64", id="unquoted-ipv6-lenient"),
        pytest.param({XFF: "198.51.100.1"}, "10.0.0.1", id="xff-ignored-when-forwarded"),
        pytest.param({FWD: ""}, "10.0.0.1", id="empty"),
    ],
)
def test_forwarded_header(headers: Headers, expected: str) -> None:
    resolver = ClientIP(TRUSTED, forwarded_header="Forwarded")
    assert resolver(req(headers, peer="10.0.0.1")) == expected


def test_forwarded_from_untrusted_peer_ignored() -> None:
    resolver = ClientIP(TRUSTED, forwarded_header="forwarded")
    assert resolver(req({FWD: "for=198.51.100.1"}, peer="203.0.113.5")) == "203.0.113.5"


@pytest.mark.parametrize("header", ["x-real-ip", "true-client-ip", "cf-connecting-ip"])
def test_single_address_headers(header: str) -> None:
    resolver = ClientIP(TRUSTED, forwarded_header=header)
    assert resolver(req({header: "198.51.100.1", XFF: "192.0.2.1"}, peer="10.0.0.1")) == "198.51.100.1"


class _NoHeaders(FakeRequest):
    """A request whose headers must not be read."""

    def header(self, name: str) -> str | None:
        raise AssertionError(f"read header {name!r}")

    def header_values(self, name: str) -> list[str]:
        raise AssertionError(f"read header {name!r}")


@pytest.mark.parametrize(
    "resolver",
    [
        pytest.param(ClientIP(), id="nothing-trusted"),
        pytest.param(ClientIP(MIXED), id="untrusted-peer"),
    ],
)
def test_headers_not_read_unless_peer_trusted(resolver: ClientIP) -> None:
    assert resolver(_NoHeaders(peer="203.0.113.5")) == "203.0.113.5"
    assert resolver(_NoHeaders(peer="testclient")) == "peer:testclient"
    assert resolver(_NoHeaders(peer=None)) == "unknown"


def test_long_opaque_peer_is_capped() -> None:
    key = ClientIP()(req(peer="x" * 5000))
    assert key.startswith("peer:" + "x" * 1024 + "#")
    assert len(key) < 1100


# -- bounded work on hostile headers ------------------------------------------------------


def _timed(resolver: ClientIP, request: FakeRequest) -> tuple[str, float]:
    start = time.perf_counter()
    result = resolver(request)
    return result, time.perf_counter() - start


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {XFF: "a" * 100 * 1024 + ", 198.51.100.1"}, "198.51.100.1", id="100KiB-junk-then-client"
        ),
        pytest.param({XFF: "198.51.100.1, " + "x" * 100 * 1024}, "10.0.0.1", id="100KiB-junk-last"),
        pytest.param({XFF: "1" * 100 * 1024}, "10.0.0.1", id="100KiB-one-token"),
        pytest.param({XFF: ", ".join(["10.0.0.9"] * 10_000)}, "10.0.0.9", id="10k-trusted-entries"),
        pytest.param({XFF: ",".join(["198.51.100.1"] * 10_000)}, "198.51.100.1", id="10k-client-entries"),
        pytest.param({XFF: "," * 100_000}, "10.0.0.1", id="100k-commas"),
        pytest.param([(XFF, "10.0.0.9")] * 10_000, "10.0.0.9", id="10k-lines"),
        pytest.param([(XFF, "")] * 10_000, "10.0.0.1", id="10k-blank-lines"),
        pytest.param({XFF: "ü" * 100 * 1024}, "10.0.0.1", id="100KiB-non-ascii"),
    ],
)
def test_oversized_headers_are_cheap(headers: Headers, expected: str) -> None:
    resolver = ClientIP(TRUSTED)
    request = req(headers, peer="10.0.0.1")
    result, elapsed = _timed(resolver, request)
    assert result == expected
    assert elapsed < 0.05  # bounded by max_hops and the 8 KiB cap, not by the header


def test_max_hops_bounds_the_walk() -> None:
    """Past max_hops entries, the last trusted hop seen is used (never the far left)."""
    entries = ["198.51.100.1"] + [f"10.0.0.{i}" for i in range(40, 0, -1)]
    resolver = ClientIP(TRUSTED, max_hops=5)
    assert resolver(req({XFF: ", ".join(entries)}, peer="10.0.0.254")) == "10.0.0.5"
    assert ClientIP(TRUSTED, max_hops=64)(req({XFF: ", ".join(entries)}, peer="10.0.0.254")) == "198.51.100.1"
    # Exactly max_hops + 1 entries: the leftmost is one entry too many, not examined.
    six = "198.51.100.1, 10.0.0.5, 10.0.0.4, 10.0.0.3, 10.0.0.2, 10.0.0.1"
    assert resolver(req({XFF: six}, peer="10.0.0.254")) == "10.0.0.5"
    assert ClientIP(TRUSTED, max_hops=6)(req({XFF: six}, peer="10.0.0.254")) == "198.51.100.1"


def test_max_hops_counts_lines_too() -> None:
    lines = [(XFF, "198.51.100.1")] + [(XFF, f"10.0.0.{i}") for i in range(40, 0, -1)]
    assert ClientIP(TRUSTED, max_hops=5)(req(lines, peer="10.0.0.254")) == "10.0.0.5"


def test_size_cap_never_reads_a_torn_entry() -> None:
    """The 8 KiB cut may fall inside an entry: "11.2.3.4" must not become "1.2.3.4"."""
    tail = ",      10.0.0.1" + ", 10.0.0.2" * 817  # 8185 characters, all trusted
    header = "11.2.3.4" + tail
    assert len(header) - 8192 == 1  # the cut lands after the first "1"
    resolver = ClientIP(TRUSTED, max_hops=10_000)
    assert resolver(req({XFF: header}, peer="10.9.9.9")) == "10.0.0.1"


# -- properties ---------------------------------------------------------------------------

_ENTRY = st.one_of(
    st.sampled_from(
        [
            "198.51.100.1",
            "10.0.0.2",
            "10.0.0.3:80",
            "2001:db8::1",
            "[2001:db8::2]:443",
            "[fd00::1]",
            "::ffff:10.0.0.4",
            "unknown",
            "_hidden",
            "for=198.51.100.7",
            'for="[2001:db8::3]:1"',
            "proto=https;for=10.0.0.5",
            'for="',
            "",
            " ",
            '"',
            "[",
            "]:",
            ";",
            "=",
        ]
    ),
    st.text(max_size=40),
)
_HEADER_TEXT = st.one_of(st.text(), st.lists(_ENTRY, max_size=20).map(", ".join))
_LINES = st.lists(_HEADER_TEXT, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    lines=_LINES,
    header=st.sampled_from(["x-forwarded-for", "forwarded"]),
    peer=st.one_of(
        st.none(),
        st.sampled_from(
            ["10.0.0.1", "fd00::1", "::ffff:10.0.0.1", "203.0.113.5", "2001:db8::1", "testclient"]
        ),
        st.text(max_size=60),
    ),
    prefix=st.integers(0, 128),
)
def test_client_ip_never_raises(lines: list[str], header: str, peer: str | None, prefix: int) -> None:
    resolver = ClientIP(MIXED, forwarded_header=header, ipv6_prefix=prefix, max_hops=8)
    result = resolver(req([(header, line) for line in lines], peer=peer))
    assert isinstance(result, str)
    assert result


@settings(max_examples=200, deadline=None)
@given(
    lines=_LINES,
    header=st.sampled_from(["x-forwarded-for", "forwarded"]),
    peer=st.sampled_from(["203.0.113.5", "2001:db8:1:2::9", "172.16.0.1", "testclient", "::ffff:8.8.8.8"]),
)
def test_untrusted_peer_result_ignores_headers(lines: list[str], header: str, peer: str) -> None:
    resolver = ClientIP(MIXED, forwarded_header=header)
    spoofed = resolver(req([(header, line) for line in lines], peer=peer))
    assert spoofed == resolver(req(peer=peer))


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(_ENTRY, max_size=12), prefix=st.integers(0, 128))
def test_trusted_peer_always_yields_an_address(entries: list[str], prefix: int) -> None:
    """Behind a trusted proxy the key is always an address or network, never junk."""
    resolver = ClientIP(TRUSTED, ipv6_prefix=prefix)
    result = resolver(req({XFF: ", ".join(entries)}, peer="10.0.0.1"))
    assert ipaddress.ip_network(result, strict=True)
