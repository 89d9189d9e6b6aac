"""Key specs parsed and checked once, when policies load.

``"ip"``, ``"header:X-API-Key"``, ``"call:pkg.mod:func"``, a callable, or a chain of
them becomes a :class:`~ratelimit_mw.core.keys.KeySpec`; every mistake is a
:class:`~ratelimit_mw.errors.ConfigError` naming the spec, so none reaches a request.
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from ratelimit_mw.core.clientip import ClientIP
from ratelimit_mw.core.keys import GLOBAL_PART, USER_PART, KeySpec, Part, callable_part, header_part, lookup_part
from ratelimit_mw.errors import ConfigError, did_you_mean

__all__ = ["KEY_KINDS", "TOKEN", "compile_key", "import_callable"]

#: Spec kinds accepted by :func:`compile_key` (``kind`` or ``kind:argument``).
KEY_KINDS: tuple[str, ...] = ("ip", "global", "header", "query", "cookie", "call", "user")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a valid header name


def _ip_part(client_ip: ClientIP) -> Part:
    return Part(lambda access, *_: client_ip.reader(access, "ip:"), "ip", total=True)


def import_callable(target: str, spec: str) -> tuple[Callable[[Any], object], str]:
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


def _compile_text(spec: str, get_client_ip: Callable[[], ClientIP]) -> Part:
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind not in KEY_KINDS:
        hint = did_you_mean(kind, KEY_KINDS)
        raise ConfigError(f"unknown key kind {kind!r} in {spec!r} (expected one of: {', '.join(KEY_KINDS)}){hint}")
    if kind in ("ip", "global", "user"):
        if sep:
            raise ConfigError(f"key {spec!r}: {kind!r} takes no argument; write just {kind!r}")
        if kind == "user":
            return USER_PART
        return _ip_part(get_client_ip()) if kind == "ip" else GLOBAL_PART
    if not arg:
        example = {"header": "header:X-API-Key", "query": "query:api_key", "cookie": "cookie:session"}
        hint = example.get(kind, "call:package.module:function")
        raise ConfigError(f"key {spec!r}: {kind!r} needs a name, e.g. {hint!r}")
    if kind in ("header", "cookie") and not TOKEN.fullmatch(arg):
        raise ConfigError(f"key {spec!r}: {arg!r} is not a valid {kind} name")
    if kind == "header":
        return header_part(arg)
    if kind in ("query", "cookie"):
        return lookup_part(kind, arg)
    target, label = import_callable(arg, spec)
    return callable_part(target, label, text)


def _compile_part(part: object, get_client_ip: Callable[[], ClientIP]) -> Part:
    if isinstance(part, str):
        return _compile_text(part, get_client_ip)
    if isinstance(part, ClientIP):
        return _ip_part(part)
    if callable(part):
        module = getattr(part, "__module__", None) or type(part).__module__
        name = getattr(part, "__qualname__", None) or type(part).__qualname__
        return callable_part(part, f"{module}:{name}", f"{module}:{name}")
    raise ConfigError(
        f"key part {part!r} must be a spec string (e.g. 'header:X-API-Key', 'ip') or a callable, "
        f"not {type(part).__name__}"
    )


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
