"""Path templates -> anchored regexes, compiled once (after Starlette's ``compile_path``).

Template syntax (paths are matched as the adapters give them: ``root_path``
stripped, percent-decoded; a trailing slash is significant, ``/users`` does not
match ``/users/``):

* ``/users/{id}``: a parameter is one non-empty segment (``[^/]+``); ``{id:str}`` is
  the same; ``{id:int}`` digits; ``{n:float}`` digits with an optional fraction;
  ``{u:uuid}`` a UUID; ``{rest:path}`` anything, slashes included (may be empty).
  Parameters may share a segment with text: ``/files/{name}.{ext}``.
* ``*``: one whole non-empty segment; inside a segment (``/static/*.css``) it
  matches any run of non-slash characters.
* ``**``: zero or more whole segments, so ``/api/**`` matches ``/api``, ``/api/``
  and everything below; ``/a/**/b`` matches ``/a/b`` and ``/a/x/y/b``.
* ``re:<regex>``: a Python regex that must match the whole path; named groups
  become parameters. Regexes that can backtrack badly are refused, since the path is
  attacker-controlled and one request must not pin a CPU: a variable repeat inside a
  repeat (``(a+)+``, ``(a?b*){2}``), alternatives under one (``(a|ab)*``), and two
  unbounded repeats in a row that can match the same character with no literal
  between them that the first cannot match (``.*.*``, ``[a-z]*[a-c]*``; ``[0-9]+/[^/]+``
  is fine).

Besides the regex, each template reports what the matcher indexes on: the exact
path when it is static, else its leading static segments.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

try:  # the regex parser moved in Python 3.11; the old module names warn there
    from re import _compiler as _sre_compile  # type: ignore[attr-defined,unused-ignore]
    from re import _parser as _sre_parse  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_compile as _sre_compile  # type: ignore[no-redef,unused-ignore]
    import sre_parse as _sre_parse  # type: ignore[no-redef,unused-ignore]

__all__ = ["CONVERTORS", "PathPattern", "compile_template"]

CONVERTORS: dict[str, str] = {
    "str": r"[^/]+",
    "int": r"[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "path": r".*",
}
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?\}")


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A compiled path template.

    Attributes:
        text: the template as written.
        regex: matches (with ``fullmatch``) exactly the paths the template covers.
        static: the path itself when the template has no parameter, glob or regex.
        prefix: leading whole static segments; every matching path starts with them.
        params: parameter names, in order.
    """

    text: str
    regex: re.Pattern[str]
    static: str | None
    prefix: tuple[str, ...]
    params: tuple[str, ...]


def compile_template(text: str) -> PathPattern:
    """Compile ``text`` (a template or ``re:...``).

    Raises:
        ValueError: the template is malformed; the message says where and why.
    """
    if text.startswith("re:"):
        try:
            regex = re.compile(text[3:])
        except re.error as exc:
            raise ValueError(f"invalid regular expression {text[3:]!r}: {exc}") from None
        risk = _backtracking_risk(text[3:])
        if risk:
            raise ValueError(f"regular expression {text[3:]!r} {risk}; rewrite it unambiguously")
        return PathPattern(text, regex, None, (), tuple(regex.groupindex))
    if not text.startswith("/"):
        raise ValueError(f"a path template must start with '/' (or be 're:...'), got {text!r}")
    segments = text[1:].split("/")
    parts: list[str] = []
    params: list[str] = []
    prefix: list[str] = []
    dynamic = False
    for segment in segments:
        if segment == "**":
            parts.append("(?:/.*)?")
            dynamic = True
            continue
        if "**" in segment:
            raise ValueError(f"'**' must be a whole segment, as in '/api/**' (in {text!r})")
        pattern, names = _segment(segment, text)
        for name in names:
            if name in params:
                raise ValueError(f"duplicate parameter {name!r} in {text!r}")
            params.append(name)
        if pattern is None:
            if not dynamic:
                prefix.append(segment)
            parts.append(re.escape(segment))
        else:
            dynamic = True
            parts.append(pattern)
        parts[-1] = "/" + parts[-1]
    regex = re.compile("".join(parts), re.DOTALL)
    if not dynamic:
        return PathPattern(text, regex, text, (), ())
    return PathPattern(text, regex, None, tuple(prefix), tuple(params))


def _segment(segment: str, template: str) -> tuple[str | None, list[str]]:
    """One segment -> its regex (``None`` when it is plain text) and its parameter names."""
    if segment == "*":
        return r"[^/]+", []
    if "{" not in segment and "}" not in segment and "*" not in segment:
        return None, []
    out: list[str] = []
    names: list[str] = []
    pos = 0
    for match in _PARAM.finditer(segment):
        out.append(_literal(segment[pos : match.start()], template))
        name, kind = match.group(1), match.group(2) or "str"
        if kind not in CONVERTORS:
            close = difflib.get_close_matches(kind, CONVERTORS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(CONVERTORS)})"
            raise ValueError(f"unknown parameter type {kind!r} in {template!r}{hint}")
        out.append(f"(?P<{name}>{CONVERTORS[kind]})")
        names.append(name)
        pos = match.end()
    out.append(_literal(segment[pos:], template))
    return "".join(out), names


