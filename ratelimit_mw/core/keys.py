"""Client identity: which bucket a request is counted in.

Each spec is compiled once into a :class:`KeySpec` and bound to a protocol through an
:class:`Access`, so a request runs one function. Forwarded headers are read only from
trusted proxies, since any client can forge them; a key function that raises leaves the
request limited (the next part of the chain, else the shared ``unidentified`` bucket).
The key strings, the trust model and the header walk are documented in ``docs/keys.md``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import ipaddress
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ratelimit_mw.errors import ConfigError
from ratelimit_mw.types import RequestView

__all__ = [
    "ANONYMOUS", "FORWARDED_HEADERS", "KEY_KINDS", "NO_USER", "UNIDENTIFIED", "VIEW_ACCESS", "Access", "ClientIP",
    "KeyReader", "KeySpec", "OnKeyError", "UserUnavailable", "compile_key",
]

#: Spec kinds accepted by :func:`compile_key` (``kind`` or ``kind:argument``).
KEY_KINDS: tuple[str, ...] = ("ip", "global", "header", "query", "cookie", "call", "user")

#: Headers :class:`ClientIP` can read the client from. All but ``forwarded``
#: (RFC 7239) are comma-separated address lists like ``X-Forwarded-For``.
FORWARDED_HEADERS: tuple[str, ...] = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
)

#: A bound key: the client identity (raw, not yet hashed) of one request, read from
#: the protocol's own object (an ASGI scope, a WSGI environ, a request view).
KeyReader = Callable[[Any], str]
#: One bound part of a chain: a key, ``None`` when absent, or :data:`_FAILED`.
_PartReader = Callable[[Any], "str | None"]
#: Called once per failing key function: ``(label, exception)``; it logs, outside ``core``.
OnKeyError = Callable[[str, Exception], None]

#: Every part of the chain absent: one shared bucket, never "no limit".
ANONYMOUS = "anonymous"
#: A key function raised and no later part was present: the route's shared bucket of
#: requests whose identity could not be read (never "no limit" either).
UNIDENTIFIED = "unidentified"
GLOBAL = "global"
UNKNOWN_PEER = "unknown"
#: What a part that raised answers (compared by identity: no request value can be it).
_FAILED: Any = object()


class UserUnavailable(LookupError):
    """Raised by an :attr:`Access.user` reader when the request carries no user at all
    (no authentication configured), as opposed to an anonymous user (``None``)."""


def NO_USER(source: Any) -> object | None:
    """The user reader of a protocol that can never know users (plain WSGI, views)."""
    return None


class Access(NamedTuple):
    """How keys read one protocol's request object (the ``source``).

    ``core`` never imports the adapters: they supply an Access for the ASGI scope and
    the WSGI environ (``ratelimit_mw.requestview``), and :meth:`KeySpec.bind` binds each
    key to it once, when policies are set, so a request reads its header or peer
    straight from the protocol's own object.

    Attributes:
        peer: ``source -> `` the transport peer (an address or an opaque name), or ``None``.
        header: ``name -> reader``: ``source ->`` the first value of header ``name``
            (lower-case) as text, or ``None``.
        view: ``source ->`` a :class:`~ratelimit_mw.types.RequestView`, for the rarer
            reads (every value of a forwarded header, a query parameter, a cookie).
        request: ``source ->`` what a key function receives.
        user: ``source ->`` the authenticated user's identifier (a primary key, an
            identity), or ``None`` when the request is anonymous; it may raise
            :class:`UserUnavailable` when no authentication is configured at all.
            :data:`NO_USER` (the default) marks a protocol that never knows users.
    """

    peer: Callable[[Any], Any]
    header: Callable[[str], Callable[[Any], str | None]]
    view: Callable[[Any], RequestView]
    request: Callable[[Any], Any]
    user: Callable[[Any], object | None] = NO_USER


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


def _make_classifier(networks: Sequence[_Net], ipv6_prefix: int) -> Callable[[str], _Info | None]:
    """The cached ``text -> (key, trusted) | None`` of one ClientIP: a closure over
    integer masks, so the cache holds no reference to the ClientIP."""
    masks: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for net in networks:
        masks[net.version].append((int(net.network_address), int(net.netmask)))
    v4, v6 = tuple(masks[4]), tuple(masks[6])
    v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - ipv6_prefix)) - 1)

    @functools.lru_cache(maxsize=_CACHE_SIZE)
    def classify(text: str) -> _Info | None:
        addr = _parse_addr(text)
        if addr is None:
            return None
        value = int(addr)
        if addr.version == 4:
            return str(addr), any(value & mask == net for net, mask in v4)
        # The zone id (fe80::1%eth0) is dropped: it names our interface, not the client.
        key = f"{ipaddress.IPv6Address(value & v6_mask)}/{ipv6_prefix}"
        return key, any(value & mask == net for net, mask in v6)

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


class ClientIP:
    """Resolves the client address of a request, honouring only trusted proxies.

    Immutable and thread-safe, with a bounded cache of parsed addresses, so a request
    whose peer is not a trusted proxy costs a dict lookup. The key parts it gives
    (``203.0.113.5``, ``2001:db8:1:2::/64``, ``peer:<name>``, ``unknown``) are listed
    in ``docs/keys.md``.

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

    __slots__ = ("_classify", "_extract", "_view", "forwarded_header", "ipv6_prefix", "max_hops", "trusted_proxies")

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
        self._extract: Callable[[str], str | None] = _forwarded_for if header == "forwarded" else str.strip
        self._classify = _make_classifier(self.trusted_proxies, ipv6_prefix)
        self._view = self.reader(VIEW_ACCESS)

    def __repr__(self) -> str:
        proxies = [str(n) for n in self.trusted_proxies]
        return (
            f"ClientIP(trusted_proxies={proxies!r}, ipv6_prefix={self.ipv6_prefix}, "
            f"forwarded_header={self.forwarded_header!r}, max_hops={self.max_hops})"
        )

    def reader(self, access: Access, prefix: str = "") -> KeyReader:
        """``source -> prefix + address key part`` for requests read through ``access``;
        never raises, never empty. Headers are read only when the peer is trusted."""
        peer_of, view_of, header = access.peer, access.view, self.forwarded_header
        classify, walk = self._classify, self._walk

        def read(source: Any) -> str:
            peer = peer_of(source)
            if not peer:
                return prefix + UNKNOWN_PEER
            if type(peer) is not str:
                peer = str(peer)
            info = classify(peer) if len(peer) <= _MAX_ADDR else None
            if info is None:
                return prefix + "peer:" + _cap(peer)
            if not info[1]:  # always the case with no trusted proxies: headers are not read
                return prefix + info[0]
            return prefix + walk(view_of(source).header_values(header), info[0])

        return read

    def __call__(self, request: RequestView) -> str:
        """The client address key part of a :class:`~ratelimit_mw.types.RequestView`."""
        return self._view(request)

    def _walk(self, lines: list[str], peer_key: str) -> str:
        """Walk the forwarded header's ``lines`` from the right, starting at a trusted peer."""
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


