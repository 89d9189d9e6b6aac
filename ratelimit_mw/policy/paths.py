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
  become parameters.

Besides the regex, each template reports what the matcher indexes on: the exact
path when it is static, else its leading static segments.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

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
