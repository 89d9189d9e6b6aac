"""The compiled route matcher: first match in file order, without a linear scan.

A request must not pay for every route in a large policy file, yet "first match
wins" must stay exact. So routes are indexed three ways, and only candidates that
could match are tried:

* static paths (no parameter, glob or regex) sit in a dict keyed by the path;
* templated paths hang in a trie of their leading static segments
  (``/api/v1/users/{id}`` under ``api`` -> ``v1`` -> ``users``); a lookup walks the
  request path's segments down the trie and collects the routes on the way;
* the rest (a leading parameter or glob, ``re:``) sit at the trie root and are
  tried for every request. Keep those few, or give them a static first segment.

A static path's full answer (every route that matches it, static or not, with its
parameters) is computed at load time, so a request for a static path costs one dict
lookup and a method check, whatever precedes it in the file.

Every candidate list is in file order and each is scanned only below the best
index found so far, so the answer is the lowest-index route that matches: exactly
what a linear scan would return.

Methods: a route with no methods accepts any. A route listing ``GET`` also
accepts ``HEAD`` (as Starlette does): a ``HEAD`` is a ``GET`` without the body and
must not dodge a limit. The caller passes the method upper-case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ratelimit_mw.policy.paths import PathPattern

__all__ = ["Matcher", "effective_methods"]


def effective_methods(methods: Sequence[str]) -> frozenset[str] | None:
    """The methods a route accepts: ``None`` for any; ``HEAD`` added to ``GET``."""
    if not methods:
        return None
    found = {m.upper() for m in methods}
    if "GET" in found:
        found.add("HEAD")
    return frozenset(found)


class _Node:
    __slots__ = ("children", "routes")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.routes: list[int] = []


class Matcher:
    """Finds the first route, in order, whose path template and methods fit a request.

    Args:
        entries: ``(pattern, methods)`` per route in match order; ``methods`` from
            :func:`effective_methods` (``None`` accepts any method).
    """

    __slots__ = ("_depth", "_exact", "_groups", "_methods", "_regexes", "_root", "_size")

    def __init__(self, entries: Sequence[tuple[PathPattern, frozenset[str] | None]]) -> None:
        self._root = _Node()
        self._regexes = [pattern.regex for pattern, _ in entries]
        self._methods = [methods for _, methods in entries]
        # 0: no parameters; 1: template parameters (always set); 2: regex groups (may be None)
        self._groups = [
            0 if not pattern.regex.groups else 2 if pattern.text.startswith("re:") else 1
            for pattern, _ in entries
        ]
        self._size = len(entries)
        statics: dict[str, list[int]] = {}
        depth = 0
        for index, (pattern, _) in enumerate(entries):
            if pattern.static is not None:
                statics.setdefault(pattern.static, []).append(index)
                continue
            node = self._root
            for segment in pattern.prefix:
                node = node.children.setdefault(segment, _Node())
            node.routes.append(index)
            depth = max(depth, len(pattern.prefix))
        self._depth = depth
        # A static path's answer is known now: every route that matches it (static or
        # not) in order, with the parameters it captures. A lookup then only checks methods.
        self._exact: dict[str, tuple[tuple[int, frozenset[str] | None, dict[str, str]], ...]] = {}
        for path, indices in statics.items():
            found: list[tuple[int, frozenset[str] | None, dict[str, str]]] = [
                (index, self._methods[index], {}) for index in indices
            ]
            for routes in self._candidates(path):
                for index in routes:
                    hit = self._regexes[index].fullmatch(path)
                    if hit is not None:
                        found.append((index, self._methods[index], self._params(index, hit)))
            self._exact[path] = tuple(sorted(found, key=lambda item: item[0]))

    def __len__(self) -> int:
        return self._size

    def _candidates(self, path: str) -> list[list[int]]:
        """Route lists (each in file order) whose routes may match ``path``."""
        node = self._root
        lists = [node.routes] if node.routes else []
        if node.children and path[:1] == "/":
            parts = path.split("/", self._depth + 1)
            for k in range(1, min(len(parts), self._depth + 1)):
                child = node.children.get(parts[k])
                if child is None:
                    break
                node = child
                if node.routes:
                    lists.append(node.routes)
        return lists

    def _params(self, index: int, hit: re.Match[str]) -> dict[str, str]:
        kind = self._groups[index]
        if kind == 0:
            return {}
        if kind == 1:
            return hit.groupdict()
        return {k: v for k, v in hit.groupdict().items() if v is not None}

    def match(self, method: str, path: str) -> tuple[int, dict[str, str]] | None:
        """Return ``(route index, path parameters)`` of the first match, or ``None``."""
        exact = self._exact.get(path)
        if exact is not None:
            for index, allowed, params in exact:
                if allowed is None or method in allowed:
                    return index, dict(params) if params else {}
            return None
        methods = self._methods
        regexes = self._regexes
        best = self._size
        hit: re.Match[str] | None = None
        for routes in self._candidates(path):
            for index in routes:
                if index >= best:
                    break
                allowed = methods[index]
                if allowed is not None and method not in allowed:
                    continue
                found = regexes[index].fullmatch(path)
                if found is not None:
                    best, hit = index, found
                    break
        if hit is None:
            return None
        return best, self._params(best, hit)