def _same(source: Any) -> Any:
    return source


def _view_header(name: str) -> Callable[[Any], str | None]:
    return lambda request: request.header(name)  # type: ignore[no-any-return]


#: :class:`Access` over a :class:`~ratelimit_mw.types.RequestView` itself (tests, the
#: CLI's ``explain``, a compiled key called on a view).
VIEW_ACCESS = Access(lambda request: request.peer, _view_header, _same, _same)



class _Part(NamedTuple):
    """One part of a key chain, compiled from its spec and not yet bound to a protocol.

    ``bind(access, on_error, absent, failed)`` returns ``source -> key``, or ``absent``
    when the part is missing for the request, or ``failed`` when its function raised:
    a chain binds them to ``None`` and :data:`_FAILED` and reads on; a lone part binds
    them to the final keys, so the request runs one function. ``total`` parts (``ip``,
    ``global``) are always present.
    """

    bind: Callable[[Access, OnKeyError, Any, Any], _PartReader]
    text: str
    total: bool = False


def _header_part(name: str) -> _Part:
    lname = name.lower()
    prefix = f"header:{lname}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> _PartReader:
        read = access.header(lname)

        def header_key(source: Any) -> str | None:
            key = _present(prefix, read(source))
            return absent if key is None else key

        return header_key

    return _Part(bind, f"header:{name}")