def _literal(text: str, template: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(
            f"malformed parameter in {template!r}: use {{name}} or {{name:type}} "
            "(names are letters, digits and '_')"
        )
    return "[^/]*".join(re.escape(chunk) for chunk in text.split("*"))


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")


def _backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack exponentially on a crafted path, or ``None``.

    Star height above one is the classic ReDoS shape: an unbounded repeat whose body
    can itself match in several ways (an inner repeat or alternatives) lets a failing
    match try exponentially many splits. Possessive repeats and atomic groups never
    backtrack into their body, so they are not looked into.
    """
    parsed = _sre_parse.parse(pattern)
    return _scan(parsed, inside_unbounded=False) or _chain_risk(parsed, parsed.state)


def _scan(items: Any, *, inside_unbounded: bool) -> str | None:
    for op, arg in items:
        name = str(op)
        if name in _REPEATS:
            low, high, body = arg
            unbounded = high == _sre_parse.MAXREPEAT
            if inside_unbounded and low != high:  # a{2} matches one way; a+, a? and a{1,3} several
                return "nests a variable repeat inside a repeat (catastrophic backtracking)"
            # a body repeated twice or more is a chain of copies: a variable repeat in it backtracks too
            found = _scan(body, inside_unbounded=inside_unbounded or unbounded or high > 1)
        elif name == "BRANCH":
            if inside_unbounded:
                return "repeats a group of alternatives without bound (catastrophic backtracking)"
            found = next((r for branch in arg[1] if (r := _scan(branch, inside_unbounded=False))), None)
        elif name == "SUBPATTERN":
            found = _scan(arg[-1], inside_unbounded=inside_unbounded)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _scan(arg[1], inside_unbounded=inside_unbounded)
        elif name == "GROUPREF_EXISTS":
            found = next(
                (r for part in arg[1:] if part is not None and (r := _scan(part, inside_unbounded=inside_unbounded))),
                None,
            )
        else:  # literals, classes, anchors, possessive repeats and atomic groups
            found = None
        if found:
            return found
    return None


#: Characters tried when deciding whether two repeats can match the same character.
_PROBE_CHARS = [chr(c) for c in range(0x250)] + ["\u2028", "\u3000", "\uff10", "\U0001f600"]
_ANYTHING = frozenset(_PROBE_CHARS)
_SINGLE = ("LITERAL", "NOT_LITERAL", "IN", "ANY", "CATEGORY")


def _char_set(item: Any, state: Any) -> frozenset[str]:
    """The probe characters one single-character item matches (all of them for anything else)."""
    if str(item[0]) not in _SINGLE:
        return _ANYTHING
    sub = _sre_parse.SubPattern(state, [item])
    regex = _sre_compile.compile(sub, state.flags)
    return frozenset(c for c in _PROBE_CHARS if regex.fullmatch(c))


_CHAIN = "has unbounded repeats in a row that can match the same text (polynomial backtracking)"


def _has_unbounded(items: Any) -> bool:
    for op, arg in items:
        name = str(op)
        if name in (*_REPEATS, "POSSESSIVE_REPEAT") and arg[1] == _sre_parse.MAXREPEAT:
            return True
        nested = arg if isinstance(arg, (list, tuple)) else ()
        for part in nested:
            if isinstance(part, _sre_parse.SubPattern) and _has_unbounded(part):
                return True
            if isinstance(part, list) and any(isinstance(b, _sre_parse.SubPattern) and _has_unbounded(b) for b in part):
                return True
    return False


def _chain_risk(items: Any, state: Any, pending: frozenset[str] | None = None) -> str | None:
    """Polynomial backtracking: unbounded repeats in a row that can share characters.

    ``pending`` holds what the last unbounded repeat can match until a literal it
    cannot match pins where it ends.
    """
    risk, _ = _chain(items, state, pending)
    return risk


def _chain(items: Any, state: Any, pending: frozenset[str] | None) -> tuple[str | None, frozenset[str] | None]:
    for item in items:
        name, arg = str(item[0]), item[1]
        if name == "LITERAL":
            if pending is not None and chr(arg) not in pending:
                pending = None
            continue
        if name == "SUBPATTERN":
            risk, pending = _chain(arg[-1], state, pending)
            if risk:
                return risk, pending
            continue
        if name in (*_REPEATS, "POSSESSIVE_REPEAT"):
            risk = _chain_risk(arg[2], state)  # the body on its own: a chain inside a group
            if risk:
                return risk, pending
            low, high, body = arg[0], arg[1], list(arg[2])
            if high != _sre_parse.MAXREPEAT and (low == high or high <= 1):
                continue  # a{2}, a?: a fixed or optional item; neither starts nor ends a chain
            matches = _char_set(body[0], state) if len(body) == 1 else _ANYTHING
            if low == 0:  # it may match nothing: the repeat before it still borders the next one
                if pending is not None and pending & matches:
                    return _CHAIN, pending
                pending = matches if pending is None else pending | matches
                continue
        elif name == "BRANCH":
            for branch in arg[1]:
                risk = _chain_risk(branch, state)
                if risk:
                    return risk, pending
            if not _has_unbounded([item]):
                continue
            matches = _ANYTHING
        elif name in ("AT",) or not _has_unbounded([item]):
            continue  # anchors and bounded items neither start nor end a chain
        else:
            matches = _ANYTHING  # a group holding an unbounded repeat
        if pending is not None and pending & matches:
            return _CHAIN, pending
        pending = matches
    return None, pending
