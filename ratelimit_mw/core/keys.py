"""Client identity: which bucket a request is counted in.

**What must be trusted, and the spoofing risk.** The ``ip`` key is the address of
the transport peer, the machine that opened the connection. ``X-Forwarded-For`` and
``Forwarded`` are ordinary request headers: any client can send them with any value.
Honouring them from an arbitrary peer would let every request claim a fresh address
and escape its limit, or claim a victim's address and exhaust the victim's quota. So
they are read **only** when the peer is inside ``trusted_proxies``, and nothing is
trusted by default. List only proxies you run and that append the address they saw
to the header (nginx ``$proxy_add_x_forwarded_for``, HAProxy ``option forwardfor``,
cloud load balancers). Trusting a network that untrusted clients can connect from
(``0.0.0.0/0``, a shared office NAT) hands the client identity to those clients.

The header is walked from the right, because each proxy appends what it saw and only
the entries added by our own proxies are believable: trusted proxy addresses are
skipped, and the first untrusted entry is the client. An entry that cannot be parsed
(garbage, ``unknown``, an obfuscated ``_hidden`` node) stops the walk, and the
nearest trusted hop's address is used instead: anything left of it may be forged. If
every entry is trusted, the leftmost one is the client (an internal caller). The walk
reads at most ``max_hops`` entries and the rightmost 8 KiB of the header, so a huge
header costs nothing extra, and no input makes it raise.

Keys from headers, query parameters and cookies are chosen by the client too: a
client can send a new ``X-API-Key`` on every request. Such a key identifies a client
only once the application authenticates it; keep an ``ip`` limit on routes that
accept unauthenticated keys, or resolve keys with a ``call:`` function that
validates them.

Key strings (raw; the limiter hashes them with keyed BLAKE2b before storage or logs,
so they are never stored or logged as written here):

=====================  ==================================================
spec                   key
=====================  ==================================================
``ip``                 ``ip:203.0.113.5``, ``ip:2001:db8:1:2::/64``,
                       ``ip:peer:<opaque peer>``, ``ip:unknown`` (no peer)
``global``             ``global``
``header:X-API-Key``   ``header:x-api-key:<value>``
``query:api_key``      ``query:api_key:<value>``
``cookie:session``     ``cookie:session:<value>``
``call:pkg.mod:func``  ``call:pkg.mod:func:<value>``
a Python callable      ``call:<module>:<qualname>:<value>``
nothing present        ``anonymous``
=====================  ==================================================

The kind prefix keeps sources apart: an API key equal to somebody's IP address never
shares that IP's bucket. Values are stripped of surrounding whitespace; one longer
than 1024 characters becomes its first 1024 characters, ``#`` and a BLAKE2b-128 hex
digest of the whole value, so it stays bounded, distinct from other long values, and
can never equal a short value (it is longer than any of them).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import ipaddress
import itertools
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ratelimit_mw.errors import ConfigError
from ratelimit_mw.requestview import ASGIRequest, WSGIRequest, environ_key
from ratelimit_mw.types import RequestView

__all__ = [
    "FORWARDED_HEADERS", "KEY_KINDS", "ClientIP", "KeyFunc", "KeyPart", "KeyReader", "compile_key",
    "environ_key_reader", "scope_key_reader",
]

#: Spec kinds accepted by :func:`compile_key` (``kind`` or ``kind:argument``).
KEY_KINDS: tuple[str, ...] = ("ip", "global", "header", "query", "cookie", "call")

#: Headers :class:`ClientIP` can read the client from. All but ``forwarded``
#: (RFC 7239) are comma-separated address lists like ``X-Forwarded-For``.
FORWARDED_HEADERS: tuple[str, ...] = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
)

#: A compiled key function: returns the client identity (raw, not yet hashed).
#: Same shape as ``ratelimit_mw.policy.model.KeyFunc``; redefined so ``core``
#: does not import the outer policy layer.
KeyFunc = Callable[[RequestView], str]
#: One part of a key chain: a key string, or ``None`` when absent for this request.
KeyPart = Callable[[RequestView], str | None]

ANONYMOUS = "anonymous"
GLOBAL = "global"
UNKNOWN_PEER = "unknown"

_MAX_VALUE = 1024  # characters of a raw value kept verbatim in a key
_MAX_HEADER = 8192  # characters of a forwarded header looked at (the rightmost ones)
_MAX_ADDR = 100  # longest address token worth parsing (IPv6 + zone + brackets + port)
_CACHE_SIZE = 4096

_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
#: What the walk needs to know about an address: its key text, and whether it is trusted.
_Info = tuple[str, bool]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a valid header name
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")  # RFC 7239 node-port, obfuscated too
_QUOTED_PAIR = re.compile(r"\\(.)")
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


# -- client address -------------------------------------------------------------------


def _host_of(token: str) -> str | None:
    """Strip ``[...]`` and a port from an address token; ``None`` if malformed.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:4711`` (ports may be RFC 7239 obfuscated, ``_abc``).
    """
    if token.startswith("["):
        end = token.find("]")
        if end < 0:
            return None
        rest = token[end + 1 :]
        if rest and not (rest[0] == ":" and _PORT.fullmatch(rest, 1)):
            return None
        return token[1:end]
    if token.count(":") == 1:  # IPv4 with a port; bare IPv6 has at least two colons
        host, _, port = token.partition(":")
        return host if _PORT.fullmatch(port) else None
    return token


def _parse_addr(text: str) -> _Addr | None:
    """Parse an address token, IPv4-mapped IPv6 folded to IPv4; ``None`` if not one."""
    host = _host_of(text)
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _net_masks(networks: Sequence[_Net]) -> tuple[tuple[int, int], ...]:
    return tuple((int(net.network_address), int(net.netmask)) for net in networks)


def _make_classifier(
    v4: tuple[tuple[int, int], ...],
    v6: tuple[tuple[int, int], ...],
    ipv6_prefix: int,
    cache_size: int,
) -> Callable[[str], _Info | None]:
    """Build the cached ``text -> (key, trusted) | None`` function of one ClientIP.

    A closure over precomputed integers rather than a method, so the cache holds no
    reference to the ClientIP and membership is a few integer operations.
    """
    v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - ipv6_prefix)) - 1)
    v6_suffix = f"/{ipv6_prefix}"
    # Fast path for the common single network per family.
    v4_one = v4[0] if len(v4) == 1 else None
    v6_one = v6[0] if len(v6) == 1 else None

    @functools.lru_cache(maxsize=cache_size)
    def classify(text: str) -> _Info | None:
        addr = _parse_addr(text)
        if addr is None:
            return None
        value = int(addr)
        if isinstance(addr, ipaddress.IPv4Address):
            if v4_one is not None:
                trusted = value & v4_one[1] == v4_one[0]
            else:
                trusted = any(value & mask == net for net, mask in v4)
            return str(addr), trusted
        if v6_one is not None:
            trusted = value & v6_one[1] == v6_one[0]
        else:
            trusted = any(value & mask == net for net, mask in v6)
        # The zone id (fe80::1%eth0) is dropped: it names our interface, not the client.
        return str(ipaddress.IPv6Address(value & v6_mask)) + v6_suffix, trusted

    return classify


def _parse_trusted(trusted_proxies: Sequence[str] | str) -> tuple[_Net, ...]:
    if isinstance(trusted_proxies, str):  # "127.0.0.1, 10.0.0.0/8", as from an env var
        trusted_proxies = [p for p in re.split(r"[\s,]+", trusted_proxies) if p]
    networks: list[_Net] = []
    for index, entry in enumerate(trusted_proxies):
        where = f"trusted_proxies[{index}]"
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            net: _Net = entry
        elif isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            net = ipaddress.ip_network(entry)
        elif isinstance(entry, str):
            text = entry.strip()
            if text == "*":
                raise ConfigError(
                    f"{where}: '*' is not supported: trusting every peer lets any client "
                    "choose its address; list your proxies' networks (e.g. 10.0.0.0/8)"
                )
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{where}: {entry!r} is not an IP address or network "
                    "(expected e.g. 10.0.0.1, 10.0.0.0/8 or fd00::/8)"
                ) from None
        else:
            raise ConfigError(
                f"{where}: expected an IP address or network as a string, got {type(entry).__name__}"
            )
        # Peers are matched after folding IPv4-mapped IPv6 to IPv4; fold networks alike.
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED_V4):
            net = ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
        networks.append(net)
    return tuple(networks)


def _forwarded_for(element: str) -> str | None:
    """The ``for=`` value of one RFC 7239 element, unquoted; ``None`` if unusable.

    Elements without ``for``, with it twice, with a pair lacking ``=`` or with
    unbalanced quotes are unusable, so the walk stops there. Elements are split on
    plain commas: a quoted string holding a comma leaves unbalanced quotes behind, so
    it fails safe instead of being read as a forged extra hop.
    """
    found: str | None = None
    for pair in element.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:
            if pair.strip():
                return None
            continue
        if name.strip().lower() != "for":
            continue
        if found is not None:
            return None
        value = value.strip()
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                return None
            value = value[1:-1]
            if "\\" in value:
                value = _QUOTED_PAIR.sub(r"\1", value)
        if '"' in value:
            return None
        found = value
    return found


def _xff_entry(entry: str) -> str | None:
    return entry.strip()


class ClientIP:
    """Resolves the client address of a request, honouring only trusted proxies.

    Configure one per policy set; it is immutable, thread-safe, and keeps a bounded
    cache of parsed addresses, so the per-request cost is a dict lookup when no
    header has to be walked. With no trusted proxies it never reads a header.

    The result is the address key part: ``203.0.113.5``; an IPv6 client grouped by
    its prefix, ``2001:db8:1:2::/64`` (one end site usually owns a whole /64, so a
    per-address limit would be trivially evaded); ``peer:<value>`` for a peer that is
    not an IP (a unix socket, a test client's name), still limited; ``unknown`` when
    there is no peer at all, one shared bucket rather than no limit.

    Args:
        trusted_proxies: addresses or CIDR networks (IPv4 and IPv6) of the proxies in
            front of the app. A single string is split on commas and whitespace.
            Empty (the default) trusts nobody: forwarded headers are ignored.
        ipv6_prefix: prefix length IPv6 clients are grouped by, 0..128 (128 keeps
            each address apart). IPv4 addresses are always kept whole.
        forwarded_header: header the trusted proxies set, case-insensitive; one of
            :data:`FORWARDED_HEADERS`. ``forwarded`` reads RFC 7239 ``for=``.
        max_hops: most header entries looked at, from the right; bounds the work a
            long header can cause. Beyond it, the last trusted hop seen is used.
    """

    __slots__ = ("_classify", "_extract", "forwarded_header", "ipv6_prefix", "max_hops", "trusted_proxies")

    def __init__(
        self,
        trusted_proxies: Sequence[str] = (),
        *,
        ipv6_prefix: int = 64,
        forwarded_header: str = "x-forwarded-for",
        max_hops: int = 32,
    ) -> None:
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int) or not 0 <= ipv6_prefix <= 128:
            raise ConfigError(f"ipv6_prefix must be an integer from 0 to 128, got {ipv6_prefix!r}")
        if isinstance(max_hops, bool) or not isinstance(max_hops, int) or max_hops < 1:
            raise ConfigError(f"max_hops must be a positive integer, got {max_hops!r}")
        header = forwarded_header.strip().lower() if isinstance(forwarded_header, str) else ""
        if header not in FORWARDED_HEADERS:
            raise ConfigError(
                f"unknown forwarded_header {forwarded_header!r}{_suggest(header, FORWARDED_HEADERS)}; "
                f"expected one of: {', '.join(FORWARDED_HEADERS)}"
            )
        self.trusted_proxies = _parse_trusted(trusted_proxies)
        self.ipv6_prefix = ipv6_prefix
        self.forwarded_header = header
        self.max_hops = max_hops
        self._extract: Callable[[str], str | None] = _forwarded_for if header == "forwarded" else _xff_entry
        v4 = [n for n in self.trusted_proxies if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in self.trusted_proxies if isinstance(n, ipaddress.IPv6Network)]
        self._classify = _make_classifier(_net_masks(v4), _net_masks(v6), ipv6_prefix, _CACHE_SIZE)

    def __repr__(self) -> str:
        proxies = [str(n) for n in self.trusted_proxies]
        return (
            f"ClientIP(trusted_proxies={proxies!r}, ipv6_prefix={self.ipv6_prefix}, "
            f"forwarded_header={self.forwarded_header!r}, max_hops={self.max_hops})"
        )

    def __call__(self, request: RequestView) -> str:
        """The client address key part of ``request``; never raises, never empty."""
        peer = request.peer
        if not peer:
            return UNKNOWN_PEER
        info = self._classify(peer) if len(peer) <= _MAX_ADDR else None
        if info is None:
            return "peer:" + _cap(peer)
        if not info[1]:  # always the case with no trusted proxies: headers are not read
            return info[0]
        return self._walk(request, info[0])

    def _walk(self, request: RequestView, peer_key: str) -> str:
        """Walk the forwarded header from the right, starting at a trusted peer."""
        lines = request.header_values(self.forwarded_header)
        if not lines:
            return peer_key
        # A header may come as several lines, in order: join them. Each non-blank
        # line holds at least one entry, so max_hops lines from the right suffice;
        # stop early too once the size cap is reached.
        kept: list[str] = []
        size = 0
        for line in reversed(lines[-self.max_hops :]):
            if line.strip():
                kept.append(line)
            size += len(line) + 1
            if size > _MAX_HEADER:
                break
        if not kept:
            return peer_key
        kept.reverse()
        joined = ",".join(kept)
        if len(joined) > _MAX_HEADER:
            # Keep the rightmost bytes and drop the entry the cut went through: a
            # truncated "11.2.3.4" must not be read as "1.2.3.4".
            joined = joined[-_MAX_HEADER:]
            cut = joined.find(",")
            joined = joined[cut + 1 :] if cut >= 0 else ""
        entries = joined.rsplit(",", self.max_hops)
        if len(entries) > self.max_hops:
            del entries[0]  # the unexamined remainder, left of max_hops entries
        last = peer_key
        for entry in reversed(entries):
            text = self._extract(entry)
            if not text or len(text) > _MAX_ADDR:
                return last
            info = self._classify(text)
            if info is None:  # garbage, "unknown", "_hidden": anything further left may be forged
                return last
            if not info[1]:
                return info[0]
            last = info[0]
        return last


# -- key specs --------------------------------------------------------------------------


def _cap(value: str) -> str:
    """Bound a raw value: long ones keep 1024 characters plus a digest of the whole."""
    if len(value) <= _MAX_VALUE:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{value[:_MAX_VALUE]}#{digest}"


def _present(prefix: str, value: object) -> str | None:
    """``prefix + value`` if the value counts as present (not None, not blank)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if not text:
        return None
    return prefix + _cap(text)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _header_part(name: str) -> KeyPart:
    lname = name.lower()
    prefix = f"header:{lname}:"

    def header_key(request: RequestView) -> str | None:
        return _present(prefix, request.header(lname))

    return header_key


def _query_part(name: str) -> KeyPart:
    prefix = f"query:{name}:"

    def query_key(request: RequestView) -> str | None:
        return _present(prefix, request.query(name))

    return query_key


def _cookie_part(name: str) -> KeyPart:
    prefix = f"cookie:{name}:"

    def cookie_key(request: RequestView) -> str | None:
        return _present(prefix, request.cookie(name))

    return cookie_key


def _callable_part(func: Callable[[RequestView], object], label: str) -> KeyPart:
    prefix = f"call:{label}:"

    def call_key(request: RequestView) -> str | None:
        # Exceptions propagate: a failing key function is the application's bug, and
        # silently falling through to the next part could widen somebody's quota.
        return _present(prefix, func(request))

    return call_key


def _ip_part(client_ip: ClientIP) -> KeyFunc:
    def ip_key(request: RequestView) -> str:
        return "ip:" + client_ip(request)

    _IP_KEYS[ip_key] = client_ip
    return ip_key


def _global_part(request: RequestView) -> str:
    return GLOBAL


def _import_callable(target: str, spec: str) -> tuple[Callable[[RequestView], object], str]:
    """Resolve ``package.module:function`` (or ``package.module.function``)."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    module_name, attr = module_name.strip(), attr.strip()
    if not module_name or not attr:
        raise ConfigError(f"key {spec!r}: expected 'call:package.module:function'")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raised on import
        raise ConfigError(f"key {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(f"key {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"key {spec!r}: {module_name}:{attr} is not callable")
    return obj, f"{module_name}:{attr}"


class _Compiled:
    """One compiled chain part; ``total`` is set when the part is always present,
    ``header`` (the lower-case name) when the part reads one header."""

    __slots__ = ("func", "header", "text", "total")

    def __init__(
        self, func: KeyPart, text: str, *, total: KeyFunc | None = None, header: str | None = None
    ) -> None:
        self.func = func
        self.text = text
        self.total = total
        self.header = header


def _compile_text(spec: str, get_client_ip: Callable[[], ClientIP]) -> _Compiled:
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind not in KEY_KINDS:
        raise ConfigError(
            f"unknown key kind {kind!r} in {spec!r}{_suggest(kind, KEY_KINDS)}; "
            f"expected one of: {', '.join(KEY_KINDS)}"
        )
    if kind in ("ip", "global"):
        if sep:
            raise ConfigError(f"key {spec!r}: {kind!r} takes no argument; write just {kind!r}")
        total = _ip_part(get_client_ip()) if kind == "ip" else _global_part
        return _Compiled(total, kind, total=total)
    if not arg:
        example = {"header": "header:X-API-Key", "query": "query:api_key", "cookie": "cookie:session"}
        hint = example.get(kind, "call:package.module:function")
        raise ConfigError(f"key {spec!r}: {kind!r} needs a name, e.g. {hint!r}")
    if kind == "header":
        if not _TOKEN.fullmatch(arg):
            raise ConfigError(f"key {spec!r}: {arg!r} is not a valid header name")
        return _Compiled(_header_part(arg), text, header=arg.lower())
    if kind == "query":
        return _Compiled(_query_part(arg), text)
    if kind == "cookie":
        if not _TOKEN.fullmatch(arg):
            raise ConfigError(f"key {spec!r}: {arg!r} is not a valid cookie name")
        return _Compiled(_cookie_part(arg), text)
    target, label = _import_callable(arg, spec)
    return _Compiled(_callable_part(target, label), text)


def _compile_part(part: object, get_client_ip: Callable[[], ClientIP]) -> _Compiled:
    if isinstance(part, str):
        return _compile_text(part, get_client_ip)
    if isinstance(part, ClientIP):
        func = _ip_part(part)
        return _Compiled(func, "ip", total=func)
    if callable(part):
        module = getattr(part, "__module__", None) or type(part).__module__
        name = getattr(part, "__qualname__", None) or type(part).__qualname__
        label = f"{module}:{name}"
        return _Compiled(_callable_part(part, label), label)
    raise ConfigError(
        f"key part {part!r} must be a spec string (e.g. 'header:X-API-Key', 'ip') or a callable, "
        f"not {type(part).__name__}"
    )


def compile_key(
    spec: str | Sequence[str | Callable[[RequestView], str | None]] | Callable[[RequestView], str | None],
    *,
    client_ip: ClientIP | None = None,
) -> KeyFunc:
    """Compile a key spec into a function ``request -> key``, once, at load time.

    A list or tuple is a chain: the first part present for the request wins. Header,
    query and cookie parts are absent when missing or blank; a callable is absent
    when it returns ``None`` or a blank string; ``ip`` and ``global`` are always
    present. If every part is absent the key is ``"anonymous"``: one shared bucket,
    never "no limit". See the module docstring for the key strings produced.

    Args:
        spec: ``"ip"``, ``"global"``, ``"header:NAME"``, ``"query:NAME"``,
            ``"cookie:NAME"``, ``"call:package.module:function"`` (imported now), a
            callable ``f(request) -> str | None``, or a list/tuple of these.
        client_ip: the resolver behind ``ip`` parts, carrying the trusted proxies;
            default: one that trusts no proxy.

    Raises:
        ConfigError: an unknown kind, a missing name, a ``call:`` target that cannot
            be imported or is not callable, an empty chain, or a part that can never
            be reached because an always-present part precedes it.
    """
    resolver: list[ClientIP] = [client_ip] if client_ip is not None else []

    def get_client_ip() -> ClientIP:
        if not resolver:
            resolver.append(ClientIP())
        return resolver[0]

    if isinstance(spec, str) or not isinstance(spec, (list, tuple)):
        parts = [_compile_part(spec, get_client_ip)]
    else:
        if not spec:
            raise ConfigError("key chain is empty; use e.g. ['header:X-API-Key', 'ip']")
        parts = []
        for item in spec:
            if isinstance(item, (list, tuple)):
                raise ConfigError(f"key chain part {item!r}: chains cannot be nested")
            parts.append(_compile_part(item, get_client_ip))
        for before, after in itertools.pairwise(parts):
            if before.total is not None:
                raise ConfigError(
                    f"key chain part {after.text!r} is never used: "
                    f"{before.text!r} before it is always present"
                )

    if len(parts) == 1:
        only = parts[0]
        if only.total is not None:
            return only.total
        if only.header is not None:
            return _single_header_key(only.header)
        return _with_fallback(only.func)
    funcs = tuple(part.func for part in parts)

    def chain_key(request: RequestView) -> str:
        for func in funcs:
            key = func(request)
            if key is not None:
                return key
        return ANONYMOUS

    last = parts[-1].total
    if len(parts) == 2 and parts[0].header is not None and last is not None and last in _IP_KEYS:
        _HEADER_IP_CHAINS[chain_key] = (parts[0].header, last)  # the usual chain: readers for it
    return chain_key


def _single_header_key(lname: str) -> KeyFunc:
    """``header:NAME`` alone (the common API-key spec): :func:`_header_part` with the
    ``anonymous`` fallback, in one function because it runs on every request."""
    prefix = f"header:{lname}:"

    def header_key(request: RequestView) -> str:
        value = request.header(lname)
        if value is not None:
            value = value.strip()
            if value:
                return prefix + (value if len(value) <= _MAX_VALUE else _cap(value))
        return ANONYMOUS

    _HEADER_KEYS[header_key] = lname
    return header_key


#: Compiled ``header:NAME`` keys -> their lower-case NAME (see :func:`scope_key_reader`).
_HEADER_KEYS: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()
#: Compiled ``ip`` keys -> their resolver (see :func:`scope_key_reader`).
_IP_KEYS: weakref.WeakKeyDictionary[Callable[..., Any], ClientIP] = weakref.WeakKeyDictionary()
#: Compiled ``[header:NAME, ip]`` chains -> (lower-case NAME, the ``ip`` part).
_HEADER_IP_CHAINS: weakref.WeakKeyDictionary[Callable[..., Any], tuple[str, KeyFunc]] = weakref.WeakKeyDictionary()

#: Reads a client key straight from an ASGI scope or a WSGI environ; ``None`` when the
#: request is not the plain case (the caller then runs the compiled key on a request view).
KeyReader = Callable[[Mapping[str, Any]], "str | None"]


def scope_key_reader(key: KeyFunc) -> KeyReader | None:
    """For a ``header:NAME``, ``ip`` or ``[header:NAME, ip]`` key: the same key read
    straight from an ASGI scope.

    ``header:NAME``: the plain cases, as servers send them: the lower-case name with a
    ``bytes`` value of at most 1,024 characters, or no such header at all (or a blank
    value: the shared ``anonymous`` key, so requests without a key keep the fast
    lane). Anything else (a long value, a mixed-case name, a value or name of another
    type) reads ``None``, and the caller runs ``key`` on an ASGIRequest, which gives
    the same answer the slow way. ``ip``: see :func:`_ip_reader`. The chain: the
    header's key when present, else the ``ip`` reader's. No reader for other specs.
    """
    return _reader(key, _scope_header_reader, _scope_peer, ASGIRequest)


def environ_key_reader(key: KeyFunc) -> KeyReader | None:
    """:func:`scope_key_reader` for a WSGI environ (``HTTP_<NAME>``, a ``str`` value;
    ``REMOTE_ADDR`` for ``ip``)."""
    return _reader(key, _environ_header_reader, _environ_peer, WSGIRequest)


def _reader(
    key: KeyFunc,
    header_reader: Callable[[str], KeyReader],
    peer_of: Callable[[Mapping[str, Any]], Any],
    view: Callable[[Any], RequestView],
) -> KeyReader | None:
    client_ip = _IP_KEYS.get(key)
    if client_ip is not None:
        return _ip_reader(key, client_ip, peer_of, view)
    lname = _HEADER_KEYS.get(key)
    if lname is not None:
        return header_reader(lname)
    chain = _HEADER_IP_CHAINS.get(key)
    if chain is None:
        return None
    read_header = header_reader(chain[0])
    read_ip = _ip_reader(chain[1], _IP_KEYS[chain[1]], peer_of, view)

    def read(source: Mapping[str, Any]) -> str | None:
        found = read_header(source)
        return read_ip(source) if found is ANONYMOUS else found  # absent or blank: the next part

    return read


def _scope_header_reader(lname: str) -> KeyReader:
    target = lname.encode("latin-1")
    prefix = f"header:{lname}:"

    def read(scope: Mapping[str, Any]) -> str | None:
        headers = scope.get("headers") or ()
        for name, value in headers:
            if name == target:
                if type(value) is not bytes:
                    return None
                text = value.decode("latin-1").strip()
                if not text:
                    return ANONYMOUS
                return prefix + text if len(text) <= _MAX_VALUE else None
        for name, _ in headers:  # absent in lower case: absent, unless in another case
            if type(name) is not bytes or name.lower() == target:
                return None
        return ANONYMOUS

    return read


def _environ_header_reader(lname: str) -> KeyReader:
    name = environ_key(lname)
    prefix = f"header:{lname}:"

    def read(environ: Mapping[str, Any]) -> str | None:
        value = environ.get(name)
        if type(value) is not str:
            return ANONYMOUS if value is None else None
        text = value.strip()
        if not text:
            return ANONYMOUS
        return prefix + text if len(text) <= _MAX_VALUE else None

    return read


def _scope_peer(scope: Mapping[str, Any]) -> Any:
    client = scope.get("client")
    return client[0] if client else None


def _environ_peer(environ: Mapping[str, Any]) -> Any:
    return environ.get("REMOTE_ADDR")


def _ip_reader(
    key: KeyFunc, client_ip: ClientIP, peer_of: Callable[[Mapping[str, Any]], Any], view: Callable[[Any], RequestView]
) -> KeyReader:
    """For an ``ip`` key (the default spec): the client's address read straight from the
    scope or environ, for a peer that is a well-formed address and not a trusted proxy.
    Anything else (a trusted proxy's forwarded header to walk, no peer, garbage) runs
    ``key`` on a request view, so the answer is always the key's own, never ``None``."""
    classify = client_ip._classify

    def read(source: Mapping[str, Any]) -> str | None:
        peer = peer_of(source)
        if type(peer) is str and len(peer) <= _MAX_ADDR:
            info = classify(peer)
            if info is not None and not info[1]:
                return "ip:" + info[0]
        return key(view(source))

    return read


def _with_fallback(func: KeyPart) -> KeyFunc:
    """A single part that may be absent, with the shared ``anonymous`` fallback."""

    def key(request: RequestView) -> str:
        result = func(request)
        return ANONYMOUS if result is None else result

    return key
