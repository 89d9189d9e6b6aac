"""Route matching: template semantics, order, methods, scale, and index == linear scan."""

from __future__ import annotations

import re
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_mw.policy.loader import PolicySet, load_policies
from ratelimit_mw.policy.matcher import Matcher, effective_methods
from ratelimit_mw.policy.paths import PathPattern, compile_template

ROUTES = textwrap.dedent(
    r"""
    version: 1
    routes:
      - {match: /health, exempt: true}
      - {match: "GET /items/{id}", limits: [1/second]}
      - {match: /items/special, limits: [1/second]}
      - {match: "/files/{rest:path}", limits: [1/second]}
      - {match: "/n/{num:int}", limits: [1/second]}
      - {match: "/s/{name:str}/x", limits: [1/second]}
      - {match: "/f/{v:float}", limits: [1/second]}
      - {match: "/u/{u:uuid}", limits: [1/second]}
      - {match: "/static/*", limits: [1/second]}
      - {match: "/assets/*.css", limits: [1/second]}
      - {match: "/deep/**", limits: [1/second]}
      - {match: "/a/**/z", limits: [1/second]}
      - {match: "/doc/{name}.{ext}", limits: [1/second]}
      - {match: 're:^/v(?P<ver>\d+)/ping$', limits: [1/second]}
      - {match: "POST,PUT /users/{id}", limits: [1/second]}
      - {match: "/users/{id}", limits: [1/second]}
      - {match: /trail/, limits: [1/second]}
      - {match: "/{tenant}/dashboard", limits: [1/second]}
      - {match: "DELETE /", limits: [1/second]}
    """
)

CASES = [
    pytest.param("GET", "/health", "/health", {}, id="exact-exempt"),
    pytest.param("GET", "/items/42", "GET /items/{id}", {"id": "42"}, id="param"),
    pytest.param("HEAD", "/items/42", "GET /items/{id}", {"id": "42"}, id="head-matches-get"),
    pytest.param(
        "GET", "/items/special", "GET /items/{id}", {"id": "special"}, id="earlier-param-beats-exact"
    ),
    pytest.param("POST", "/items/special", "/items/special", {}, id="exact-when-earlier-method-differs"),
    pytest.param("POST", "/items/42", None, None, id="method-mismatch-falls-through"),
    pytest.param("GET", "/items/", None, None, id="param-needs-a-segment"),
    pytest.param("GET", "/items/4/2", None, None, id="param-is-one-segment"),
    pytest.param("GET", "/files/a/b/c.txt", "/files/{rest:path}", {"rest": "a/b/c.txt"}, id="path-param"),
    pytest.param("GET", "/files/", "/files/{rest:path}", {"rest": ""}, id="path-param-empty"),
    pytest.param("GET", "/n/123", "/n/{num:int}", {"num": "123"}, id="int"),
    pytest.param("GET", "/n/12a", None, None, id="int-rejects-letters"),
    pytest.param("GET", "/s/bob/x", "/s/{name:str}/x", {"name": "bob"}, id="str"),
    pytest.param("GET", "/f/1.5", "/f/{v:float}", {"v": "1.5"}, id="float"),
    pytest.param(
        "GET", "/u/123e4567-e89b-12d3-a456-426614174000", "/u/{u:uuid}",
        {"u": "123e4567-e89b-12d3-a456-426614174000"}, id="uuid",
    ),
    pytest.param("GET", "/static/logo.png", "/static/*", {}, id="glob-one-segment"),
    pytest.param("GET", "/static/img/logo.png", None, None, id="glob-not-two-segments"),
    pytest.param("GET", "/static/", None, None, id="glob-not-empty"),
    pytest.param("GET", "/assets/site.css", "/assets/*.css", {}, id="glob-in-segment"),
    pytest.param("GET", "/assets/site.js", None, None, id="glob-in-segment-miss"),
    pytest.param("GET", "/deep", "/deep/**", {}, id="double-glob-zero-segments"),
    pytest.param("GET", "/deep/", "/deep/**", {}, id="double-glob-trailing-slash"),
    pytest.param("GET", "/deep/a/b/c", "/deep/**", {}, id="double-glob-any-depth"),
    pytest.param("GET", "/deeper", None, None, id="double-glob-whole-segments"),
    pytest.param("GET", "/a/z", "/a/**/z", {}, id="middle-double-glob-zero"),
    pytest.param("GET", "/a/b/c/z", "/a/**/z", {}, id="middle-double-glob-many"),
    pytest.param(
        "GET", "/doc/readme.md", "/doc/{name}.{ext}", {"name": "readme", "ext": "md"}, id="two-params"
    ),
    pytest.param("GET", "/v2/ping", r"re:^/v(?P<ver>\d+)/ping$", {"ver": "2"}, id="regex"),
    pytest.param("GET", "/v2/ping/", None, None, id="regex-full-match"),
    pytest.param("PUT", "/users/7", "POST,PUT /users/{id}", {"id": "7"}, id="methods-list"),
    pytest.param("GET", "/users/7", "/users/{id}", {"id": "7"}, id="other-method-falls-through"),
    pytest.param("GET", "/trail/", "/trail/", {}, id="trailing-slash"),
    pytest.param("GET", "/trail", None, None, id="trailing-slash-differs"),
    pytest.param("GET", "/health/", None, None, id="trailing-slash-differs-2"),
    pytest.param("GET", "/acme/dashboard", "/{tenant}/dashboard", {"tenant": "acme"}, id="leading-param"),
    pytest.param("DELETE", "/", "DELETE /", {}, id="root"),
    pytest.param("GET", "/", None, None, id="root-method-mismatch"),
    pytest.param("GET", "", None, None, id="empty-path"),
]


