"""``${VAR}`` interpolation in policy strings, from the environment.

Policies are often shared between environments that differ only in a header name,
a proxy range or a limit, so string values may name environment variables:

* ``${VAR}``: the value of ``VAR``; a missing variable is an error, never an empty
  string, because a silently empty key spec or CIDR would change who is limited.
* ``${VAR:-default}``: ``default`` when ``VAR`` is unset *or empty* (shell rules).
* ``$${`` is a literal ``${`` (needed for the 429 body template, which uses
  ``string.Template``'s ``${name}`` placeholders too).

Substitution is one pass: a value taken from the environment is never scanned again,
so an environment value containing ``${`` cannot pull in other variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["InterpolationError", "escape", "interpolate"]

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)(\})?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InterpolationError(ValueError):
    """A ``${...}`` reference is malformed or names a missing variable."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Replace every ``${VAR}``/``${VAR:-default}`` in ``text`` and unescape ``$${``.

    Args:
        text: a string value from the policy document.
        env: the variables to read (``os.environ`` unless the caller gives another).

    Returns:
        The substituted text (``text`` itself when it holds no ``${``).

    Raises:
        InterpolationError: unclosed or malformed reference, or a missing variable
            without a default.
    """
    if "${" not in text:
        return text
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(text[pos : match.start()])
        pos = match.end()
        if match.group(0) == "$${":
            out.append("${")
            continue
        body = match.group(1)
        if match.group(2) is None:
            raise InterpolationError(f"unclosed '${{' in {text!r}; write '$${{' for a literal '${{'")
        name, sep, default = body.partition(":-")
        name = name.strip()
        if not _NAME.match(name):
            raise InterpolationError(
                f"invalid variable reference '${{{body}}}'; use ${{NAME}} or ${{NAME:-default}}"
            )
        if "${" in default:
            raise InterpolationError(f"nested references are not supported: '${{{body}}}'")
        value = env.get(name)
        if sep:
            out.append(value if value else default)
        elif value is None:
            raise InterpolationError(
                f"environment variable {name} is not set (use ${{{name}:-default}} to give a default)"
            )
        else:
            out.append(value)
    out.append(text[pos:])
    return "".join(out)


def escape(text: str) -> str:
    """Inverse of the unescaping step: write every literal ``${`` as ``$${``.

    Used when the interpolated document is exported again, so loading the export
    gives the same values instead of interpolating a second time.
    """
    return text.replace("${", "$${")
