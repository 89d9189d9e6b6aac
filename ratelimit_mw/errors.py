"""One exception tree for everything the package raises on purpose.

::

    RateLimitError
    ├── ConfigError(ValueError)         bad arguments or configuration
    │   └── PolicyError                 bad YAML/JSON policy: carries file, line, field
    ├── BackendError                    the state store failed (wraps the driver error)
    └── RateLimitExceeded               raised for direct callers who prefer exceptions

Catching ``RateLimitError`` catches all of them; ``ConfigError`` is also a
``ValueError`` so code that validates input generically keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratelimit_mw.core.decision import Decision

__all__ = [
    "BackendError",
    "ConfigError",
    "PolicyError",
    "RateLimitError",
    "RateLimitExceeded",
    "did_you_mean",
]


class RateLimitError(Exception):
    """Root of every exception this package raises deliberately."""


class ConfigError(RateLimitError, ValueError):
    """A configuration value is invalid (raised at start-up, never per request)."""


class PolicyError(ConfigError):
    """A policy document is invalid.

    The message always names where the problem is, so a user can jump to it:
    ``policies.yaml:12: routes[2].limits[0]: invalid rate 'ten per minute' ...``.

    Attributes:
        file: path of the document, or ``"<string>"`` for inline YAML.
        line: 1-based line number of the offending field, when known.
        field: dotted path of the field (``routes[2].limits[0]``).
        reason: the bare explanation, without location.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<policies>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.reason}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form, used by the admin API's 400 answers."""
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}


class BackendError(RateLimitError):
    """The backend (Redis, ...) failed; ``__cause__`` holds the driver's exception."""


class RateLimitExceeded(RateLimitError):
    """A check was denied; raised by the ``*_or_raise`` helpers for direct callers.

    Attributes:
        decision: the full :class:`~ratelimit_mw.Decision`, with ``retry_after``.
    """

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(f"rate limit exceeded; retry after {decision.retry_after:.3f}s")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'limits'?"`` for the closest choice, or ``""`` if none is close:
    the hint every configuration error gives for a misspelt name."""
    import difflib

    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f"; did you mean {close[0]!r}?" if close else ""
