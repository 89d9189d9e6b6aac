"""A read-only, case-insensitive mapping of request headers, for key functions.

Key functions get a request view whose ``headers`` reads like the frameworks' own
(``request.headers.get("X-API-Key")``). It is built only when a function asks for
it, from the ASGI scope's header list or the WSGI environ's ``HTTP_*`` keys; a
header sent twice shows its first value, as :meth:`RequestView.header` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["HeaderMap", "from_environ", "from_scope"]


class HeaderMap(Mapping[str, str]):
    """Header values by name, any case; names iterate lower-case."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({self._items!r})"


def from_scope(headers: Iterable[tuple[Any, Any]]) -> HeaderMap:
    """From an ASGI ``headers`` list (latin-1 bytes pairs); malformed pairs are skipped."""
    items: dict[str, str] = {}
    for pair in headers or ():
        try:
            name, value = pair
            items.setdefault(bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        except (TypeError, ValueError):
            continue
    return HeaderMap(items)


def from_environ(environ: Mapping[str, Any]) -> HeaderMap:
    """From a WSGI environ: ``HTTP_X_API_KEY`` is ``x-api-key``, plus the content headers."""
    items: dict[str, str] = {}
    for key, value in environ.items():
        if type(value) is not str:
            continue
        if key.startswith("HTTP_"):
            items[key[5:].replace("_", "-").lower()] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            items[key.replace("_", "-").lower()] = value
    return HeaderMap(items)
