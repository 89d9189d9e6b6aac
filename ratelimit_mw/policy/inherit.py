"""Named policies and ``extends``: resolving the inheritance chain.

Rules of inheritance (documented in ``policies.example.yaml``):

* a child's settings (``key``, ``algorithm``, ``cost``, ...) override its parent's,
  which override the grandparent's, and so on, over the document's ``defaults``;
* a child's ``limits`` *replace* the inherited ones (a "pro" tier usually means
  different numbers, not more of them); ``extra_limits`` are *added* to whatever
  the child ends up with;
* chains may be any depth; a cycle is an error that names the whole loop.

Limits stay raw (text or mapping, with their location) until a route uses them,
because the algorithm that parses them may still be overridden further down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ratelimit_mw.errors import did_you_mean
from ratelimit_mw.policy.schema import POLICY_FIELDS, SETTINGS, Checker
from ratelimit_mw.policy.source import FieldPath

__all__ = ["LimitEntry", "PolicySpec", "Setting", "limit_entries", "resolve_policies"]

#: A validated setting value and the field it came from (``None``: built-in default).
Setting = tuple[Any, FieldPath | None]
#: One raw limit (rate text or mapping) and its field.
LimitEntry = tuple[Any, FieldPath]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A named policy after inheritance.

    Attributes:
        name: the policy's name.
        path: its field path (``("policies", "pro")``).
        settings: effective settings of the chain (not yet merged with ``defaults``).
        limits: effective raw limits.
        chain: the policy and its ancestors, nearest first.
        description: free text, if given.
    """

    name: str
    path: FieldPath
    settings: Mapping[str, Setting]
    limits: tuple[LimitEntry, ...]
    chain: tuple[str, ...]
    description: str | None


def limit_entries(check: Checker, value: Any, path: FieldPath, what: str) -> list[LimitEntry]:
    """A ``limits``/``extra_limits`` value: one rate or a non-empty list of rates."""
    if isinstance(value, (str, Mapping)):
        return [(value, path)]
    if not isinstance(value, list) or not value:
        check.fail(path, f"{what} must be a non-empty list of rates such as '10/second'")
    out: list[LimitEntry] = []
    for i, item in enumerate(value):
        if not isinstance(item, (str, Mapping)):
            check.fail(
                (*path, i),
                f"a limit must be a rate string or a mapping like {{limit: 100, period: 60}}, got {item!r}",
            )
        out.append((item, (*path, i)))
    return out


def resolve_policies(check: Checker, value: Any) -> dict[str, PolicySpec]:
    """Validate ``policies:`` and resolve every ``extends`` chain.

    Raises:
        PolicyError: unknown field, unknown parent (with a suggestion), or a cycle.
    """
    data = check.mapping(value, ("policies",), "policies")
    own: dict[str, Mapping[str, Any]] = {}
    for name, body in data.items():
        path: FieldPath = ("policies", name)
        if not name.strip():
            check.fail(path, "a policy name must not be empty")
        own[name] = check.fields(body, path, POLICY_FIELDS, f"policy {name!r}")
    resolved: dict[str, PolicySpec] = {}

    def resolve(name: str, stack: list[str]) -> PolicySpec:
        done = resolved.get(name)
        if done is not None:
            return done
        body = own[name]
        path: FieldPath = ("policies", name)
        parent: PolicySpec | None = None
        if "extends" in body:
            where = (*path, "extends")
            parent_name = check.string(body["extends"], where, "extends")
            if parent_name not in own:
                hint = did_you_mean(parent_name, own) or (
                    f" (defined: {', '.join(own)})" if own else " (no policies are defined)"
                )
                check.fail(where, f"unknown policy {parent_name!r}{hint}")
            if parent_name in stack or parent_name == name:
                start = stack.index(parent_name) if parent_name in stack else len(stack)
                loop = [*stack[start:], name, parent_name]
                check.fail(where, f"extends cycle: {' -> '.join(loop)}")
            parent = resolve(parent_name, [*stack, name])
        settings: dict[str, Setting] = dict(parent.settings) if parent else {}
        for key in SETTINGS:
            if key in body:
                settings[key] = (check.setting(key, body[key], (*path, key)), (*path, key))
        limits: list[LimitEntry] = list(parent.limits) if parent else []
        if "limits" in body:
            limits = limit_entries(check, body["limits"], (*path, "limits"), "limits")
        if "extra_limits" in body:
            limits += limit_entries(check, body["extra_limits"], (*path, "extra_limits"), "extra_limits")
        description = None
        if "description" in body:
            description = check.string(body["description"], (*path, "description"), "description", empty=True)
        spec = PolicySpec(
            name, path, settings, tuple(limits), (name, *(parent.chain if parent else ())), description
        )
        resolved[name] = spec
        return spec

    for name in own:
        resolve(name, [])
    return resolved
