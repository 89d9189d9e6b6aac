"""The client address of a request, read through trusted proxies only.

Forwarded headers are read only when the peer is a trusted proxy, since any client can
forge them, and the walk from the right stops at the first address that is not trusted
or not an address. The trust model and the header walk are in ``docs/keys.md``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any

from ratelimit_mw.core.keys import VIEW_ACCESS, Access, KeyReader, cap
from ratelimit_mw.errors import ConfigError, did_you_mean
from ratelimit_mw.types import RequestView

__all__ = ["FORWARDED_HEADERS", "UNKNOWN_PEER", "ClientIP"]

#: Headers :class:`ClientIP` can read the client from. All but ``forwarded``
#: (RFC 7239) are comma-separated address lists like ``X-Forwarded-For``.
FORWARDED_HEADERS: tuple[str, ...] = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
)
#: The key part of a request whose peer is not known.
UNKNOWN_PEER = "unknown"

_MAX_HEADER = 8192  # characters of a forwarded header looked at (the rightmost ones)
_MAX_ADDR = 100  # longest address token worth parsing (IPv6 + zone + brackets + port)
_CACHE_SIZE = 4096

_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
#: What the walk needs to know about an address: its key text, and whether it is trusted.
_Info = tuple[str, bool]

_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")  # RFC 7239 node-port, obfuscated too
_QUOTED_PAIR = re.compile(r"\\(.)")
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


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
                f"unknown forwarded_header {forwarded_header!r} (expected one of: {', '.join(FORWARDED_HEADERS)})"
                f"{did_you_mean(header, FORWARDED_HEADERS)}"
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
                return prefix + "peer:" + cap(peer)
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
