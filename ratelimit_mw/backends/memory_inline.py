"""The memory backend's single-rule check, compiled from the algorithm's own source.

Why: in process, a check is a few hundred nanoseconds, and calling the algorithm (a
frame, and the seven-tuple it returns) is a large share of it. The maths stays
written once, in :mod:`ratelimit_mw.core.algorithms`: this module reads a function's
source when a quota is bound and splices its body into the check, where its two
``return`` statements become "store the new state, return the Decision" and
"return the denial". Nothing is copied by hand, so a fix to an algorithm reaches
the check by itself.

Where the source cannot be read (a build without ``.py`` files) or has another
shape than the algorithms' (two returns of a literal seven-tuple), :func:`factory`
returns ``None`` and the backend's general check calls the function instead; tests
hold the two to identical answers, and force the fallback.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from functools import cache
from typing import Any

from ratelimit_mw.core.decision import Decision

__all__ = ["factory"]

_PARAMS = ["state", "now", "rule", "cost"]

_TEMPLATE = """
def _rl_factory(_rl_backend, _rl_states, rule, _rl_capacity, _rl_denied, _rl_clock, _rl_acquire, _rl_release):
    def check(key, cost=1):
        _rl_client = hash(key)
        now = _rl_clock()
        _rl_acquire()
        try:
            if now >= _rl_backend._next_sweep:
                _rl_backend._sweep(now)
            _rl_stored = _rl_states.get(_rl_client)
            state = _rl_stored
            _RL_BODY
        finally:
            _rl_release()
    return check
"""

_ALLOWED = """
_rl_new_state = _RL_STATE
if cost:
    if _rl_stored is None:
        if _rl_backend._size >= _rl_backend.max_keys:
            _rl_backend._make_room(now)
        _rl_backend._size += 1
    _rl_states[_rl_client] = _rl_new_state
"""


class _Shape(Exception):
    """The function is not of the shape this compiler splices."""


class _Returns(ast.NodeTransformer):
    """Rewrites ``return (allowed, state, remaining, reset, retry, ttl, delay)``."""

    def __init__(self) -> None:
        self.seen = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        raise _Shape("nested function")

    def visit_Return(self, node: ast.Return) -> Any:
        value = node.value
        if not (isinstance(value, ast.Tuple) and len(value.elts) == 7 and isinstance(value.elts[0], ast.Constant)
                and isinstance(value.elts[0].value, bool)):
            raise _Shape("a return that is not a literal seven-tuple")
        self.seen += 1
        allowed = value.elts[0]
        assert isinstance(allowed, ast.Constant)  # checked above; for the type checker
        _, state, remaining, reset, retry, _ttl, delay = value.elts
        decision = ast.parse(
            "return _rl_new(_rl_Decision, (_A, _rl_capacity, _R, _S, _T, rule, _D, _V, False))"
        ).body[0]
        fields = {"_A": allowed, "_R": remaining, "_S": reset, "_T": retry, "_D": delay,
                  "_V": ast.Tuple([], ast.Load()) if allowed.value else ast.Name("_rl_denied", ast.Load())}
        decision = _Fill(fields).visit(decision)
        if not allowed.value:
            return decision
        store = _Fill({"_RL_STATE": state}).visit(ast.parse(_ALLOWED)).body
        return [*store, decision]


class _Fill(ast.NodeTransformer):
    """Replaces placeholder names with expressions."""

    def __init__(self, fields: dict[str, ast.expr]) -> None:
        self.fields = fields

    def visit_Name(self, node: ast.Name) -> Any:
        return self.fields.get(node.id, node)


@cache
def factory(step: Callable[..., Any]) -> Callable[..., Callable[[str, int], Decision]] | None:
    """The check factory compiled from ``step``'s source, or ``None`` (call ``step``).

    The factory takes ``(backend, states, rule, capacity, denied, clock, acquire,
    release)`` and returns ``check(key, cost=1) -> Decision``, the single-rule check
    of :meth:`~ratelimit_mw.backends.memory.MemoryBackend.bind` with ``step`` inline.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(step)))
        func = tree.body[0]
        if not isinstance(func, ast.FunctionDef) or [a.arg for a in func.args.args] != _PARAMS:
            raise _Shape("not a function of (state, now, rule, cost)")
        body = func.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        returns = _Returns()
        body = [returns.visit(statement) for statement in body]
        if returns.seen != 2:
            raise _Shape("not exactly two returns")
        template = ast.parse(_TEMPLATE)
        check = template.body[0].body[0]  # type: ignore[attr-defined]
        guarded = check.body[3].body
        guarded[-1:] = [node for statement in body for node in (statement if isinstance(statement, list) else
                                                                [statement])]
        ast.fix_missing_locations(template)
        namespace: dict[str, Any] = dict(step.__globals__)
        namespace.update(_rl_new=tuple.__new__, _rl_Decision=Decision)
        exec(compile(template, f"<ratelimit_mw: {step.__name__} inline>", "exec"), namespace)
        return namespace["_rl_factory"]  # type: ignore[no-any-return]
    except (OSError, TypeError, SyntaxError, _Shape):
        return None
