"""Hostile bytes over a real socket, through uvicorn (ASGI) and gunicorn (WSGI).

``tests/adapters/test_fuzz_requests.py`` fuzzes the middlewares with hand-built
scopes and environs; here the same kinds of garbage travel as raw bytes through a
real server's parser first, as they would in production: huge and repeated
headers, invalid UTF-8 and percent-encoding, garbage ``X-Forwarded-For`` and
``Forwarded``, HTTP/1.0, HEAD, odd-case methods, absurd ``Content-Length``, plus
seeded random mutations of a valid request. The client spends its quota with clean
requests first; after that no request may pass (2xx) and none may fail (5xx): each
is refused by the limiter (429) or by the server's parser (4xx), and the server
keeps serving.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http_servers import ServerProcess, http_servers

pytestmark = [pytest.mark.slow]

LIMIT = 3
REQUEST = b"GET /spend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _request(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in (b"Host: x", b"Connection: close", *headers)) + b"\r\n" + body


HOSTILE: list[tuple[str, bytes]] = [
    ("huge-header", _request(b"GET /a HTTP/1.1", b"X-Big: " + b"a" * 60_000)),
    ("many-headers", _request(b"GET /a HTTP/1.1", *(b"X-Forwarded-For: 1.2.3.%d" % i for i in range(200)))),
    ("invalid-utf8-path", _request(b"GET /\xff\xfe%c3%28 HTTP/1.1")),
    ("bad-percent", _request(b"GET /%zz%%/%ff?a=%ff&&= HTTP/1.1")),
    ("xff-garbage", _request(b"GET /a HTTP/1.1", b"X-Forwarded-For: 300.1.1.1, unknown, _x, [::1]:80, \xff")),
    ("xff-spoof", _request(b"GET /a HTTP/1.1", b"X-Forwarded-For: 198.51.100.7", b"X-Real-IP: 198.51.100.8")),
    ("forwarded-garbage", _request(b"GET /a HTTP/1.1", b'Forwarded: for="[2001:db8::1]:4711";proto=https, for=_h')),
    ("forwarded-spoof", _request(b"GET /a HTTP/1.1", b"Forwarded: for=198.51.100.9")),
    ("http-1.0", b"GET /a HTTP/1.0\r\n\r\n"),
    ("head", _request(b"HEAD /a HTTP/1.1")),
    ("odd-case-method", _request(b"gEt /a HTTP/1.1")),
    ("unknown-method", _request(b"BREW /a HTTP/1.1")),
    ("absurd-content-length", _request(b"POST /a HTTP/1.1", b"Content-Length: 99999999999999999999999")),
    ("negative-content-length", _request(b"POST /a HTTP/1.1", b"Content-Length: -1")),
    ("two-content-lengths", _request(b"POST /a HTTP/1.1", b"Content-Length: 1", b"Content-Length: 2", body=b"ab")),
    ("long-path", _request(b"GET /" + b"x" * 9000 + b" HTTP/1.1")),
    ("nul-in-header", _request(b"GET /a HTTP/1.1", b"X-Api-Key: a\x00b")),
]


def _mutations(count: int, seed: int = 19) -> list[tuple[str, bytes]]:
    """Seeded byte mutations of a valid request (flip, insert, delete, duplicate a line)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        data = bytearray(_request(b"GET /m HTTP/1.1", b"X-Forwarded-For: 203.0.113.1", b"X-Api-Key: k"))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            op = rng.choice("fidx")
            if op == "f":
                data[at] = rng.randrange(256)
            elif op == "i":
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == "d":
                del data[at:at + rng.randint(1, 4)]
            else:
                data[at:at] = data[at:at + rng.randint(1, 40)]
        out.append((f"mutation-{n}", bytes(data)))
    return out


def _status(server: ServerProcess, raw: bytes) -> int | None:
    """Send ``raw`` on a fresh connection; the response's status, or None if the server
    closed the connection without answering (an acceptable refusal)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)  # no more bytes: a server waiting for a body gives up
        except OSError:  # the server closed early (e.g. after a refusal): read what it sent
            pass
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    if not reply:
        return None
    parts = reply.split(b"\r\n", 1)[0].split()
    assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), reply[:200]
    return int(parts[1])


SERVERS = {
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default (docs/keys.md): our loopback
    # client stands for a client on the internet here, so the server must not trust it
    "uvicorn-asgi": ["uvicorn", "tests.e2e.hostile_apps:asgi_app", "--host", "127.0.0.1", "--port", "{port}",
                     "--log-level", "warning", "--no-access-log", "--no-proxy-headers"],
    "gunicorn-wsgi": ["gunicorn", "--workers", "1", "--worker-class", "sync", "--bind", "127.0.0.1:{port}",
                      "--log-level", "warning", "--timeout", "10", "tests.e2e.hostile_apps:wsgi_app"],
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    with http_servers([(SERVERS[request.param], tmp_path / "server.log", None)], ready_path="/health") as (s,):
        yield s


def test_hostile_bytes_never_pass_a_spent_limit_nor_cause_a_5xx(server: ServerProcess) -> None:
    spent = [_status(server, REQUEST) for _ in range(LIMIT)]
    assert spent == [200] * LIMIT
    outcomes = {name: _status(server, raw) for name, raw in [*HOSTILE, *_mutations(40)]}
    passed = {name: s for name, s in outcomes.items() if s is not None and s < 400}
    failed = {name: s for name, s in outcomes.items() if s is not None and s >= 500}
    assert passed == {}, f"requests got past a spent limit: {passed}"
    assert failed == {}, f"server errors: {failed}"
    # the limiter itself refused most of them (the server's parser only the malformed ones)
    assert sum(s == 429 for s in outcomes.values()) >= len(HOSTILE) // 2, outcomes
    assert server.proc.poll() is None
    assert httpx.get(server.url + "/spend", timeout=5).status_code == 429
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
