"""Reading a policy source into plain data plus a map of line numbers.

Every later error must name the file, line and field, so the YAML is composed into
nodes (which carry marks) and converted here by hand instead of ``yaml.safe_load``:
the conversion records the line of each mapping key and sequence item under its
field path, rejects duplicate keys (which PyYAML would silently let the last one
win), guards against alias bombs and recursive aliases, and applies ``${VAR}``
interpolation while it still knows whether a scalar was quoted.

A JSON file is read by the same YAML parser (JSON is YAML's flow style), so JSON
policies get line numbers too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from ratelimit_mw.errors import PolicyError
from ratelimit_mw.policy.interpolate import InterpolationError, interpolate

__all__ = ["FieldPath", "Source", "format_path", "parse_text", "read_source"]

#: A field's position in the document: ``("routes", 2, "limits", 0)``.
FieldPath = tuple[str | int, ...]

_IDENT = re.compile(r"[A-Za-z0-9_-]+\Z")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Upper bound on converted nodes, so ``*alias`` fan-out cannot exhaust memory.
_MAX_NODES = 250_000
_STRING_NAME = "<string>"
_MAPPING_NAME = "<mapping>"


@dataclass(frozen=True)
class Source:
    """A policy document as plain data, with where each field came from.

    Attributes:
        file: the file path, ``"<string>"`` for YAML text, ``"<mapping>"`` for data.
        data: the interpolated document (plain dicts, lists and scalars).
        lines: 1-based line per field path; empty when the input had no text.
    """

    file: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)


def format_path(path: FieldPath) -> str:
    """``("routes", 2, "limits", 0)`` -> ``routes[2].limits[0]``; odd names are quoted."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


def read_source(source: Any, env: Mapping[str, str]) -> Source:
    """Turn a path, YAML/JSON text or an already-parsed mapping into a :class:`Source`.

    Args:
        source: ``str``/``PathLike`` path, YAML text, or a ``Mapping``.
        env: variables for ``${VAR}`` interpolation.

    Raises:
        PolicyError: unreadable file, YAML syntax error, duplicate key, bad reference.
    """
    if isinstance(source, Mapping):
        return Source(_MAPPING_NAME, _interpolate_data(source, (), env, _MAPPING_NAME))
    if isinstance(source, os.PathLike):
        return _read_file(Path(source), env)
    if not isinstance(source, str):
        raise PolicyError(
            f"cannot load policies from {type(source).__name__}; "
            "give a file path, YAML text, a mapping or a PolicySet"
        )
    if not source.strip():
        raise PolicyError("the document is empty", file=_STRING_NAME, line=1)
    if _looks_like_text(source):
        return parse_text(source, _STRING_NAME, env)
    return _read_file(Path(source), env)


def _looks_like_text(source: str) -> bool:
    """The str heuristic: an existing file wins; otherwise YAML-looking text is text."""
    if "\n" not in source and "\0" not in source:
        try:
            if Path(source).is_file():
                return False
        except OSError:
            pass
    stripped = source.lstrip()
    return "\n" in source or ": " in source or stripped.startswith("{")


def _read_file(path: Path, env: Mapping[str, str]) -> Source:
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError("file not found", file=name) from None
    except OSError as exc:
        raise PolicyError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError("the file is not valid UTF-8", file=name, line=line) from None
    return parse_text(text, name, env)


def parse_text(text: str, name: str, env: Mapping[str, str]) -> Source:
    """Parse YAML (or JSON) text, keeping the line of every field."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise PolicyError(
            f"YAML syntax error: {reason}", file=name, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML syntax error: {exc}", file=name) from None
    if node is None:
        raise PolicyError("the document is empty", file=name, line=1)
    converter = _Converter(name, env)
    data = converter.convert(node, ())
    return Source(name, data, converter.lines)


class _Converter:
    """Node tree -> plain data, recording lines and interpolating scalars."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[FieldPath, int] = {}
        self._constructor = SafeConstructor()
        self._resolver = Resolver()
        self._active: set[int] = set()
        self._count = 0

    def error(self, node: yaml.Node, path: FieldPath, reason: str) -> PolicyError:
        line = node.start_mark.line + 1
        if len(path) >= 3 and path[0] == "routes" and isinstance(path[1], int):
            route_line = self.lines.get(path[:2])
            if route_line is not None and route_line != line:
                reason = f"{reason} (in route {format_path(path[:2])} at line {route_line})"
        return PolicyError(reason, file=self.file, line=line, field=format_path(path))

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise self.error(node, path, "the document is too large (alias expansion?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            raise self.error(node, path, "recursive alias")
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        raise self.error(node, path, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, path, "mapping keys must be plain strings")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise self.error(
                    key_node,
                    (*path, key_node.value),
                    f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})",
                )
            seen[key_node.value] = key_node.start_mark.line + 1
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self.error(node, path, f"invalid merge key: {exc.problem}") from None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys stay the text as written: YAML 1.1 would turn `on:`/`yes:` into booleans.
            key = str(key_node.value)
            sub = (*path, key)
            self.lines[sub] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, sub)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        try:
            value = self._constructor.construct_object(node)
        except yaml.YAMLError as exc:
            raise self.error(node, path, f"invalid value {node.value!r}: {exc}") from None
        if not isinstance(value, str) or "${" not in value:
            return value
        try:
            text = interpolate(value, self.env)
        except InterpolationError as exc:
            raise self.error(node, path, str(exc)) from None
        if not node.style and text != value:  # plain style: None (PyYAML) or "" (libyaml)
            # An unquoted `${COST:-2}` gets the type its result would have had
            # if written literally, so numbers and booleans can come from the env.
            tag: str = self._resolver.resolve(  # type: ignore[no-untyped-call]
                yaml.ScalarNode, text, (True, False)
            )
            if tag != "tag:yaml.org,2002:str":
                try:
                    return self._constructor.construct_object(yaml.ScalarNode(tag, text))
                except (yaml.YAMLError, ValueError):
                    return text
        return text


def _interpolate_data(data: Any, path: FieldPath, env: Mapping[str, str], file: str) -> Any:
    """Copy already-parsed data into plain dicts/lists, interpolating string values."""
    if isinstance(data, str):
        try:
            return interpolate(data, env)
        except InterpolationError as exc:
            raise PolicyError(str(exc), file=file, field=format_path(path)) from None
    if isinstance(data, Mapping):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            out[key] = _interpolate_data(value, (*path, str(key)), env, file)
        return out
    if isinstance(data, (list, tuple)):
        return [_interpolate_data(item, (*path, i), env, file) for i, item in enumerate(data)]
    return data