def _lookup_part(kind: str, name: str) -> _Part:
    """``query:NAME`` and ``cookie:NAME``."""
    prefix = f"{kind}:{name}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> _PartReader:
        view_of = access.view

        def lookup_key(source: Any) -> str | None:
            view = view_of(source)
            key = _present(prefix, view.query(name) if kind == "query" else view.cookie(name))
            return absent if key is None else key

        return lookup_key

    return _Part(bind, f"{kind}:{name}")


def _callable_part(func: Callable[[Any], object], label: str, text: str) -> _Part:
    prefix = f"call:{label}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> _PartReader:
        request_of = access.request

        def call_key(source: Any) -> str | None:
            try:
                value = func(request_of(source))
            except Exception as exc:  # the app's bug: reported once, and the request stays limited
                on_error(label, exc)
                return failed  # type: ignore[no-any-return]
            key = _present(prefix, value)
            return absent if key is None else key

        return call_key

    return _Part(bind, text)


USER_PREFIX = "user:"


def _user_bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> _PartReader:
    """``user:<id>``, absent for anonymous requests. No authentication configured is
    reported once per binding (the app's set-up, not the client's doing) and the
    request falls to the next part of the chain: limited, never a 500."""
    user_of = access.user
    reported: list[bool] = []

    def user_key(source: Any) -> str | None:
        try:
            value = user_of(source)
        except UserUnavailable as exc:
            if not reported:
                reported.append(True)
                on_error("user", exc)
            return absent  # type: ignore[no-any-return]
        except Exception as exc:  # a user object whose identity raises: the app's bug
            on_error("user", exc)
            return failed  # type: ignore[no-any-return]
        key = _present(USER_PREFIX, value)
        return absent if key is None else key

    return user_key


_USER_PART_TEXT = "user"


def _ip_part(client_ip: ClientIP) -> _Part:
    return _Part(lambda access, *_: client_ip.reader(access, "ip:"), "ip", total=True)


_GLOBAL_PART = _Part(lambda *_: lambda source: GLOBAL, "global", total=True)


def _import_callable(target: str, spec: str) -> tuple[Callable[[Any], object], str]:
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


def _compile_text(spec: str, get_client_ip: Callable[[], ClientIP]) -> _Part:
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind not in KEY_KINDS:
        raise ConfigError(
            f"unknown key kind {kind!r} in {spec!r}{_suggest(kind, KEY_KINDS)}; "
            f"expected one of: {', '.join(KEY_KINDS)}"
        )
    if kind in ("ip", "global", "user"):
        if sep:
            raise ConfigError(f"key {spec!r}: {kind!r} takes no argument; write just {kind!r}")
        if kind == "user":
            return _Part(_user_bind, _USER_PART_TEXT)
        return _ip_part(get_client_ip()) if kind == "ip" else _GLOBAL_PART
    if not arg:
        example = {"header": "header:X-API-Key", "query": "query:api_key", "cookie": "cookie:session"}
        hint = example.get(kind, "call:package.module:function")
        raise ConfigError(f"key {spec!r}: {kind!r} needs a name, e.g. {hint!r}")
    if kind in ("header", "cookie") and not _TOKEN.fullmatch(arg):
        raise ConfigError(f"key {spec!r}: {arg!r} is not a valid {kind} name")
    if kind == "header":
        return _header_part(arg)
    if kind in ("query", "cookie"):
        return _lookup_part(kind, arg)
    target, label = _import_callable(arg, spec)
    return _callable_part(target, label, text)


