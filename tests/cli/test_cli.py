"""The ``ratelimit-mw`` command: check, explain, usage, and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ratelimit_mw.cli import EXIT_BACKEND, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, main
from ratelimit_mw.core.hashing import KeyHasher

ROOT = Path(__file__).resolve().parents[2]
SECRET = "SECRET-abc"

POLICIES = """\
version: 1
defaults:
  key: [header:X-API-Key, ip]
trusted_proxies: [10.0.0.0/8]
policies:
  free: {limits: ["10/second; burst=40", "10000/day"]}
routes:
  - match: "GET /resource"
    policy: free
  - match: "/users/{id}"
    methods: [POST, PUT]
    limits: ["5/minute"]
    shadow: true
  - match: "/search"
    limits: ["2/second"]
    key: query:api_key
  - match: "/health"
    exempt: true
"""

INVALID = """\
version: 1
routes:
  - match: "GET /resource"
    limits: ["ten per minute"]
"""



@pytest.fixture(autouse=True)
def _default_key_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATELIMIT_KEY_SECRET", raising=False)
    monkeypatch.delenv("REDIS_PREFIX", raising=False)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- check ------------------------------------------------------------------------------


def test_check_prints_the_route_table(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, out, err = run(capsys, "check", str(policies))
    assert code == EXIT_OK and err == ""
    header, *rows = out.splitlines()
    assert header.split() == ["#", "ROUTE", "METHODS", "LIMITS", "KEY", "SCOPE", "EXEMPT"]
    assert rows[0].split()[:3] == ["1", "GET", "/resource"]
    assert "10/second; burst=40, 10000/day" in rows[0] and "[header:X-API-Key, ip]" in rows[0]
    assert "5/minute (shadow)" in rows[1]
    assert "query:api_key" in rows[2]
    assert rows[3].split() == ["4", "/health", "*", "-", "-", "-", "yes"]
    assert out.rstrip().endswith("OK, 4 routes; unmatched requests pass through unlimited")


def test_check_json(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, out, _ = run(capsys, "check", str(policies), "--json")
    assert code == EXIT_OK
    routes = json.loads(out)["routes"]
    assert [r["route"] for r in routes] == ["GET /resource", "POST,PUT /users/{id}", "/search", "/health"]
    assert routes[0] == {
        "order": 1,
        "route": "GET /resource",
        "methods": ["GET", "HEAD"],
        "limits": ["10/second; burst=40", "10000/day"],
        "key": "[header:X-API-Key, ip]",
        "scope": "GET /resource",
        "exempt": False,
        "shadow": False,
        "line": 8,
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(INVALID, ":4: routes[0].limits[0]: ", id="bad-rate"),
        pytest.param("version: 1\nroutes: [\n", ":3: YAML syntax error", id="yaml"),
        pytest.param("version: 1\nroutez: []\n", ":2: routez: ", id="unknown-field"),
    ],
)
def test_check_reports_file_line_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run(capsys, "check", str(path))
    assert code == EXIT_INVALID and out == ""
    assert err.startswith(f"{path}{expected}")


def test_check_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert code == EXIT_INVALID and "file not found" in err


# -- explain ----------------------------------------------------------------------------


def test_explain_shows_route_limits_and_the_key_hash_only(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, out, _ = run(capsys, "explain", str(policies), "get", "/resource", "-H", f"X-API-Key: {SECRET}")
    assert code == EXIT_OK
    assert "route:   GET /resource (line 8)" in out and "policy:  free" in out
    assert "limits:  10/second; burst=40, 10000/day" in out
    assert f"client:  header:x-api-key -> hash {KeyHasher()(f'header:x-api-key:{SECRET}')}" in out
    assert SECRET not in out


@pytest.mark.parametrize(
    ("argv", "source", "raw_key"),
    [
        pytest.param(["GET", "/resource", "--peer", "203.0.113.5"], "ip", "ip:203.0.113.5", id="peer"),
        pytest.param(
            ["GET", "/resource", "--peer", "10.0.0.1", "-H", "X-Forwarded-For: 198.51.100.7"],
            "ip",
            "ip:198.51.100.7",
            id="trusted-proxy",
        ),
        pytest.param(["GET", "/search?api_key=SECRET-abc"], "query:api_key", f"query:api_key:{SECRET}", id="query"),
        pytest.param(["GET", "/resource"], "ip", "ip:unknown", id="no-peer"),
    ],
)
def test_explain_resolves_keys_like_the_server(
    capsys: pytest.CaptureFixture[str], policies: Path, argv: list[str], source: str, raw_key: str
) -> None:
    code, out, _ = run(capsys, "explain", str(policies), *argv, "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["resolved_key"] == {"source": source, "hash": KeyHasher()(raw_key)}
    assert SECRET not in out


def test_explain_exempt_and_unmatched(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, out, _ = run(capsys, "explain", str(policies), "GET", "/health")
    assert code == EXIT_OK and "exempt (never limited)" in out
    code, out, _ = run(capsys, "explain", str(policies), "GET", "/elsewhere")
    assert code == EXIT_NOT_FOUND and "no route matches" in out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["GET", "/resource", "-H", "no-colon"], id="bad-header"),
        pytest.param(["GET", "resource"], id="relative-path"),
        pytest.param(["GET"], id="missing-path"),
    ],
)
def test_explain_usage_errors_exit_1(capsys: pytest.CaptureFixture[str], policies: Path, argv: list[str]) -> None:
    code, _, err = run(capsys, "explain", str(policies), *argv)
    assert code == EXIT_NOT_FOUND and "error" in err


# -- usage ------------------------------------------------------------------------------


def test_usage_on_a_fresh_backend(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    key = f"header:x-api-key:{SECRET}"
    code, out, _ = run(
        capsys, "usage", key, "--route", "GET /resource", "--policies", str(policies), "--backend", "memory://"
    )
    assert code == EXIT_OK and SECRET not in out
    assert KeyHasher()(key) in out
    assert out.splitlines()[2].split() == ["10-per-second", "10/second;", "burst=40", "40", "40", "0", "0"]
    code, out, _ = run(
        capsys,
        "usage",
        key,
        "--route",
        "GET /resource",
        "--policies",
        str(policies),
        "--backend",
        "memory://",
        "--json",
    )
    assert [(x["name"], x["remaining"]) for x in json.loads(out)["limits"]] == [
        ("10-per-second", 40),
        ("10000-per-day", 10000),
    ]


@pytest.mark.parametrize(
    ("route", "backend", "code", "message"),
    [
        pytest.param("GET /nope", "memory://", EXIT_NOT_FOUND, "no route 'GET /nope'", id="no-route"),
        pytest.param("GET /resource", "memory://?max_keys=x", EXIT_INVALID, "max_keys", id="bad-url"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], policies: Path, route: str, backend: str, code: int, message: str
) -> None:
    got, _, err = run(
        capsys, "usage", "ip:1.2.3.4", "--route", route, "--policies", str(policies), "--backend", backend
    )
    assert got == code and message in err


def test_usage_requires_its_options(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, _, err = run(capsys, "usage", "ip:1.2.3.4", "--policies", str(policies))
    assert code == EXIT_NOT_FOUND and "--route" in err


@pytest.mark.redis
def test_usage_with_an_unreachable_backend(capsys: pytest.CaptureFixture[str], policies: Path) -> None:
    code, _, err = run(
        capsys,
        "usage",
        "ip:1.2.3.4",
        "--route",
        "GET /resource",
        "--policies",
        str(policies),
        "--backend",
        "redis://127.0.0.1:1/0",
    )
    assert code == EXIT_BACKEND and "backend unreachable" in err


@pytest.mark.redis
def test_usage_reads_what_a_server_consumed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_url: str
) -> None:
    from ratelimit_mw.limiter import Limiter
    from ratelimit_mw.policy.loader import load_policies

    # Redis decides with its own clock, which a test cannot hold still: a bucket that
    # refills one token an hour (not 10/s) keeps "3 consumed" exact however slow the run.
    policies = tmp_path / "slow-refill.yaml"
    policies.write_text(POLICIES.replace("10/second; burst=40", "1/hour; burst=40"))
    route = load_policies(policies).routes[0]
    server = Limiter(redis_url)
    for _ in range(3):
        server.check("ip:1.2.3.4", server.quota(route.rules, route.scope))
    server.close()
    code, out, _ = run(
        capsys,
        "usage",
        "ip:1.2.3.4",
        "--route",
        "GET /resource",
        "--policies",
        str(policies),
        "--backend",
        redis_url,
        "--json",
    )
    assert code == EXIT_OK
    assert [x["remaining"] for x in json.loads(out)["limits"]] == [37, 9997]


# -- the installed command ----------------------------------------------------------------


def test_the_console_script_runs(policies: Path) -> None:
    script = shutil.which("ratelimit-mw", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "ratelimit_mw.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*command, "check", str(policies)], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "GET /resource" in done.stdout
    bad = policies.with_name("bad.yaml")
    bad.write_text(INVALID)
    done = subprocess.run(
        [*command, "check", str(bad)], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert done.returncode == EXIT_INVALID and f"{bad}:4: routes[0].limits[0]" in done.stderr
