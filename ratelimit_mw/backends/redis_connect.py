"""Backend URLs to redis-py clients: standalone, Sentinel and Cluster, sync and async.

Accepted URLs::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                                   (TLS)
    unix://[[user]:password@]/path/to/socket[?db=N]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?db=N&password=...]
    redis+cluster://[[user]:password@]host:port[,host:port...][?option=value...]
    rediss+sentinel://...   rediss+cluster://...   (TLS to the data nodes)

The credentials in the URL (or ``password=``/``username=`` options) are the data
nodes'; Sentinel's own are ``sentinel_password=``/``sentinel_username=``.

Defaults suit a rate limiter on the request path: small socket timeouts (a
slow Redis must cost a request tens of milliseconds, not seconds) and no
retries, because the Limiter's circuit breaker handles outages and a retry
loop would multiply the latency of every request during one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.backoff import NoBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

from ratelimit_mw.errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT", "SCHEMES", "ClientFactory", "parse_backend_url", "redact_url"]

#: Default ``socket_timeout`` and ``socket_connect_timeout``, in seconds.
DEFAULT_TIMEOUT = 0.05

SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}
_SENTINEL_ONLY = ("sentinel_password", "sentinel_username")


def _client_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` plus maintenance notifications off, unless the caller set them.

    redis-py 8 enables them in "auto" mode, and its asyncio pool then skips the
    check that replaces a connection the server has closed: after a Redis restart
    the first command on each pooled connection fails instead of reconnecting.
    (They only matter for Redis Enterprise/Cloud with RESP3; pass
    ``maint_notifications_config`` explicitly to have them.)
    """
    out = dict(options)
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - redis-py < 7 has no such feature
        return out
    out.setdefault("maint_notifications_config", MaintNotificationsConfig(enabled=False))
    return out


def _no_retry_sync() -> Any:
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _no_retry_async() -> Any:
    from redis.asyncio.retry import Retry

    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class ClientFactory:
    """Everything needed to build the sync or the async client for one URL.

    Built once from the URL (so a bad URL fails at start-up); each ``sync()`` /
    ``async_()`` call builds a new client, and the backend calls each at most
    once per event loop.

    Attributes:
        kind: ``"url"`` (redis/rediss/unix), ``"sentinel"`` or ``"cluster"``.
        url: the URL as given (passed to redis-py for ``kind == "url"``).
        nodes: sentinel or cluster startup addresses.
        service: the Sentinel service (master) name.
        options: keyword arguments for the data-node clients.
        sentinel_options: keyword arguments for the Sentinel clients.
    """

    kind: str
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    sentinel_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_cluster(self) -> bool:
        """Cluster clients need an explicit, once-only initialisation (async)."""
        return self.kind == "cluster"

    def sync(self) -> tuple[Any, list[Any]]:
        """A new synchronous client, and the helper clients to close with it.

        The helpers are Sentinel's own connections, which closing the master
        client leaves open. A cluster client connects here to discover slots.
        """
        options = _client_defaults(self.options)
        if self.kind == "cluster":
            from redis.cluster import ClusterNode, RedisCluster

            nodes = [ClusterNode(host, port) for host, port in self.nodes]  # type: ignore[no-untyped-call]
            return RedisCluster(startup_nodes=nodes, retry=_no_retry_sync(), **options), []
        options["retry"] = _no_retry_sync()
        if self.kind == "sentinel":
            from redis.sentinel import Sentinel

            sentinel_options = {**self.sentinel_options, "retry": _no_retry_sync()}
            manager = Sentinel(  # type: ignore[no-untyped-call]
                list(self.nodes), sentinel_kwargs=sentinel_options, **options
            )
            return manager.master_for(self.service), list(manager.sentinels)  # type: ignore[no-untyped-call]
        import redis

        return redis.Redis.from_url(self.url, **options), []

    def async_(self) -> tuple[Any, list[Any]]:
        """A new asyncio client and its helpers (as :meth:`sync`).

        For a cluster, the caller must ``await client.initialize()``.
        """
        options = _client_defaults(self.options)
        if self.kind == "cluster":
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            nodes = [ClusterNode(host, port) for host, port in self.nodes]
            return RedisCluster(startup_nodes=nodes, retry=_no_retry_async(), **options), []
        options["retry"] = _no_retry_async()
        if self.kind == "sentinel":
            from redis.asyncio.sentinel import Sentinel

            sentinel_options = {**self.sentinel_options, "retry": _no_retry_async()}
            manager = Sentinel(  # type: ignore[no-untyped-call]
                list(self.nodes), sentinel_kwargs=sentinel_options, **options
            )
            return manager.master_for(self.service), list(manager.sentinels)
        import redis.asyncio

        return redis.asyncio.Redis.from_url(self.url, **options), []


