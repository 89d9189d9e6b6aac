"""Client identity: which bucket a request is counted in.

A key spec (compiled once by :func:`~ratelimit_mw.core.keyspec.compile_key`) is bound to
a protocol through an :class:`Access`, so a request runs one function over the
protocol's own object. A key function that raises leaves the request limited (the next
part of the chain, else the shared ``unidentified`` bucket). The key strings are listed
in ``docs/keys.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ratelimit_mw.types import RequestView

__all__ = [
    "ANONYMOUS", "GLOBAL_PART", "NO_USER", "UNIDENTIFIED", "USER_PART", "VIEW_ACCESS", "Access", "KeyReader",
    "KeySpec", "OnKeyError", "Part", "UserUnavailable", "callable_part", "cap", "header_part", "lookup_part",
]

#: A bound key: the client identity (raw, not yet hashed) of one request, read from
#: the protocol's own object (an ASGI scope, a WSGI environ, a request view).
KeyReader = Callable[[Any], str]
#: One bound part of a chain: a key, ``None`` when absent, or :data:`_FAILED`.
PartReader = Callable[[Any], "str | None"]
#: Called once per failing key function: ``(label, exception)``; it logs, outside ``core``.
OnKeyError = Callable[[str, Exception], None]

#: Every part of the chain absent: one shared bucket, never "no limit".
ANONYMOUS = "anonymous"
#: A key function raised and no later part was present: the route's shared bucket of
#: requests whose identity could not be read (never "no limit" either).
UNIDENTIFIED = "unidentified"
GLOBAL = "global"
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


def cap(value: str) -> str:
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
    return prefix + cap(text)


def _same(source: Any) -> Any:
    return source


def _view_header(name: str) -> Callable[[Any], str | None]:
    return lambda request: request.header(name)  # type: ignore[no-any-return]


#: :class:`Access` over a :class:`~ratelimit_mw.types.RequestView` itself (tests, the
#: CLI's ``explain``, a compiled key called on a view).
VIEW_ACCESS = Access(lambda request: request.peer, _view_header, _same, _same)


class Part(NamedTuple):
    """One part of a key chain, compiled from its spec and not yet bound to a protocol.

    ``bind(access, on_error, absent, failed)`` returns ``source -> key``, or ``absent``
    when the part is missing for the request, or ``failed`` when its function raised:
    a chain binds them to ``None`` and :data:`_FAILED` and reads on; a lone part binds
    them to the final keys, so the request runs one function. ``total`` parts (``ip``,
    ``global``) are always present.
    """

    bind: Callable[[Access, OnKeyError, Any, Any], PartReader]
    text: str
    total: bool = False


def header_part(name: str) -> Part:
    lname = name.lower()
    prefix = f"header:{lname}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> PartReader:
        read = access.header(lname)

        def header_key(source: Any) -> str | None:
            key = _present(prefix, read(source))
            return absent if key is None else key

        return header_key

    return Part(bind, f"header:{name}")


def lookup_part(kind: str, name: str) -> Part:
    """``query:NAME`` and ``cookie:NAME``."""
    prefix = f"{kind}:{name}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> PartReader:
        view_of = access.view

        def lookup_key(source: Any) -> str | None:
            view = view_of(source)
            key = _present(prefix, view.query(name) if kind == "query" else view.cookie(name))
            return absent if key is None else key

        return lookup_key

    return Part(bind, f"{kind}:{name}")


def callable_part(func: Callable[[Any], object], label: str, text: str) -> Part:
    prefix = f"call:{label}:"

    def bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> PartReader:
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

    return Part(bind, text)


USER_PREFIX = "user:"


def _user_bind(access: Access, on_error: OnKeyError, absent: Any, failed: Any) -> PartReader:
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


#: The ``user`` part: ``user:<id>`` of the authenticated user (see :attr:`Access.user`).
USER_PART = Part(_user_bind, "user")


GLOBAL_PART = Part(lambda *_: lambda source: GLOBAL, "global", total=True)

def _ignore_error(label: str, exc: Exception) -> None:
    """The default ``on_error``: the caller that binds a key decides how to report."""


class KeySpec:
    """A compiled key spec: parsed and checked once, bound to each protocol once.

    :meth:`bind` gives the function a request runs: ``source -> key``, reading the
    protocol's own object through an :class:`Access`. Calling the spec on a
    :class:`~ratelimit_mw.types.RequestView` is the same key, read through the view.
    """

    __slots__ = ("parts", "text", "_view", "uses_user")

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = tuple(parts)
        #: A ``user`` part is in the chain: binding it to an Access whose ``user`` is
        #: :data:`NO_USER` deserves a warning (the engine logs it).
        self.uses_user = any(part is USER_PART for part in self.parts)
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