def _compile_part(part: object, get_client_ip: Callable[[], ClientIP]) -> _Part:
    if isinstance(part, str):
        return _compile_text(part, get_client_ip)
    if isinstance(part, ClientIP):
        return _ip_part(part)
    if callable(part):
        module = getattr(part, "__module__", None) or type(part).__module__
        name = getattr(part, "__qualname__", None) or type(part).__qualname__
        return _callable_part(part, f"{module}:{name}", f"{module}:{name}")
    raise ConfigError(
        f"key part {part!r} must be a spec string (e.g. 'header:X-API-Key', 'ip') or a callable, "
        f"not {type(part).__name__}"
    )


def _ignore_error(label: str, exc: Exception) -> None:
    """The default ``on_error``: the caller that binds a key decides how to report."""


class KeySpec:
    """A compiled key spec: parsed and checked once, bound to each protocol once.

    :meth:`bind` gives the function a request runs: ``source -> key``, reading the
    protocol's own object through an :class:`Access`. Calling the spec on a
    :class:`~ratelimit_mw.types.RequestView` is the same key, read through the view.
    """

    __slots__ = ("parts", "text", "_view", "uses_user")

    def __init__(self, parts: Sequence[_Part]) -> None:
        self.parts = tuple(parts)
        #: A ``user`` part is in the chain: binding it to an Access whose ``user`` is
        #: :data:`NO_USER` deserves a warning (the engine logs it).
        self.uses_user = any(part.text == _USER_PART_TEXT for part in self.parts)
        self.text = self.parts[0].text if len(self.parts) == 1 else "[" + ", ".join(p.text for p in self.parts) + "]"
        self._view = self.bind(VIEW_ACCESS)

    def __repr__(self) -> str:
        return f"KeySpec({self.text})"

    def bind(self, access: Access, on_error: OnKeyError = _ignore_error) -> KeyReader:
        """The key of a request read through ``access``; never raises.

        A part that raises is reported to ``on_error`` once and skipped: the next part
        decides, or, when none is present, the shared :data:`UNIDENTIFIED` key. Every
        part absent: :data:`ANONYMOUS`.
        """
        if len(self.parts) == 1:
            return self.parts[0].bind(access, on_error, ANONYMOUS, UNIDENTIFIED)  # type: ignore[return-value]
        readers = tuple(part.bind(access, on_error, None, _FAILED) for part in self.parts)

        def chain_key(source: Any) -> str:
            failed = False
            for read in readers:
                key = read(source)
                if key is None:
                    continue
                if key is _FAILED:
                    failed = True
                    continue
                return key
            return UNIDENTIFIED if failed else ANONYMOUS

        return chain_key

    def __call__(self, request: RequestView) -> str:
        """The key of a :class:`~ratelimit_mw.types.RequestView` (errors are not reported)."""
        return self._view(request)


def compile_key(
    spec: str | Sequence[str | Callable[[Any], str | None]] | Callable[[Any], str | None],
    *,
    client_ip: ClientIP | None = None,
) -> KeySpec:
    """Compile a key spec once, at load time; bind it to a protocol with :meth:`KeySpec.bind`.

    A list or tuple is a chain: the first part present for the request wins. Header,
    query and cookie parts are absent when missing or blank; a callable is absent
    when it returns ``None`` or a blank string; ``ip`` and ``global`` are always
    present. If every part is absent the key is ``"anonymous"``: one shared bucket,
    never "no limit". See the module docstring for the key strings produced.

    Args:
        spec: ``"ip"``, ``"global"``, ``"user"`` (the authenticated user, read
            through :attr:`Access.user`), ``"header:NAME"``, ``"query:NAME"``,
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
        return KeySpec([_compile_part(spec, get_client_ip)])
    if not spec:
        raise ConfigError("key chain is empty; use e.g. ['header:X-API-Key', 'ip']")
    parts = []
    for item in spec:
        if isinstance(item, (list, tuple)):
            raise ConfigError(f"key chain part {item!r}: chains cannot be nested")
        parts.append(_compile_part(item, get_client_ip))
    for before, after in itertools.pairwise(parts):
        if before.total:
            raise ConfigError(
                f"key chain part {after.text!r} is never used: {before.text!r} before it is always present"
            )
    return KeySpec(parts)