@pytest.fixture(scope="module")
def table() -> PolicySet:
    return load_policies(ROUTES, env={})


@pytest.mark.parametrize(("method", "path", "label", "params"), CASES)
def test_matching_semantics(
    table: PolicySet, method: str, path: str, label: str | None, params: dict[str, str] | None
) -> None:
    found = table.match(method, path)
    if label is None:
        assert found is None
    else:
        assert found is not None
        assert (found.route.template, found.params) == (label, params)


def test_exempt_routes_are_returned(table: PolicySet) -> None:
    found = table.match("GET", "/health")
    assert found is not None and found.route.exempt


def test_params_are_a_fresh_dict_per_match(table: PolicySet) -> None:
    first = table.match("GET", "/health")
    assert first is not None
    first.params["x"] = "y"
    second = table.match("GET", "/health")
    assert second is not None and second.params == {}


@pytest.mark.parametrize(
    ("unmatched", "expected"),
    [
        pytest.param("pass", None, id="pass"),
        pytest.param("{limits: [100/minute]}", "<unmatched>", id="default-route"),
    ],
)
def test_unmatched(unmatched: str, expected: str | None) -> None:
    policies = load_policies(
        f"version: 1\nroutes:\n  - {{match: /a, limits: [1/second]}}\nunmatched: {unmatched}\n", env={}
    )
    found = policies.match("GET", "/b")
    assert (found.route.template if found else None) == expected
    hit = policies.match("GET", "/a")
    assert hit is not None and hit.route.template == "/a"


def test_effective_methods() -> None:
    assert effective_methods([]) is None
    assert effective_methods(["GET"]) == frozenset({"GET", "HEAD"})
    assert effective_methods(["post"]) == frozenset({"POST"})


# -- scale ------------------------------------------------------------------------------------

KINDS = (
    ("/r{i}/x", "/r{i}/x"),
    ("/p{i}/{{id}}", "/p{i}/abc"),
    ("/n{i}/{{id:int}}/tail", "/n{i}/77/tail"),
    ("/g{i}/*/end", "/g{i}/mid/end"),
    ("/d{i}/**", "/d{i}/a/b/c"),
    ("re:^/re{i}/[a-z]+$", "/re{i}/abc"),
    ("/api/v1/t{i}/{{id}}", "/api/v1/t{i}/9"),
)