_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:sentinel_)?password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its passwords (userinfo and ``password=`` options) masked, for reprs and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "?" in netloc:  # no path: the query follows the hosts directly
        netloc, _, query = netloc.partition("?")
        slash, tail = "", "?" + query
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hosts}"
    return f"{scheme}://{netloc}{slash}" + _SECRET_QUERY.sub(r"\1***", tail)


def _parse_query(query: str, url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parsers: Mapping[str, Callable[[str], Any]] = URL_QUERY_ARGUMENT_PARSERS  # type: ignore[assignment]
    for name, value in parse_qsl(query):
        parser = parsers.get(name)
        try:
            out[name] = parser(value) if parser else value
        except (TypeError, ValueError):
            raise ConfigError(f"invalid value {value!r} for {name!r} in backend URL {url!r}") from None
    return out


def _split_hosts(hosts: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigError(f"invalid port in backend URL {url!r}: {item!r}") from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"invalid host:port in backend URL {url!r}: {item!r}")
        out.append((host, port))
    if not out:
        raise ConfigError(f"backend URL {url!r} names no host")
    return tuple(out)


def parse_backend_url(url: str, options: Mapping[str, Any]) -> ClientFactory:
    """Validate ``url`` and merge ``options`` (client keyword arguments) into a factory.

    Precedence: options in the URL's query string, then ``options``, then the
    defaults (:data:`DEFAULT_TIMEOUT`, no retries).

    Raises:
        ConfigError: unknown scheme, missing service name, bad host list or option.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported backend URL {url!r}; expected one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    merged: dict[str, Any] = {
        "socket_timeout": DEFAULT_TIMEOUT,
        "socket_connect_timeout": DEFAULT_TIMEOUT,
        **options,
    }
    if "retry" in merged:
        raise ConfigError("the Redis backend never retries (the limiter's breaker does); drop 'retry'")
    base = scheme.split("+", 1)[0]
    if scheme in ("redis", "rediss", "unix"):
        try:  # fail at start-up, not on the first request
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigError(f"invalid backend URL {redact_url(url)!r}: {exc}") from None
        if scheme == "unix":
            merged.pop("socket_connect_timeout", None)  # no connect phase to time
        return ClientFactory("url", url, options=merged)

    kind = scheme.split("+", 1)[1]
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            merged["username"] = unquote(user)
        if password:
            merged["password"] = unquote(password)
    merged.update(_parse_query(parts.query, url))
    if base == "rediss":
        merged["ssl"] = True
    nodes = _split_hosts(hosts, _DEFAULT_PORTS[kind], url)
    # Sentinels get the same socket timeouts, and their own credentials if given.
    sentinel_options = {k: v for k, v in merged.items() if k.startswith("socket_")}
    for name in _SENTINEL_ONLY:
        if name in merged:
            sentinel_options[name.removeprefix("sentinel_")] = merged.pop(name)

    if kind == "cluster":
        if parts.path.strip("/"):
            raise ConfigError(f"redis+cluster URLs take no path (cluster has no databases): {url!r}")
        if merged.get("db", 0):
            raise ConfigError(f"Redis Cluster has only database 0: {url!r}")
        merged.pop("db", None)
        return ClientFactory("cluster", url, nodes, options=merged)

    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigError(
            f"redis+sentinel URL needs the service name as its path, "
            f"e.g. redis+sentinel://host:26379/mymaster: {url!r}"
        )
    if len(path) == 2:
        try:
            merged.setdefault("db", int(path[1]))
        except ValueError:
            raise ConfigError(f"invalid database {path[1]!r} in backend URL {url!r}") from None
    return ClientFactory("sentinel", url, nodes, path[0], merged, sentinel_options)