def test_a_thousand_routes_match_correctly() -> None:
    lines = ["version: 1", "routes:"]
    probes: list[tuple[str, str, int]] = []
    for i in range(1000):
        template, path = KINDS[i % len(KINDS)]
        method = ("GET", "POST")[i % 2]
        lines.append(f"  - {{match: '{method} {template.format(i=i)}', limits: [1/second]}}")
        probes.append((method, path.format(i=i), i))
    policies = load_policies("\n".join(lines) + "\n", env={})
    assert len(policies.routes) == 1000
    for method, path, index in probes:
        found = policies.match(method, path)
        assert found is not None and found.route is policies.routes[index], (method, path)
        other = "DELETE"
        assert policies.match(other, path) is None
    assert policies.match("GET", "/r1000/x") is None
    assert policies.match("GET", "/api/v1/t99999/9") is None


# -- the index agrees with a linear scan --------------------------------------------------------

SEGMENTS = ("a", "b", "c", "1", "22")
PATH_SEGMENTS = (*SEGMENTS, "", "a.b")


@st.composite
def templates(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from([r"re:^/a/.*$", r"re:^/(?P<x>[a-c])/1$", r"re:.*/22$"]))
    count = draw(st.integers(0, 4))
    parts: list[str] = []
    for n in range(count):
        kind = draw(st.integers(0, 9))
        if kind <= 4:
            parts.append(draw(st.sampled_from(SEGMENTS)))
        elif kind == 5:
            parts.append(f"{{p{n}}}")
        elif kind == 6:
            parts.append(f"{{p{n}:int}}")
        elif kind == 7:
            parts.append("*")
        elif kind == 8:
            parts.append("**")
        else:
            parts.append(f"{{p{n}:path}}")
    text = "/" + "/".join(parts)
    if draw(st.booleans()) and count:
        text += "/"
    return text


route_tables = st.lists(
    st.tuples(templates(), st.sampled_from([None, ("GET",), ("POST",), ("GET", "POST")])),
    min_size=0,
    max_size=25,
)
paths = st.lists(st.sampled_from(PATH_SEGMENTS), max_size=5).map(lambda s: "/" + "/".join(s))


def linear(
    entries: list[tuple[PathPattern, frozenset[str] | None]], method: str, path: str
) -> tuple[int, dict[str, str]] | None:
    for index, (pattern, methods) in enumerate(entries):
        if methods is not None and method not in methods:
            continue
        found = pattern.regex.fullmatch(path)
        if found is not None:
            return index, {k: v for k, v in found.groupdict().items() if v is not None}
    return None


@settings(max_examples=400, deadline=None)
@given(
    table=route_tables,
    requests=st.lists(
        st.tuples(st.sampled_from(["GET", "HEAD", "POST", "PUT"]), paths), min_size=1, max_size=15
    ),
)
def test_index_returns_what_a_linear_scan_returns(
    table: list[tuple[str, tuple[str, ...] | None]], requests: list[tuple[str, str]]
) -> None:
    entries = [(compile_template(text), effective_methods(methods or ())) for text, methods in table]
    matcher = Matcher(entries)
    for method, path in requests:
        assert matcher.match(method, path) == linear(entries, method, path), (method, path)


@pytest.mark.parametrize(
    ("template", "static", "prefix"),
    [
        pytest.param("/a/b", "/a/b", (), id="static"),
        pytest.param("/", "/", (), id="root"),
        pytest.param("/a/{x}/c", None, ("a",), id="param"),
        pytest.param("/a/b/**", None, ("a", "b"), id="double-glob"),
        pytest.param("/a/b{x}", None, ("a",), id="param-in-segment"),
        pytest.param("/{x}/b", None, (), id="leading-param"),
        pytest.param("re:^/a/b$", None, (), id="regex"),
    ],
)
def test_what_the_index_keys_on(template: str, static: str | None, prefix: tuple[str, ...]) -> None:
    pattern = compile_template(template)
    assert (pattern.static, pattern.prefix) == (static, prefix)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("a/b", "must start with '/'", id="relative"),
        pytest.param("/a**", "'**' must be a whole segment", id="partial-double-glob"),
        pytest.param("/{x:nope}", "unknown parameter type 'nope'", id="bad-type"),
        pytest.param("/{x", "malformed parameter", id="unclosed"),
        pytest.param("/{x}}", "malformed parameter", id="stray-brace"),
        pytest.param("/{x}/{x}", "duplicate parameter 'x'", id="duplicate"),
        pytest.param("re:(", "invalid regular expression", id="regex"),
    ],
)
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_template(template)
